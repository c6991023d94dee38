#!/usr/bin/env bash
# Fuzzes one reader or parser with libFuzzer under ASan and UBSan:
#   bash scripts/fuzz.sh TARGET SECONDS     (TARGET: fuzz_frozen_model, fuzz_hf_safetensors, ...; "list" names
#                                             them all, "build" only builds them)
# Builds build-fuzz/ with clang 14 the first time (the library too, instrumented). First replays every saved crash
# input in tests/fuzz/regressions/TARGET/ (each must now pass), then fuzzes for SECONDS from a corpus seeded with
# the real model files in ../shared/fixtures and small requests written below; the corpus grows in
# build-fuzz/corpus/TARGET across runs. A crash leaves its input in build-fuzz/artifacts/TARGET/ and fails the run:
# fix it, then add the input to tests/fuzz/regressions/TARGET/. Memory: one allocation over 256 MB, or 2 GB
# resident, counts as a crash (inputs are at most 1 MB; issue 15's bound is 2x the file + 64 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
targets=(fuzz_frozen_model fuzz_hf_safetensors fuzz_torch_checkpoint fuzz_tf_checkpoint fuzz_graphdef fuzz_saved_model
         fuzz_restricted_pickle fuzz_predict_json fuzz_punctuate_json fuzz_tokenizer fuzz_grpc_predict fuzz_v2_infer_json
         fuzz_grpc_infer fuzz_websocket_frames)
if [ "$target" = list ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
[[ " ${targets[*]} build " == *" $target "* ]] || { echo "fuzz.sh: unknown target $target (try: scripts/fuzz.sh list 0)" >&2; exit 2; }
if ! command -v clang++-14 > /dev/null; then
  # scripts/install-deps.sh --test installs clang 14 and its libFuzzer runtime.
  echo "fuzz.sh: clang++-14 not found (apt-get install clang-14 libclang-rt-14-dev libomp-14-dev)" >&2
  [ -n "${HALFSERVE_STRICT:-}" ] && exit 1
  exit 77
fi

build=build-fuzz
# One build at a time: ctest runs several fuzz tests at once.
exec 9> "$(mkdir -p "$build" && echo "$build/.lock")"
flock 9
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHALFSERVE_FUZZ=ON \
    > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
fi
# "build" makes every target (ctest's Fuzz.Build, so the fuzz tests' time is spent fuzzing).
[ "$target" = build ] && make_target=fuzzers || make_target=$target
cmake --build "$build" -j "$(nproc)" --target "$make_target" > "$build/build-$target.log" 2>&1 \
  || { tail -n 40 "$build/build-$target.log"; exit 1; }
flock -u 9
[ "$target" = build ] && { echo "fuzz.sh: built ${#targets[@]} fuzz targets in $build/"; exit 0; }
binary=$build/tests/fuzz/$target

fixtures=../shared/fixtures
seeds=$build/seeds/$target
companions=$build/companions/$target
rm -rf "$seeds" "$companions"
mkdir -p "$seeds" "$companions" "$build/corpus/$target" "$build/artifacts/$target"
seed_file() { [ -f "$1" ] && cp "$1" "$seeds/${2:-$(basename "$1")}"; return 0; }
seed_text() { printf '%s' "$2" > "$seeds/$1"; }
if [ ! -d "$fixtures" ]; then
  [ -n "${HALFSERVE_STRICT:-}" ] && { echo "fuzz.sh: $fixtures missing (strict: the seeds come from there)" >&2; exit 1; }
  echo "fuzz.sh: $fixtures missing; fuzzing from the small seeds only" >&2
fi
case $target in
  fuzz_frozen_model)
    # Frozen files made from a fixture by the regular build's CLI, when there is one.
    cli=build/tools/halfserve/halfserve
    if [ -x "$cli" ] && [ -d "$fixtures/torch_bert_tokcls" ]; then
      for precision in fp16 int8; do
        "$cli" convert "$fixtures/torch_bert_tokcls" -o "$seeds/tokcls-$precision.safetensors" --precision "$precision" > /dev/null 2>&1
      done
    fi ;;
  fuzz_hf_safetensors)
    seed_file "$fixtures/torch_bert_tokcls/model.safetensors"
    seed_file "$fixtures/torch_bert_tokcls/fp16_hazards.safetensors"
    seed_file "$fixtures/hf_tiny_bert/model.safetensors" tiny.safetensors
    cp "$fixtures/torch_bert_tokcls/config.json" "$fixtures/torch_bert_tokcls/vocab.txt" "$companions/" 2>/dev/null || true ;;
  fuzz_torch_checkpoint)
    seed_file "$fixtures/torch_bert_tokcls/pytorch_model.bin"
    cp "$fixtures/torch_bert_tokcls/config.json" "$fixtures/torch_bert_tokcls/vocab.txt" "$companions/" 2>/dev/null || true ;;
  fuzz_restricted_pickle)
    if [ -f "$fixtures/torch_bert_tokcls/pytorch_model.bin" ]; then
      python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
open(sys.argv[2], "wb").write(z.read(name))' "$fixtures/torch_bert_tokcls/pytorch_model.bin" "$seeds/data.pkl"
    fi ;;
  fuzz_tf_checkpoint)
    checkpoint=$fixtures/keras_bert_tiny_ckpt/bert_model.ckpt
    if [ -f "$checkpoint.index" ]; then
      # The harness's layout: 4-byte little-endian index length, the index, the data shard.
      python3 -c 'import struct, sys
