// One model file format, fed to its reader and then to the import: every tensor the reader lists is read (so
// declared sizes, offsets and checksums are all exercised), then import_model builds the frozen model. Built
// once per format; FUZZ_FORMAT and FUZZ_FILE_NAME pick which (tests/fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "halfserve/import/model_source.h"
#include "halfserve/import/tensor_source.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fuzz::fs::path dir = fuzz::model_dir("model");
  const fuzz::fs::path file = dir / FUZZ_FILE_NAME;
  fuzz::write_file(file, {data, size});
  // A SavedModel is opened by its folder; the other formats by their file.
  const std::string path = SourceFormat::FUZZ_FORMAT == SourceFormat::saved_model ? dir.string() : file.string();
  fuzz::expect_only_clean_errors([&] {
    auto source = open_tensor_source(path, SourceFormat::FUZZ_FORMAT);
    for (const auto& info : source->tensors()) fuzz::expect_only_clean_errors([&] { source->read(info.name); });
  });
  fuzz::expect_only_clean_errors([&] { import_model(path, {.format = SourceFormat::FUZZ_FORMAT}); });
  return 0;
}
