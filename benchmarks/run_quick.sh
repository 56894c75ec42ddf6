#!/bin/bash
# The quick benchmark set: every benchmark once with small but meaningful arguments (a few
# minutes on 2 cores), then benchmarks/RESULTS.md written by benchmarks/results.py from their
# `result:` lines, with the command of each, the machine (nproc, CPU model, torch version and
# threads) and `uptime` before and after each benchmark.
#
#   benchmarks/run_quick.sh            refuses to start (exit 1) when the 1-minute load average
#                                      is above 1.0: figures taken under load are not figures
#   benchmarks/run_quick.sh --force    runs anyway (RESULTS.md then says so)
#
# Exit status: 0 when every benchmark succeeded, 1 otherwise (RESULTS.md lists the failures).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        *) echo "run_quick.sh: unknown argument $arg (only --force)" >&2; exit 2 ;;
    esac
done
LOAD=$(cut -d' ' -f1 /proc/loadavg)
if [ "$FORCE" = 0 ] && awk -v l="$LOAD" 'BEGIN { exit !(l > 1.0) }'; then
    echo "run_quick.sh: 1-minute load average is $LOAD (> 1.0): figures taken under load are not figures; wait for an idle machine or pass --force" >&2
    exit 1
fi
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$ROOT/.venv/bin/activate" ]; then
    source "$ROOT/.venv/bin/activate"
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
LOGS=$(mktemp -d /tmp/nnlab-bench-quick.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "nproc: $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) (usable cores; $(nproc --all) online)"
    python -c 'import platform, torch; print(f"python: {platform.python_version()}"); print(f"torch: {torch.__version__}"); print(f"torch threads: {torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op")'
    echo "OMP_NUM_THREADS: ${OMP_NUM_THREADS:-unset}"
    echo "load at start: $LOAD"
    echo "forced: $([ "$FORCE" = 1 ] && echo 'yes (--force: started above a 1.0 load average)' || echo no)"
} > "$LOGS/machine.txt"

N=0
FAILED=0
bench() {  # bench <script> <args...>: one benchmark, its output and uptimes in a log
    N=$((N + 1))
    local log
    log="$LOGS/$(printf %02d "$N")-$(basename "$1" .py).log"
    echo "== $* ($(cut -d' ' -f1 /proc/loadavg) load)" >&2
    {
        echo "\$ python benchmarks/$*"
        echo "uptime before: $(uptime)"
    } > "$log"
    local script=$1 start=$SECONDS rc=0
    shift
    python "benchmarks/$script" "$@" >> "$log" 2>&1 || rc=$?
    {
        echo "uptime after: $(uptime)"
        echo "exit: $rc after $((SECONDS - start)) s"
    } >> "$log"
    grep '^result: ' "$log" >&2
    if [ "$rc" != 0 ]; then
        FAILED=1
        echo "FAILED (exit $rc): $(grep -v '^uptime \|^exit: ' "$log" | tail -n 1)" >&2
    fi
}

bench bench_train_loop.py --epochs 2 --repeats 3 --samples 4000
bench bench_channels_last.py --size 96 --ft-size 64 --batches 4 --repeats 2
bench bench_catdog_cache.py --images 128 --size 96 --batches 4 --repeats 1
bench bench_catdog_augment.py --images 128 --repeats 1
bench bench_catdog_loader.py --images 192 --size 96 --epochs 2 --batches 4 --repeats 1
bench bench_feature_cache.py --images 200 --size 150 --epochs 3
bench bench_imdb_split.py --repeat 1
bench bench_imdb_train.py --batches 10 --repeat 2
bench bench_parallel.py --epochs 1 --mnist-samples 1000 --catdog-size 200
bench bench_precision.py --steps 4 --repeats 2 --no-compile
bench bench_repro.py

python benchmarks/results.py "$LOGS" --out benchmarks/RESULTS.md || FAILED=1
exit "$FAILED"
