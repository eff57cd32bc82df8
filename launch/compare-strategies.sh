#!/usr/bin/env bash
# launch/compare-strategies.sh — train the same model with every sync strategy at equal tokens
# and compare them with `loco report` (issue 6's experiment; docs/RESULTS.md).
#
#   bash launch/compare-strategies.sh [CONFIG...]      default: all of them, DDP first
#
# Each config in configs/ (ddp, ddp-topk, ddp-terngrad, ddp-qsgd4, diloco, diloco-int8,
# diloco-h200, diloco-h200-int8, diloco-delay, diloco-qsr, fedavg, streaming, demo) runs with
# LOCO_WORKERS (4) workers under launch/loco-mpirun into runs/compare/NAME; a run whose
# run.json already says "ok" is kept (delete it to redo). The report (table + PNG plots of
# validation loss against tokens and against bytes sent per worker) goes to runs/compare/report.
# Extra `loco train` options can be passed in LOCO_TRAIN_ARGS (e.g. "--set train.steps=200").
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
build_dir=${LOCO_BUILD_DIR:-build}
workers=${LOCO_WORKERS:-4}
out=${LOCO_COMPARE_DIR:-runs/compare}
read -r -a extra <<< "${LOCO_TRAIN_ARGS:-}"
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(ddp ddp-topk ddp-terngrad ddp-qsgd4 diloco diloco-int8 diloco-h200 diloco-h200-int8
           diloco-delay diloco-qsr fedavg streaming demo)
fi
[ -x "$build_dir/loco" ] || { echo "compare-strategies.sh: build first (bash launch/setup.sh)" >&2; exit 1; }
[ -f data/fortunes/train.tok ] || "$build_dir/loco" data prepare --out data/fortunes \
  "${LOCO_CORPUS_ROOT:-}/usr/share/games/fortunes"

status_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$1" 2>/dev/null || echo none; }

dirs=()
for name in "${configs[@]}"; do
  dir=$out/$name
  dirs+=("$dir")
  if [ "$(status_of "$dir/run.json")" = ok ]; then
    echo "[compare] $name: kept (delete $dir to rerun)"
    continue
  fi
  rm -rf "$dir"
  echo "[compare] $name: $workers workers ..."
  start=$(date +%s)
  LOCO_LOG=${LOCO_LOG:-warn} LOCO_MPIRUN_TIMEOUT=${LOCO_MPIRUN_TIMEOUT:-3600} \
    launch/loco-mpirun -np "$workers" "$build_dir/loco" train "configs/$name.yaml" \
    --set run.dir="$dir" "${extra[@]}" || true
  [ "$(status_of "$dir/run.json")" = ok ] || { echo "[compare] $name failed (see above)" >&2; exit 1; }
  echo "[compare] $name: done in $(( $(date +%s) - start )) s"
done
"$build_dir/loco" report --out "$out/report" "${dirs[@]}"
