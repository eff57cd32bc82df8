#!/usr/bin/env bash
# launch/wallclock.sh — wall-clock of DDP, DiLoCo and DiLoCo + delay over emulated slow links
# (issue 6; docs/RESULTS.md): time to reach the DDP baseline's final validation loss.
#
#   bash launch/wallclock.sh ["RATE DELAY"...]     default: "1gbit 50ms" "100mbit 50ms"
#
# For each link (loco's built-in emulator on every pair: transport.link.rate / .delay) the three
# configs run with LOCO_WORKERS (4) workers into runs/wallclock/RATE-DELAY/NAME, validating every
# LOCO_WALL_EVAL (50) steps. Times are training seconds (wall clock minus validation) read from
# the eval records of metrics.jsonl. Extra `loco train` options: LOCO_TRAIN_ARGS.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
build_dir=${LOCO_BUILD_DIR:-build}
workers=${LOCO_WORKERS:-4}
out=${LOCO_WALL_DIR:-runs/wallclock}
read -r -a extra <<< "${LOCO_TRAIN_ARGS:-}"
links=("$@")
[ ${#links[@]} -gt 0 ] || links=("1gbit 50ms" "100mbit 50ms")
[ -f data/fortunes/train.tok ] || "$build_dir/loco" data prepare --out data/fortunes \
  "${LOCO_CORPUS_ROOT:-}/usr/share/games/fortunes"
status_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$1" 2>/dev/null || echo none; }

tables=()
for link in "${links[@]}"; do
  read -r rate delay <<< "$link"
  base=$out/$rate-$delay
  for name in ddp diloco diloco-delay; do
    dir=$base/$name
    if [ "$(status_of "$dir/run.json")" = ok ]; then
      echo "[wallclock] $rate $delay $name: kept"
      continue
    fi
    rm -rf "$dir"
    echo "[wallclock] $rate $delay $name ..."
    LOCO_LOG=${LOCO_LOG:-warn} LOCO_MPIRUN_TIMEOUT=${LOCO_MPIRUN_TIMEOUT:-7200} \
      launch/loco-mpirun -np "$workers" "$build_dir/loco" train "configs/$name.yaml" \
      --set run.dir="$dir" --set transport.link.rate="$rate" --set transport.link.delay="$delay" \
      --set train.eval_every="${LOCO_WALL_EVAL:-50}" "${extra[@]}" || true
    [ "$(status_of "$dir/run.json")" = ok ] || { echo "[wallclock] $name failed" >&2; exit 1; }
  done
  tables+=("$base")
done

python3 - "${tables[@]}" <<'PY'
import json, os, sys
print("| link | strategy | final val loss | training s (total) | s to DDP's final val loss | speed-up | MiB sent/worker |")
print("|---|---|---:|---:|---:|---:|---:|")
for base in sys.argv[1:]:
    link = os.path.basename(base).replace("-", ", ")
    runs = {}
    for name in ("ddp", "diloco", "diloco-delay"):
        d = os.path.join(base, name)
        run = json.load(open(os.path.join(d, "run.json")))
        evals = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if '"event":"eval"' in l]
        runs[name] = (run, evals)
    target = runs["ddp"][0]["final_val_loss"]
    ddp_time = runs["ddp"][1][-1]["train_s"]
    for name, (run, evals) in runs.items():
        hit = next((e["train_s"] for e in evals if e["val_loss"] <= target + 1e-9), None)
        sent = sum(w["bytes_sent"] for w in run["workers"]) / len(run["workers"]) / 2**20
        reach = f"{hit:.0f}" if hit is not None else "not reached"
        speed = f"{ddp_time / hit:.1f}x" if hit else "n/a"
        print(f"| {link} | {name} | {run['final_val_loss']:.4f} | {evals[-1]['train_s']:.0f} | "
              f"{reach} | {speed} | {sent:.1f} |")
PY
