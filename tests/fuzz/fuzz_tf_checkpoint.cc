// A TensorFlow checkpoint is two files, so one input carries both: a 4-byte little-endian length, that many bytes
// of model.ckpt.index, and the rest as model.ckpt.data-00000-of-00001 (scripts/fuzz.sh builds the seeds so).
// Every listed tensor is read (offsets, sizes and CRCs), then the prefix is imported.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "halfserve/import/model_source.h"
#include "halfserve/import/tf_checkpoint.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::fs::path dir = fuzz::model_dir("checkpoint");
  if (size < 4) return 0;
  const size_t index_size = std::min<size_t>(size - 4, data[0] | data[1] << 8 | data[2] << 16 | uint32_t{data[3]} << 24);
  const std::string prefix = (dir / "model.ckpt").string();
  fuzz::write_file(prefix + ".index", {data + 4, index_size});
  fuzz::write_file(prefix + ".data-00000-of-00001", {data + 4 + index_size, size - 4 - index_size});
  fuzz::expect_only_clean_errors([&] {
    auto source = open_tf_checkpoint(prefix);
    for (const auto& info : source->tensors()) fuzz::expect_only_clean_errors([&] { source->read(info.name); });
  });
  fuzz::expect_only_clean_errors([&] { import_model(prefix, {.format = SourceFormat::tf_checkpoint}); });
  return 0;
}