index = open(sys.argv[1] + ".index", "rb").read()
data = open(sys.argv[1] + ".data-00000-of-00001", "rb").read()
open(sys.argv[2], "wb").write(struct.pack("<I", len(index)) + index + data)' "$checkpoint" "$seeds/checkpoint"
      cp "$fixtures/keras_bert_tiny_ckpt/bert_config.json" "$fixtures/keras_bert_tiny_ckpt/vocab.txt" "$companions/"
    fi ;;
  fuzz_graphdef)
    seed_file "$fixtures/tf_frozen/regression_frozen.pb" ;;
  fuzz_saved_model)
    for model in "$fixtures"/tf_serving/saved_model_*/00000123; do
      [ -f "$model/saved_model.pb" ] && cp "$model/saved_model.pb" "$seeds/$(basename "$(dirname "$model")").pb"
    done
    [ -d "$fixtures/tf_serving/saved_model_half_plus_two_cpu/00000123/variables" ] &&
      cp -r "$fixtures/tf_serving/saved_model_half_plus_two_cpu/00000123/variables" "$companions/" ;;
  fuzz_predict_json)
    seed_text rows.json '{"signature_name":"serving_default","instances":[{"input_ids":[101,2769,102],"attention_mask":[1,1,1]}]}'
    seed_text columns.json '{"inputs":{"input_ids":[[101,2769,102,0]],"attention_mask":[[1,1,1,0]],"token_type_ids":[[0,0,0,0]]},"output_filter":["label_ids"]}'
    seed_text bare.json '{"instances":[[101,102],[101,7,102]]}' ;;
  fuzz_punctuate_json)
    seed_text one.json '{"text":"今天天气很好我们去公园玩吧"}'
    seed_text many.json '{"texts":["hello world how are you","你好"],"labels":true,"probabilities":true,"window":16,"stride":8}' ;;
  fuzz_tokenizer)
    seed_text mixed.txt $'Héllo, wörld! 今天[SEP]天气 [UNK] naïve café\tTAB 한국어 𝔘 \u200b end.'
    seed_text cjk.txt '如果你想安装这个软件包请使用下面的命令，安装完成以后就可以运行它了。' ;;
  fuzz_grpc_predict)
    protoc --encode=tensorflow.serving.PredictRequest -I proto proto/tensorflow_serving/apis/predict.proto \
      > "$seeds/request.bin" <<'PROTO'
model_spec { name: "default" signature_name: "serving_default" }
inputs { key: "input_ids" value { dtype: DT_INT32 tensor_shape { dim { size: 1 } dim { size: 3 } } int_val: 101 int_val: 2769 int_val: 102 } }
inputs { key: "attention_mask" value { dtype: DT_INT64 tensor_shape { dim { size: 1 } dim { size: 3 } } int64_val: 1 int64_val: 1 int64_val: 1 } }
PROTO
    ;;
  fuzz_v2_infer_json)
    seed_text json.json '{"id":"a","inputs":[{"name":"input_ids","shape":[1,3],"datatype":"INT64","data":[101,2769,102]},{"name":"attention_mask","shape":[1,3],"datatype":"INT32","data":[[1,1,1]]}],"outputs":[{"name":"logits","parameters":{"binary_data":true}}]}'
    header='{"inputs":[{"name":"input_ids","shape":[1,3],"datatype":"INT32","parameters":{"binary_data_size":12}}],"parameters":{"binary_data_output":true}}'
    printf '%s\n%s\x65\x00\x00\x00\xe1\x0a\x00\x00\x66\x00\x00\x00' "${#header}" "$header" > "$seeds/binary.bin" ;;
  fuzz_websocket_frames)
    # The first byte picks the piece size (8); then a masked text frame {"text":"你好"} and a masked close (1000, "bye").
    python3 -c 'import sys
def frame(opcode, payload, key=b"\x01\x02\x03\x04"):
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
open(sys.argv[1], "wb").write(b"\x07" + frame(1, "{\"text\":\"你好\"}".encode()) + frame(8, b"\x03\xe8bye"))' "$seeds/frames.bin" ;;
  fuzz_grpc_infer)
    protoc --encode=inference.ModelInferRequest -I proto proto/inference/grpc_predict_v2.proto > "$seeds/request.bin" <<'PROTO'
model_name: "default" id: "x"
inputs { name: "input_ids" datatype: "INT32" shape: 1 shape: 3 contents { int_contents: 101 int_contents: 2769 int_contents: 102 } }
inputs { name: "attention_mask" datatype: "INT64" shape: 1 shape: 3 contents { int64_contents: 1 int64_contents: 1 int64_contents: 1 } }
outputs { name: "label_ids" }
PROTO
    ;;
esac

export HALFSERVE_FUZZ_COMPANIONS=$PWD/$companions
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TMPDIR=$PWD/$build/tmp
mkdir -p "$TMPDIR"
options=(-rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=60 -max_len=1048576)
regressions=tests/fuzz/regressions/$target
if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
  echo "fuzz.sh: $target: replaying $(ls "$regressions" | wc -l) saved crash inputs"
  "$binary" "${options[@]}" "$regressions"/* > "$build/regressions-$target.log" 2>&1 \
    || { tail -n 40 "$build/regressions-$target.log"; echo "fuzz.sh: a saved crash input fails again" >&2; exit 1; }
fi
echo "fuzz.sh: $target for $seconds s (seeds: $(ls "$seeds" | wc -l))"
"$binary" "${options[@]}" -max_total_time="$seconds" -print_final_stats=1 \
  -artifact_prefix="$build/artifacts/$target/" "$build/corpus/$target" "$seeds" > "$build/fuzz-$target.log" 2>&1 \
  || { tail -n 60 "$build/fuzz-$target.log"; echo "fuzz.sh: $target found a crash: $build/artifacts/$target/" >&2; exit 1; }
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$build/fuzz-$target.log" | tr '\n' ' '
echo
echo "fuzz.sh: $target: no crash in $seconds s"
