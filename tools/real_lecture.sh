#!/bin/bash
# The lecture on the real data over several seeds, then reports/lecture.md over all of them.
#
#   tools/real_lecture.sh [SEED ...]        default seeds: 42 1 2
#
# For each seed: a git worktree of HEAD beside this checkout (../<checkout>-seed-<N>), then
# `dvc exp run` there with the real data of ../shared/datasets (or CATS=... IMDB=... MNIST=...:
# a folder or archive; MNIST unset: the bundled digits), `seed` and `trainer.precision: auto`
# (bf16-mixed where the CPU has native bf16). One seed after another: two trainings on the same
# cores slow each other down. Workspaces already there are reused (a run resumes what is
# missing). Finally `python tools/lecture.py <workspaces> --notes docs/lecture-notes.md`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(42 1 2)
SHARED=$(cd "$ROOT/.." && pwd)/shared/datasets
CATS=${CATS:-$SHARED/cats_and_dogs_small}
IMDB=${IMDB:-$SHARED/aclImdb.tar.gz}
for data in "$CATS" "$IMDB"; do
    [ -e "$data" ] || { echo "real_lecture.sh: $data not found (set CATS= and IMDB=)" >&2; exit 2; }
done
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$ROOT/.venv/bin/activate" ]; then
    source "$ROOT/.venv/bin/activate"
fi
SETS=(-S "data.cats_vs_dogs.path=$CATS" -S "data.imdb.path=$IMDB" -S trainer.precision=auto)
SETS+=(-S trainer.enable_progress_bar=false)
[ -n "${MNIST:-}" ] && SETS+=(-S "data.mnist.path=$MNIST")
WORKSPACES=()
for seed in "${SEEDS[@]}"; do
    [[ "$seed" =~ ^[0-9]+$ ]] || { echo "real_lecture.sh: seed $seed is not a number" >&2; exit 2; }
    ws="$ROOT-seed-$seed"
    [ -d "$ws" ] || git worktree add --detach "$ws" HEAD
    echo "== seed $seed in $ws ($(uptime))"
    # the worktree's own code, not the checkout the venv's editable install points at
    (cd "$ws" && PYTHONPATH="$ws/src" dvc exp run -S "seed=$seed" "${SETS[@]}")
    WORKSPACES+=("$ws")
done
echo "== done ($(uptime))"
python tools/lecture.py "${WORKSPACES[@]}" --notes docs/lecture-notes.md
