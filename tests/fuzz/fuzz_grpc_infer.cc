// The v2 protocol's gRPC ModelInferRequest as the server receives it (protobuf bytes), turned into the engine's
// batch: datatypes, shapes, typed contents, raw_input_contents and value ranges.
#include <cstddef>
#include <cstdint>

#include <google/protobuf/stubs/logging.h>

#include "fuzz_support.h"
#include "inference/grpc_predict_v2.pb.h"
#include "serve/grpc_inference_service.h"
#include "serving_model.h"

using namespace halfserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Protobuf logs every string field that is not UTF-8; millions of such lines would only bury the findings.
  static const bool silenced = (google::protobuf::SetLogHandler(nullptr), true);
  (void)silenced;
  inference::ModelInferRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const Signature& signature = fuzz::serving_model().metadata.default_signature();
  fuzz::expect_only_clean_errors(
      [&] { v2::infer_input_batch(read_grpc_infer_request(request).inputs, signature); });
  return 0;
}
