#!/usr/bin/env bash
# bench/gpu_device.sh — one session on a GPU machine: offline setup from .deb files, build with
# CUDA, the GPU tests, then `loco bench gpu` against PyTorch; a short table last.
#
#   bash bench/gpu_device.sh [STAGE...]   stages, in this order: setup layers kernels bench
#                                         profile variants tests multi (default: all; layers =
#                                         the kernel tests, kernels = the flash tile variants
#                                         timed, variants = loco alone on GQA/MQA/shared-K/V
#                                         shapes, tests = the optimizer and whole-model tests,
#                                         codecs = GPU quantizers: bytes vs the CPU codec and
#                                         throughput vs a copy, multi = one worker of all GPUs
#                                         with NCCL, when the machine has two or more;
#                                         train = `loco train` on GPUs: tests/test_train_cuda.sh,
#                                         then 2 DiLoCo workers x 1 GPU over TCP (fp32, 8-bit
#                                         encoded on the GPU (allgather) and by the host ring,
#                                         one-round delay) next to one worker of 2 GPUs (NCCL) on the
#                                         same shape, and `loco train` with one worker of 2 GPUs
#                                         (train.gpus_per_worker); train_runs.json has tokens/s and
#                                         losses)
#
# Environment: OUT (logs and JSON, default /tmp/loco-gpu-out), LOCO_PKG_DIR (default ./.deb),
# LOCO_BUILD_DIR (default /tmp/loco-build), BENCH_ARGS (extra `loco bench gpu` options).
# NVLink multicast stays off (the lab's rule for shared hosts). At most 7 files land in OUT.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/loco-gpu-out}
mkdir -p "$OUT"
export LOCO_PKG_DIR=${LOCO_PKG_DIR:-$PWD/.deb}
export LOCO_BUILD_DIR=${LOCO_BUILD_DIR:-/tmp/loco-build}
stages=${*:-setup layers kernels bench profile variants tests codecs multi train}
summary=()
has() { case " $stages " in *" $1 "*) return 0 ;; esac; return 1; }
stamp() { date -u +%Y-%m-%dT%H:%M:%SZ; }

echo "== $(stamp) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

if has setup; then
  t0=$SECONDS
  LOCO_CUDA=ON bash launch/setup.sh > "$OUT/setup.log" 2>&1
  rc=$?
  tail -n 5 "$OUT/setup.log"
  cp "$LOCO_BUILD_DIR.build.log" "$OUT/build.log" 2>/dev/null
  summary+=("setup+build: rc $rc, $((SECONDS - t0)) s")
  [ $rc -eq 0 ] || { printf '%s\n' "${summary[@]}"; exit 1; }
fi
# shellcheck disable=SC1091
[ -f "$LOCO_PKG_DIR/root/env.sh" ] && . "$LOCO_PKG_DIR/root/env.sh"

run_tests() { # run_tests NAME...: the Criterion GPU tests, 120 s each at most
  for t in "$@"; do
    t0=$SECONDS
    timeout 120 "$LOCO_BUILD_DIR/tests/$t" --verbose --jobs 1 > "$OUT/$t.tmp" 2>&1
    rc=$?
    grep -E "max rel err|loss cpu|worst gradient|rel diff|FAIL|Crash|Synthesis|Assert" \
      "$OUT/$t.tmp" | head -n 80
    summary+=("$t: rc $rc, $((SECONDS - t0)) s, $(grep Synthesis "$OUT/$t.tmp" | sed 's/.*Synthesis: //')")
    { echo "==== $t (rc $rc)"; cat "$OUT/$t.tmp"; } >> "$OUT/tests.log"
    rm -f "$OUT/$t.tmp"
  done
}

has layers && run_tests test_cuda_layers
if has kernels; then
  timeout 120 "$LOCO_BUILD_DIR/loco" bench gpu --kernels 1 ${BENCH_ARGS:-} 2>&1 \
    | tee -a "$OUT/profile.log"
fi
if has bench; then
  t0=$SECONDS
  timeout 300 "$LOCO_BUILD_DIR/loco" bench gpu --json "$OUT/bench_gpu.json" ${BENCH_ARGS:-} \
    > "$OUT/bench.log" 2>&1
  rc=$?
  cat "$OUT/bench.log"
  summary+=("bench gpu: rc $rc, $((SECONDS - t0)) s")
fi

if has profile; then
  timeout 90 "$LOCO_BUILD_DIR/loco" bench gpu --no-torch --steps 5 --warmup 3 --profile 3 \
    ${BENCH_ARGS:-} 2>&1 | tee -a "$OUT/profile.log"
fi

if has variants; then # the K/V-cache-shrinking shapes, loco alone (no baseline needed)
  for v in "--kv-heads 4" "--kv-heads 1" "--share 2" "--kv-heads 4 --share 2"; do
    # shellcheck disable=SC2086
    timeout 60 "$LOCO_BUILD_DIR/loco" bench gpu --no-torch --steps 10 --warmup 3 $v \
      ${BENCH_ARGS:-} 2>&1 | grep -E "^  loco:|^L[0-9]" | tee -a "$OUT/variants.log"
  done
fi

has tests && run_tests test_cuda_optim test_cuda_model

