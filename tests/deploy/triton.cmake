# The Open Inference Protocol (KServe v2) through Triton's own Python client, tritonclient[http,grpc] from PyPI (the
# triton venv): REST and gRPC, logits equal to `halfserve predict`, errors as the client reads them.
add_test(NAME TritonClient.V2ProtocolOverRestAndGrpc
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run_triton_client_test.sh $<TARGET_FILE:halfserve_cli>)
set_tests_properties(TritonClient.V2ProtocolOverRestAndGrpc PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
