#!/usr/bin/env bash
# README command one: the seed's experiment on this machine. Installs what it needs, builds, synthesizes the
# default model (the seed's architecture), converts it to fp16 and bf16 with the conversion report, and prints
# the seed-layout latency table for fp32, fp16 and bf16, then punctuates a sentence with each shipped model.
# Outputs go to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
step() { echo; echo "== $* ($(( $(date +%s) - started )) s)"; }

step "installing Debian packages"
bash scripts/install-deps.sh
step "building"
bash scripts/build.sh
halfserve=build/tools/halfserve/halfserve
mkdir -p out

step "synthesizing the default model (2 layers, hidden 768, 12 heads, FFN 3072, 21128 tokens, labels O ， 。 ？ ！ 、)"
"$halfserve" synth -o out/default-fp32.safetensors --seed 1
for precision in fp16 bf16; do
  step "converting to $precision"
  "$halfserve" convert out/default-fp32.safetensors -o "out/default-$precision.safetensors" --precision "$precision"
done

step "file sizes"
fp32_bytes=$(stat -c %s out/default-fp32.safetensors)
for precision in fp32 fp16 bf16; do
  bytes=$(stat -c %s "out/default-$precision.safetensors")
  echo "$precision: $bytes bytes ($(( bytes * 1000 / fp32_bytes / 10 )).$(( bytes * 1000 / fp32_bytes % 10 )) % of fp32)"
done

step "timing the seed's grid (batch 1..128 x length 64, 128) for fp32, fp16, bf16 — progress below"
"$halfserve" bench --model out/default-fp32.safetensors --precisions fp32,fp16,bf16 \
  --lengths 64,128 --batches 1,8,16,32,64,128 ${HALFSERVE_BENCH_FLAGS:-} | tee out/bench.md

step "restoring punctuation with the shipped trained models (models/README.md)"
echo "如果你想安装这个软件包请使用下面的命令安装完成以后就可以运行它了" | "$halfserve" punctuate
echo "if you want to install this package use the following command when it is done you can run it" |
  "$halfserve" punctuate --language en
step "done: the table is also in out/bench.md"
