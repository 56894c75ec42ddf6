#!/usr/bin/env bash
# Screenshots of the MLflow UI on an nnlab project, for docs/images/ (not part of the tests).
#
#   tools/ui_screenshots.sh <project>
#
# project: a clone in which the default `dvc repro` ran (its mlruns/ holds the lecture's runs).
# Starts `nnlab ui` on 127.0.0.1 and a free port, captures with headless Chromium (Debian:
# apt-get install chromium) at 1400x900, writes docs/images/mlflow_*.png, and stops the
# server on exit, whatever happens.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/docs/images
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "ui_screenshots: no chromium (apt-get install -y chromium)" >&2; exit 1; }
command -v nnlab >/dev/null || { echo "ui_screenshots: no nnlab command (activate the venv)" >&2; exit 1; }

project=${1:?usage: tools/ui_screenshots.sh <project where dvc repro ran>}
tmp=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then
        kill -TERM -- "-$server" 2>/dev/null || true  # nnlab ui and the mlflow server it runs
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

project=$(cd "$project" && pwd)
[ -f "$project/mlruns/mlflow.db" ] || [ -n "${MLFLOW_TRACKING_URI:-}" ] \
    || { echo "ui_screenshots: $project has no runs (mlruns/mlflow.db)" >&2; exit 1; }

port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# its own process group (setsid), so that the trap stops the server's workers too
(cd "$project" && exec setsid nnlab ui --host 127.0.0.1 --port "$port") >"$tmp/ui.log" 2>&1 &
server=$!
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$tmp/ui.log" >&2; exit 1; }
    sleep 0.5
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null \
    || { echo "ui_screenshots: no UI on port $port after 60 s" >&2; exit 1; }
base=http://127.0.0.1:$port
start=$(grep -o "$base/[^ ]*" "$tmp/ui.log" | head -1)  # the address nnlab ui prints

shot() {  # shot <file> <url> [height]: a fresh browser profile, as a new user's; 40 s of
    # virtual time for the charts to fetch and draw
    "$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
        --run-all-compositor-stages-before-draw \
        --user-data-dir="$tmp/chrome-$1" --window-size="1400,${3:-900}" --virtual-time-budget=40000 \
        --screenshot="$tmp/shot.png" "$2" </dev/null >"$tmp/chrome.log" 2>&1 || true
    [ -s "$tmp/shot.png" ] || { tail -3 "$tmp/chrome.log" >&2; exit 1; }
    mv "$tmp/shot.png" "$out/$1"
    echo "ui_screenshots: $out/$1 <- $2"
}

mkdir -p "$out"
shot "mlflow_runs.png" "$start"  # what nnlab ui prints: the runs, model-training view
# MLflow keeps that view on other pages once the user clicks its "Model training" toggle (it
# remembers the click, not the URL): the pages below are shown as they look after that click
view="?workflowType=machine_learning"
# per experiment: its id, its run with the highest test/acc and that run's logged model;
# then the registered model with the most versions
python - "$project" >"$tmp/routes" <<'EOF'
import sys
from pathlib import Path

from nnlab import tracking

c = tracking.client(Path(sys.argv[1]))
for e in c.search_experiments():
    runs = c.search_runs([e.experiment_id], order_by=["metrics.`test/acc` DESC"])
    if runs:
        models = runs[0].outputs.model_outputs if runs[0].outputs else []
        print("runs", e.name, e.experiment_id, runs[0].info.run_id,
              models[0].model_id if models else "-")
registered = c.search_registered_models()
if registered:
    print("registry", max(registered, key=lambda m: len(c.search_model_versions(
        f"name = '{m.name}'"))).name, "-", "-", "-")
EOF
while read -r kind name id run model; do
    if [ "$kind" = registry ]; then
        shot "mlflow_registered_model.png" "$base/#/models/$name$view"
        continue
    fi
    [ "$name" = mnist ] || continue
    shot "mlflow_run_metrics.png" "$base/#/experiments/$id/runs/$run/model-metrics$view" 1900
    shot "mlflow_run_artifacts.png" \
        "$base/#/experiments/$id/runs/$run/artifactPath/evaluation/figures/learning_curves.png$view"
done <"$tmp/routes"
