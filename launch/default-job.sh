#!/usr/bin/env bash
# launch/default-job.sh — the README's default job (`bash launch/setup.sh run` ends here).
#
# Trains one small GPT on the fortunes corpus with 4 workers twice, under launch/loco-mpirun:
#   configs/ddp.yaml     data parallel: gradients averaged every step (the baseline)
#   configs/diloco.yaml  DiLoCo: 50 local steps between averages of the pseudo-gradient
# then compares them with `loco report` (validation loss against tokens and against bytes sent
# per worker) and prints where the report is. A few minutes on a 2-core machine.
#
# Environment: LOCO_BUILD_DIR (build), LOCO_WORKERS (4), LOCO_JOB_DIR (runs/default-job),
# LOCO_TRAIN_ARGS (extra `loco train` options, e.g. "--set train.steps=300" for a quicker look).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
build_dir=${LOCO_BUILD_DIR:-build}
workers=${LOCO_WORKERS:-4}
out=${LOCO_JOB_DIR:-runs/default-job}
read -r -a extra <<< "${LOCO_TRAIN_ARGS:-}"
say() { printf '\033[1m[default-job]\033[0m %s\n' "$*"; }

[ -x "$build_dir/loco" ] || { echo "default-job.sh: $build_dir/loco is missing; run bash launch/setup.sh" >&2; exit 1; }
if [ ! -f data/fortunes/train.tok ] || [ ! -f data/fortunes/val.tok ]; then
  say "preparing the fortunes corpus in data/fortunes"
  "$build_dir/loco" data prepare --out data/fortunes "${LOCO_CORPUS_ROOT:-}/usr/share/games/fortunes"
fi

status_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$1" 2>/dev/null || echo none; }

for name in ddp diloco; do
  dir=$out/$name
  rm -rf "$dir"
  say "training configs/$name.yaml with $workers workers -> $dir"
  LOCO_MPIRUN_TIMEOUT=${LOCO_MPIRUN_TIMEOUT:-3600} launch/loco-mpirun -np "$workers" \
    "$build_dir/loco" train "configs/$name.yaml" --set run.dir="$dir" "${extra[@]}" || true
  # mpirun returns 0 whatever happened: the run's own summary says how it went
  if [ "$(status_of "$dir/run.json")" != ok ]; then
    echo "default-job.sh: the $name run failed (see the messages above and $dir/run.json)" >&2
    exit 1
  fi
done

"$build_dir/loco" report --out "$out/report" "$out/ddp" "$out/diloco" >/dev/null
python3 - "$out/ddp/run.json" "$out/diloco/run.json" <<'PY'
import json, sys
ddp, dil = (json.load(open(p)) for p in sys.argv[1:3])
def sent(r): return sum(w["bytes_sent"] for w in r["workers"]) / len(r["workers"])
print(f"  ddp:    validation loss {ddp['final_val_loss']:.4f}, {sent(ddp) / 2**20:9.1f} MiB sent per worker")
print(f"  diloco: validation loss {dil['final_val_loss']:.4f}, {sent(dil) / 2**20:9.1f} MiB sent per worker"
      f"  ({sent(ddp) / sent(dil):.0f}x fewer bytes, "
      f"{100 * (dil['final_val_loss'] / ddp['final_val_loss'] - 1):+.1f}% loss)")
PY
say "report: $out/report/report.md (plots: $out/report/val_loss_vs_tokens.png, val_loss_vs_bytes.png)"
