// A gRPC PredictRequest as the server receives it (protobuf bytes), turned into the engine's batch: TensorProto
// dtypes, shapes, tensor_content and value ranges.
#include <cstddef>
#include <cstdint>

#include <google/protobuf/stubs/logging.h>

#include "fuzz_support.h"
#include "serve/tensor_proto_io.h"
#include "serving_model.h"
#include "tensorflow_serving/apis/predict.pb.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Protobuf logs every string field that is not UTF-8; millions of such lines would only bury the findings.
  static const bool silenced = (google::protobuf::SetLogHandler(nullptr), true);
  (void)silenced;
  tensorflow::serving::PredictRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  fuzz::expect_only_clean_errors(
      [&] { read_input_batch(request.inputs(), fuzz::serving_model().metadata.signatures.front()); });
  return 0;
}
