#include "halfserve/import/safetensors_source.h"

#include "halfserve/format/safetensors.h"
#include "halfserve/util/error.h"

namespace halfserve {

namespace {

class SafetensorsSource final : public TensorSource {
 public:
  explicit SafetensorsSource(const std::string& path) : path_(path), file_(read_safetensors(path)) {
    for (const auto& name : file_.tensors.names()) {
      const TensorView& view = file_.tensors.at(name);
      infos_.push_back({name, view.dtype, view.shape});
    }
  }
  std::string format() const override { return "hf"; }
  const std::vector<SourceTensorInfo>& tensors() const override { return infos_; }
  LoadedTensor read(const std::string& name) override {
    const TensorView* view = file_.tensors.find(name);
    if (view == nullptr) throw Error(path_ + ": no tensor named " + name);
    return {*view, file_.file};
  }

 private:
  std::string path_;
  SafetensorsFile file_;
  std::vector<SourceTensorInfo> infos_;
};

}  // namespace

std::unique_ptr<TensorSource> open_safetensors_source(const std::string& path) {
  return std::make_unique<SafetensorsSource>(path);
}

}  // namespace halfserve
