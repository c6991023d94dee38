#!/usr/bin/env bash
# tests/python/prerequisites.sh, the rule every run_*_test.sh follows: a missing prerequisite skips (77) for a
# user and fails (1) under CI=true or HALFSERVE_STRICT=1; a python-env failure other than "no PyPI" always fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
failures=0
expect_exit() {  # expect_exit WANTED DESCRIPTION COMMAND...
  local wanted=$1 description=$2 status
  shift 2
  "$@" > /dev/null 2>&1
  status=$?
  if [ "$status" -ne "$wanted" ]; then
    echo "FAIL: $description: exit $status, expected $wanted"
    failures=$((failures + 1))
  else
    echo "ok: $description (exit $status)"
  fi
}
missing='source tests/python/prerequisites.sh; missing_prerequisite "no frobnicator"'
expect_exit 77 "a user without a prerequisite skips" env -u CI -u HALFSERVE_STRICT bash -c "$missing"
expect_exit 1 "CI=true fails" env -u HALFSERVE_STRICT CI=true bash -c "$missing"
expect_exit 1 "HALFSERVE_STRICT=1 fails" env -u CI HALFSERVE_STRICT=1 bash -c "$missing"
expect_exit 2 "an unknown python-env group is an error, not a skip" \
  env -u CI -u HALFSERVE_STRICT bash -c 'source tests/python/prerequisites.sh; python=$(python_env no-such-group) || exit $?'
[ "$failures" -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
