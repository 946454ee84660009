#!/usr/bin/env bash
# Run one test N times with every core kept busy by another process, and count passes.
#   bash scripts/repeat_under_load.sh tests/e2e/test_stream_e2e.py::test_broker_killed_and_restarted_mid_utterance 20
# A wait that only holds on an idle machine is a bug; this is how the README's
# "N out of N under load" figures are made.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
test_id="${1:?usage: repeat_under_load.sh TEST_ID [RUNS]}"
runs="${2:-20}"
burners=()
for _ in $(seq "$(nproc)"); do
  sh -c 'while :; do :; done' &
  burners+=("$!")
done
trap 'kill "${burners[@]}" 2>/dev/null' EXIT
passed=0
for run in $(seq "$runs"); do
  if .venv/bin/python -m pytest -q -p no:cacheprovider "$test_id" >"/tmp/repeat_under_load.$run.log" 2>&1; then
    passed=$((passed + 1))
  else
    echo "run $run failed: /tmp/repeat_under_load.$run.log"
  fi
done
echo "$passed passed, $((runs - passed)) failed (under load: $(nproc) busy loops)"
[ "$passed" -eq "$runs" ]
