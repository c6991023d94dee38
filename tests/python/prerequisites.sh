# Sourced by the tests/python/run_*_test.sh scripts: what a test does when something it needs is not on the
# machine (PyPI, ../shared/fixtures, a tool). A user without them gets a skip with the reason (exit 77, which
# ctest reports as skipped); under CI (CI=true) or HALFSERVE_STRICT=1 the same is a failure, so a green CI run
# means every one of these tests ran.

strict_prerequisites() {
  [ "${HALFSERVE_STRICT:-0}" = 1 ] || [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]
}

# missing_prerequisite MESSAGE: skips, or fails under CI / HALFSERVE_STRICT. Writes to stderr, so it also works
# inside $(...).
missing_prerequisite() {
  if strict_prerequisites; then
    echo "FAILED: $* (a missing prerequisite is a failure under CI=true or HALFSERVE_STRICT=1)" >&2
    exit 1
  fi
  echo "SKIPPED: $*" >&2
  exit 77
}

# python_env GROUP: prints the Python of scripts/python-env.sh's GROUP. One PyPI cannot provide is a missing
# prerequisite; any other failure fails the test. Use as: python=$(python_env GROUP) || exit $?
python_env() {
  local python status=0
  python=$(bash scripts/python-env.sh "$1") || status=$?
  if [ "$status" -eq 77 ]; then missing_prerequisite "the $1 Python environment could not be installed from PyPI"; fi
  if [ "$status" -ne 0 ]; then
    echo "FAILED: scripts/python-env.sh $1 exited $status" >&2
    exit "$status"
  fi
  echo "$python"
}

# bert_vocabularies: prints the fixtures' folder of BERT vocabularies (bert-base-chinese, bert-base-uncased), or is
# a missing prerequisite. Use as: vocab_dir=$(bert_vocabularies) || exit $?
bert_vocabularies() {
  local vocab_dir=${HALFSERVE_FIXTURES:-$PWD/../shared/fixtures}/vocab
  if [ ! -f "$vocab_dir/bert-base-chinese-vocab.txt" ] || [ ! -f "$vocab_dir/bert-base-uncased-vocab.txt" ]; then
    missing_prerequisite "$vocab_dir has no BERT vocabularies"
  fi
  echo "$vocab_dir"
}
