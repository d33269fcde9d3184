#!/usr/bin/env bash
# What a new user's machine would see, and the suite's timings in docs/testing.md:
#   bash scripts/fresh_clone_check.sh [FOLDER]     (default /tmp/fresh-clone; removed first, delete it after)
# A clone of this checkout's HEAD; `CI=true bash .ci/run` (Chromium where missing, README's install in a fresh
# .venv, README's whole suite) on a quiet machine; the suite again with `python train.py trainer.max_epochs=3`
# running beside it; the tests that start processes made to time out (MNIST_CNN_TEST_TIMEOUT_SCALE=0.01);
# after each, any process of theirs still running. Logs and `left*.txt` in FOLDER.
set -u
d="${1:-/tmp/fresh-clone}"
here="$(cd "$(dirname "$0")/.." && pwd)"
rm -rf "$d" && mkdir -p "$d" && git clone -q "$here" "$d/p" && cd "$d/p" || exit 1
git log --oneline -1 > "$d/commit.txt"
left() { sleep 2; ps -eo pid,stat,args | grep -E "mnist|pytest|chromium|tensorboard|mlflow|loky|gradio" \
         | grep -v -E "grep| Z " > "$d/$1"; }
( time CI=true bash .ci/run ) > "$d/ci.log" 2>&1; echo "ci rc $?" >> "$d/ci.log"
. .venv/bin/activate
python train.py trainer.max_epochs=3 hydra.run.dir="$d/beside" > "$d/beside.log" 2>&1 &
beside=$!
( time python -m pytest -n auto --dist worksteal -q -p no:cacheprovider ) > "$d/busy.log" 2>&1
echo "busy rc $?" >> "$d/busy.log"
wait $beside; echo "beside rc $?" >> "$d/beside.log"
left left.txt
( time python -m pytest -m "not slow" -q -p no:cacheprovider ) > "$d/fast.log" 2>&1; echo "fast rc $?" >> "$d/fast.log"
( time MNIST_CNN_TEST_TIMEOUT_SCALE=0.01 python -m pytest -n 2 -q -p no:cacheprovider tests/test_demo.py \
    tests/test_processes.py tests/test_tracking.py tests/test_package.py -k "not browser" ) > "$d/timeouts.log" 2>&1
echo "timeouts rc $?" >> "$d/timeouts.log"
left left-timeouts.txt
git status --short > "$d/status.txt"
grep -h -E "(passed|failed).* in [0-9.]+s|rc [0-9]+$|^real" "$d"/ci.log "$d"/busy.log "$d"/fast.log "$d"/timeouts.log
echo "processes left: $(cat "$d"/left*.txt | wc -l); files changed in the clone: $(wc -l < "$d/status.txt")"