if has codecs; then
  run_tests test_cuda_codec
  timeout 120 "$LOCO_BUILD_DIR/loco" bench gpucodec --json "$OUT/gpucodec.json" 2>&1 \
    | tee -a "$OUT/bench.log"
fi

ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if has multi && [ "$ngpu" -ge 2 ]; then # several GPUs as one worker, NCCL over loco's bootstrap
  for run in "1 --steps 10" "$ngpu --steps 10" "$ngpu --steps 10 --no-overlap"; do
    np=${run%% *}
    # shellcheck disable=SC2086
    LOCO_MPIRUN_TIMEOUT=150 launch/loco-mpirun -np "$np" "$LOCO_BUILD_DIR/tools/gpu_worker" \
      --warmup 3 ${run#* } 2>&1 | grep -E "^step|^gpu_worker" | tee -a "$OUT/variants.log"
    summary+=("$(grep '^gpu_worker: GPUs' "$OUT/variants.log" | tail -n 1)")
  done
fi

if has train; then # loco train on GPUs: the test, then DiLoCo between 1-GPU workers over TCP
  t0=$SECONDS
  (cd "$LOCO_BUILD_DIR" && timeout 300 ctest -R 'test_train_cuda|test_sync$' --output-on-failure) \
    > "$OUT/train.log" 2>&1
  summary+=("test_train_cuda + test_sync: rc $?, $((SECONDS - t0)) s")
  grep -E "^ *[0-9]+/[0-9]+ Test|ok:|FAIL|final validation|round ends" "$OUT/train.log"
  runs=/tmp/loco-gpu-runs
  rm -rf "$runs"
  steps=${TRAIN_STEPS:-300}
  shape=(--set train.steps="$steps" --set train.eval_every=100 --set train.log_every=10)
  if [ "$ngpu" -ge 2 ]; then
    for v in "diloco2 " "diloco2-int8 --set codec.name=maxmin --set codec.bits=8" \
             "diloco2-int8-ring --set codec.name=maxmin --set codec.bits=8 --set sync.exchange=ring" \
             "diloco2-delay1 --set sync.delay=1 --set sync.outer_momentum=0"; do
      name=${v%% *}
      t0=$SECONDS
      # shellcheck disable=SC2086
      LOCO_MPIRUN_TIMEOUT=200 launch/loco-mpirun -np 2 "$LOCO_BUILD_DIR/loco" train \
        configs/diloco-gpu.yaml "${shape[@]}" --set run.dir="$runs/$name" ${v#* } \
        >> "$OUT/train.log" 2>&1
      summary+=("loco train $name (2 workers x 1 GPU): $((SECONDS - t0)) s")
    done
  fi
  if [ "$ngpu" -ge 2 ]; then # one worker of 2 GPUs (NCCL inside, batch 32 = 16 per GPU), and
    # two DiLoCo workers of 2 GPUs each sharing the 2 GPUs
    t0=$SECONDS
    timeout 200 "$LOCO_BUILD_DIR/loco" train configs/diloco-gpu.yaml --set sync.strategy=none \
      --set train.steps=100 --set train.eval_every=0 --set train.log_every=10 \
      --set train.gpus_per_worker=2 --set train.batch=32 --set run.dir="$runs/single2gpu" \
      >> "$OUT/train.log" 2>&1
    summary+=("loco train single2gpu (1 worker x 2 GPUs, 100 steps): rc $?, $((SECONDS - t0)) s")
  fi
  t0=$SECONDS
  timeout 200 "$LOCO_BUILD_DIR/loco" train configs/diloco-gpu.yaml --set sync.strategy=none \
    --set train.steps=100 --set train.eval_every=0 --set train.log_every=10 \
    --set run.dir="$runs/single" >> "$OUT/train.log" 2>&1
  summary+=("loco train single (1 worker x 1 GPU, 100 steps): rc $?, $((SECONDS - t0)) s")
  for np in 1 $([ "$ngpu" -ge 2 ] && echo 2); do # the same shape, random tokens, NCCL workers
    LOCO_MPIRUN_TIMEOUT=150 launch/loco-mpirun -np "$np" "$LOCO_BUILD_DIR/tools/gpu_worker" \
      --layers 12 --width 768 --heads 12 --vocab 256 --seq 1024 --batch 16 --steps 30 \
      --warmup 5 2>&1 | grep -E "^gpu_worker" | tee -a "$OUT/train.log" > "$runs/gpu_worker$np.txt"
  done
  grep -E "round ends|encoded on the GPU" "$OUT/train.log"
  python3 bench/train_summary.py "$runs" > "$OUT/train_runs.json"
  python3 - "$OUT/train_runs.json" <<'PY'
import json, sys
for name, r in json.load(open(sys.argv[1])).items():
    if "tokens_per_s_per_worker" in r:
        print(f"{name:14s} workers {r['workers']}  tokens/s per worker {r['tokens_per_s_per_worker']:.0f}"
              f"  total {r['tokens_per_s_total']:.0f}  final val {r['final_val_loss']}"
              f"  syncs {r['syncs']}  sync MB sent/worker {r['sync_mb_sent_per_worker']:.1f}"
              f"  comm wait s {r['comm_wait_s']:.2f}  wall s {r['wall_s']:.1f}")
    else:
        print(f"{name:14s} {r}")
PY
fi

echo "== $(stamp) summary"
printf '%s\n' "${summary[@]}"
