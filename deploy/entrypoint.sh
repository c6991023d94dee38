#!/bin/sh
# The container image's entrypoint (deploy/Containerfile), as tensorflow/serving's: serve MODEL_NAME from
# MODEL_BASE_PATH/MODEL_NAME with gRPC on 8500 and REST on 8501, the arguments appended. A flag given again takes
# its last value, so `--rest_api_port=9000` overrides the default here, as with tensorflow_model_server.
# `exec`: halfserve replaces this shell, so the runtime's SIGTERM reaches the server, which drains and exits 0.
set -eu
for argument in "$@"; do
  case $argument in
    # A config file names its own models: the one-model flags would conflict with it.
    --model_config_file | --model_config_file=*)
      exec /usr/local/bin/halfserve serve --port=8500 --rest_api_port=8501 "$@" ;;
  esac
done
exec /usr/local/bin/halfserve serve --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"
