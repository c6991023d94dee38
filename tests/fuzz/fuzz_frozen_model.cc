// halfserve's own frozen file (safetensors with halfserve metadata): the header, the metadata JSON and the
// architecture check. A file that loads is also read tensor by tensor as floats, as inspect and convert do.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "halfserve/format/frozen_model.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::fs::path file = fuzz::scratch_dir() / "frozen.safetensors";
  fuzz::write_file(file, {data, size});
  for (const FileResidence residence : {FileResidence::mapped, FileResidence::copied}) {
    fuzz::expect_only_clean_errors([&] {
      const FrozenModel model = load_frozen_model(file.string(), residence);
      for (const auto& name : model.tensors.names()) {
        const TensorView& tensor = model.tensors.at(name);
        if (is_floating(tensor.dtype)) (void)tensor.to_float();
      }
    });
  }
  return 0;
}
