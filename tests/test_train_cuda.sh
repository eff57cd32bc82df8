#!/usr/bin/env bash
# tests/test_train_cuda.sh — `loco train` with train.device: cuda (src/train_device.c).
# Without a GPU: a clear error, then SKIP. With a GPU (one or more; two workers share one
# if need be): a single GPU worker trains (loss falls, validation loss near the CPU's), stop +
# --resume is bit-identical to an uninterrupted run (parameters and AdamW moments cross
# device <-> host exactly), two DiLoCo workers (8-bit max-min: sync.exchange auto = allgather,
# the pseudo-gradient encoded on the GPU) end with identical parameters and shared state, and
# their final validation loss is close to the same run on the CPU (bf16 activations vs fp32);
# a CPU worker and a GPU worker in one run (their messages byte-compatible) end equal; three GPU
# workers under the control plane lose one to kill -9 mid-collective and the two survivors
# finish with one digest; a worker whose GPU hangs is ended by its watchdog and the survivors
# agree; two Streaming DiLoCo GPU workers agree and match the CPU run; ddp on GPUs matches the CPU
# and survives a kill; with two or more GPUs, one worker of 2 GPUs (NCCL) matches one worker of
# 1 GPU on the same batch, two DiLoCo workers of 2 GPUs each end with one digest, and a worker
# one of whose 2 GPUs hangs (the other stuck in NCCL) is ended while the others agree.
source "$(dirname "$0")/lib.sh"
export LOCO_MPIRUN_TIMEOUT=240
data=$LOCO_TMP/data
tiny_data "$data"
cfg=$LOCO_SRC/configs/single.yaml
common=("${TINY[@]}" --set data.path="$data" --set train.eval_every=20 --set train.threads=1
        --set optim.total_steps=40 --set train.device=cuda)

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  expect_rc 1 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=2 --set run.dir="$LOCO_TMP/x"
  grep -qE "built without CUDA|no CUDA device is visible" "$LOCO_TMP/last.err" \
    || { cat "$LOCO_TMP/last.err"; fail "no clear error without a GPU"; }
  echo "SKIP: no GPU here (the refusal without a GPU was checked)"
  exit 0
fi

digest() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["workers"][0]["param_digest"])' "$1/run.json"; }

# 2. one GPU worker: outputs, falling loss; stop at 20 + resume to 40 == 40 straight
run=$LOCO_TMP/gpu1
expect_rc 0 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=40 --set run.dir="$run"
grep -q "device: cuda" "$run/config.yaml" || fail "the GPU run's config does not say cuda"
python3 - "$run/metrics.jsonl" <<'PY' || fail "loss did not fall on the GPU"
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"event":"step"' in l]
assert len(steps) == 40, len(steps)
first = sum(s['loss'] for s in steps[:5]) / 5
last = sum(s['loss'] for s in steps[-5:]) / 5
assert last < first - 0.5, (first, last)
PY
expect_rc 0 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=40 --set train.device=cpu \
  --set run.dir="$LOCO_TMP/cpu1"
python3 - "$run/run.json" "$LOCO_TMP/cpu1/run.json" <<'PY' || fail "GPU and CPU disagree"
import json, sys
g, c = (json.load(open(p))["final_val_loss"] for p in sys.argv[1:3])
print(f"final validation loss, one worker: GPU {g:.6f}, CPU {c:.6f}")
assert abs(g - c) < 0.05 * c, (g, c)
PY
part=$LOCO_TMP/gpu1part
expect_rc 0 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=20 --set run.dir="$part"
expect_rc 0 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=40 --set run.dir="$part" --resume
[ "$(digest "$run")" = "$(digest "$part")" ] || fail "GPU resume differs: $(digest "$run") vs $(digest "$part")"
pass "one GPU worker trains; resume is bit-identical ($(digest "$run"))"

# 3. two DiLoCo workers on GPUs, 8-bit max-min ring: identical replicas, CPU-like loss
dil=("${common[@]}" --set sync.strategy=diloco --set sync.h=10 --set codec.name=maxmin
     --set codec.bits=8 --set train.steps=40)
LOCO_LOG=info "$LOCO_SRC/launch/loco-mpirun" -np 2 "$LOCO" train "$cfg" "${dil[@]}" \
  --set run.dir="$LOCO_TMP/gpu2" >"$LOCO_TMP/gpu2.log" 2>&1 || true
"$LOCO_SRC/launch/loco-mpirun" -np 2 "$LOCO" train "$cfg" "${dil[@]}" --set train.device=cpu \
  --set run.dir="$LOCO_TMP/cpu2" >"$LOCO_TMP/cpu2.log" 2>&1 || true
python3 - "$LOCO_TMP/gpu2" "$LOCO_TMP/cpu2" <<'PY' || { tail -20 "$LOCO_TMP/gpu2.log"; fail "2 GPU workers"; }
import json, sys
gpu, cpu = (json.load(open(f"{d}/run.json")) for d in sys.argv[1:3])
for run in (gpu, cpu):
    assert run["status"] == "ok", run.get("error")
    ws = run["workers"]
    assert len(ws) == 2 and len({w["param_digest"] for w in ws}) == 1, ws
    assert len({w["state_digest"] for w in ws}) == 1, ws
recs = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
syncs = [r for r in recs if r["event"] == "sync" and r["rank"] == 0]
assert len(syncs) == 4, len(syncs)
g, c = gpu["final_val_loss"], cpu["final_val_loss"]
print(f"final validation loss: GPU {g:.6f}, CPU {c:.6f}")
assert abs(g - c) < 0.05 * c, (g, c)
PY
pass "two GPU DiLoCo workers agree and match the CPU run"
grep -q "pseudo-gradients encoded on the GPU" "$LOCO_TMP/gpu2.log" \
  || { tail -20 "$LOCO_TMP/gpu2.log"; fail "the GPU workers did not encode their pseudo-gradients"; }
grep -q "exchange: allgather" "$LOCO_TMP/gpu2/config.yaml" || fail "auto did not pick allgather on the GPU"

# same_digests DIR WORLD [DIED]: status ok, WORLD survivors with one parameter and state digest
same_digests() {
  python3 - "$@" <<'PY'
import json, sys
d, world = sys.argv[1], int(sys.argv[2])
died = int(sys.argv[3]) if len(sys.argv) > 3 else 0
run = json.load(open(f"{d}/run.json"))
assert run["status"] == "ok", run.get("error")
ws = run["workers"]
assert len(ws) == world, [w["rank"] for w in ws]
assert len({w["param_digest"] for w in ws}) == 1, ws
assert len({w["state_digest"] for w in ws}) == 1, ws
assert run["membership"]["died"] == died, run["membership"]
print(f"ok: {d}: {world} workers, digest {ws[0]['param_digest']}, membership {run['membership']}")
PY
}

# 4. a CPU worker and a GPU worker in one run: the GPU's messages decode on the CPU and back
mix=("${dil[@]}" --set sync.exchange=allgather --set run.dir="$LOCO_TMP/mixed")
LOCO_LOG=info "$LOCO_SRC/launch/loco-mpirun" -np 1 "$LOCO" train "$cfg" "${mix[@]}" --set train.device=cpu : \
  -np 1 "$LOCO" train "$cfg" "${mix[@]}" >"$LOCO_TMP/mixed.log" 2>&1 || true
same_digests "$LOCO_TMP/mixed" 2 || { tail -20 "$LOCO_TMP/mixed.log"; fail "CPU + GPU workers"; }
grep -q "pseudo-gradients encoded on the GPU" "$LOCO_TMP/mixed.log" || fail "no GPU encoding in the mixed run"
pass "a CPU worker and a GPU worker train one model (GPU-encoded messages decode on the CPU)"

# 5. GPU workers under the control plane: member 1 SIGKILLs itself mid-collective at step 12
"$LOCO_SRC/launch/loco-mpirun" -np 3 "$LOCO" train "$cfg" "${dil[@]}" --set sync.h=5 \
  --set train.steps=30 --set optim.total_steps=30 --set train.kill_at_step=12 \
  --set train.fault_members=1 --set "transport.links=1->-1 rate=200mbit" \
  --set run.dir="$LOCO_TMP/gpukill" >"$LOCO_TMP/gpukill.log" 2>&1 || true
same_digests "$LOCO_TMP/gpukill" 2 1 || { tail -30 "$LOCO_TMP/gpukill.log"; fail "GPU workers after a kill"; }
[ -f "$LOCO_TMP/gpukill/member.1.fault.json" ] || fail "member 1 never fired its fault"
pass "three GPU DiLoCo workers lose one to kill -9 and the survivors agree"

# 6. Streaming DiLoCo on GPUs (2 fragments, tau 2, FP4): identical digests, CPU-like loss
str=("${common[@]}" --set sync.strategy=streaming --set sync.h=10 --set sync.overlap=2
     --set train.steps=40)
"$LOCO_SRC/launch/loco-mpirun" -np 2 "$LOCO" train "$cfg" "${str[@]}" \
  --set run.dir="$LOCO_TMP/gpustream" >"$LOCO_TMP/gpustream.log" 2>&1 || true
"$LOCO_SRC/launch/loco-mpirun" -np 2 "$LOCO" train "$cfg" "${str[@]}" --set train.device=cpu \
  --set run.dir="$LOCO_TMP/cpustream" >"$LOCO_TMP/cpustream.log" 2>&1 || true
same_digests "$LOCO_TMP/gpustream" 2 || { tail -20 "$LOCO_TMP/gpustream.log"; fail "streaming on GPUs"; }
python3 - "$LOCO_TMP/gpustream" "$LOCO_TMP/cpustream" <<'PY' || fail "streaming GPU vs CPU"
import json, sys
g, c = (json.load(open(f"{d}/run.json"))["final_val_loss"] for d in sys.argv[1:3])
recs = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
frags = {r.get("fragment") for r in recs if r["event"] == "sync" and r["rank"] == 0}
assert {0, 1} <= frags, frags  # -1: the final sync of every fragment
print(f"streaming final validation loss: GPU {g:.6f}, CPU {c:.6f}")
assert abs(g - c) < 0.05 * c, (g, c)
PY
pass "two Streaming DiLoCo GPU workers agree and match the CPU run"

# 6b. the strategies that take the gradient on the host every step (ddp: averaged there, 4-bit
# QSGD ring, applied on the devices; demo: DCT top-k exchange and sign step on the host
# parameters, which go back up): identical replicas, a CPU-like loss, and a worker killed
# mid-collective. per_step_case NAME ARGS...: the GPU run, the same run on CPU workers, the kill.
per_step_case() {
  local name=$1
  shift
  local args=("${common[@]}" "$@" --set train.steps=40)
  "$LOCO_SRC/launch/loco-mpirun" -np 2 "$LOCO" train "$cfg" "${args[@]}" \
    --set run.dir="$LOCO_TMP/gpu$name" >"$LOCO_TMP/gpu$name.log" 2>&1 || true
  "$LOCO_SRC/launch/loco-mpirun" -np 2 "$LOCO" train "$cfg" "${args[@]}" --set train.device=cpu \
    --set run.dir="$LOCO_TMP/cpu$name" >"$LOCO_TMP/cpu$name.log" 2>&1 || true
  same_digests "$LOCO_TMP/gpu$name" 2 || { tail -20 "$LOCO_TMP/gpu$name.log"; fail "$name on GPUs"; }
  python3 - "$LOCO_TMP/gpu$name" "$LOCO_TMP/cpu$name" "$name" <<'PY' || fail "$name GPU vs CPU"
import json, sys
g, c = (json.load(open(f"{d}/run.json"))["final_val_loss"] for d in sys.argv[1:3])
print(f"{sys.argv[3]} final validation loss: GPU {g:.6f}, CPU {c:.6f}")
assert abs(g - c) < 0.05 * c, (g, c)
PY
  "$LOCO_SRC/launch/loco-mpirun" -np 3 "$LOCO" train "$cfg" "${args[@]}" --set train.steps=30 \
    --set optim.total_steps=30 --set train.kill_at_step=12 --set train.fault_members=1 \
    --set "transport.links=1->-1 rate=200mbit" --set run.dir="$LOCO_TMP/gpu${name}kill" \
    >"$LOCO_TMP/gpu${name}kill.log" 2>&1 || true
  same_digests "$LOCO_TMP/gpu${name}kill" 2 1 ||
    { tail -30 "$LOCO_TMP/gpu${name}kill.log"; fail "GPU $name after a kill"; }
  pass "$name on GPUs: workers agree, CPU-like loss, survive a kill -9"
}
per_step_case ddp --set sync.strategy=ddp --set codec.name=qsgd --set codec.bits=4
per_step_case demo --set sync.strategy=demo --set optim.lr=0.003

# 6c. a hung GPU: member 1's GPU stops answering at step 12 (train.hang_at_step); its watchdog
# (train.gpu_timeout) ends the process, and the two survivors finish with one digest
"$LOCO_SRC/launch/loco-mpirun" -np 3 "$LOCO" train "$cfg" "${dil[@]}" --set sync.h=5 \
  --set train.steps=30 --set optim.total_steps=30 --set train.hang_at_step=12 \
  --set train.gpu_timeout=4 --set train.fault_members=1 --set run.dir="$LOCO_TMP/gpuhang" \
  >"$LOCO_TMP/gpuhang.log" 2>&1 || true
grep -q "GPU step job of step 12 did not finish within train.gpu_timeout = 4 s" \
  "$LOCO_TMP/gpuhang.log" || { tail -30 "$LOCO_TMP/gpuhang.log"; fail "the watchdog did not end the hung worker"; }
same_digests "$LOCO_TMP/gpuhang" 2 1 || { tail -30 "$LOCO_TMP/gpuhang.log"; fail "GPU workers after a hang"; }
pass "a hung GPU ends its worker (train.gpu_timeout) and the survivors agree"

# 7. a worker of several GPUs (train.gpus_per_worker: NCCL inside the worker)
ngpu=$(nvidia-smi -L | grep -c '^GPU')
if [ "$ngpu" -lt 2 ]; then
  expect_rc 2 "$LOCO" train "$cfg" "${common[@]}" --set train.steps=2 \
    --set train.gpus_per_worker=2 --set run.dir="$LOCO_TMP/twogpu"
  expect_err "train.gpus_per_worker: 2, but this process sees 1 GPU"
  echo "SKIP: one GPU here: the workers of several GPUs were not run (the refusal was checked)"
  exit 0
fi
one=("${common[@]}" --set train.steps=40 --set train.batch=8)
LOCO_LOG=info "$LOCO" train "$cfg" "${one[@]}" --set train.gpus_per_worker=2 \
  --set run.dir="$LOCO_TMP/w2gpu" >"$LOCO_TMP/w2gpu.log" 2>&1 || { tail -20 "$LOCO_TMP/w2gpu.log"; fail "a worker of 2 GPUs"; }
expect_rc 0 "$LOCO" train "$cfg" "${one[@]}" --set run.dir="$LOCO_TMP/w1gpu"
grep -q "averaged over the worker's GPUs by NCCL" "$LOCO_TMP/w2gpu.log" || fail "the 2-GPU worker did not say so"
python3 - "$LOCO_TMP/w2gpu" "$LOCO_TMP/w1gpu" <<'PY' || fail "2 GPUs vs 1 GPU"
import json, sys
two, one = (json.load(open(f"{d}/run.json"))["final_val_loss"] for d in sys.argv[1:3])
print(f"final validation loss, batch 8: 1 worker x 2 GPUs {two:.6f}, 1 worker x 1 GPU {one:.6f}")
assert abs(two - one) < 0.02 * one, (two, one)
PY
pass "one worker of 2 GPUs trains like one GPU on the same batch"
"$LOCO_SRC/launch/loco-mpirun" -np 2 "$LOCO" train "$cfg" "${dil[@]}" --set train.batch=8 \
  --set train.gpus_per_worker=2 --set run.dir="$LOCO_TMP/dil2x2" >"$LOCO_TMP/dil2x2.log" 2>&1 || true
same_digests "$LOCO_TMP/dil2x2" 2 || { tail -20 "$LOCO_TMP/dil2x2.log"; fail "2 DiLoCo workers x 2 GPUs"; }
pass "two DiLoCo workers of 2 GPUs each agree"

# 7b. one GPU of a 2-GPU worker hangs: the worker's other GPU blocks inside an NCCL all-reduce
# it can never finish; the watchdog ends that worker and the other two carry on
"$LOCO_SRC/launch/loco-mpirun" -np 3 "$LOCO" train "$cfg" "${dil[@]}" --set train.batch=8 \
  --set train.gpus_per_worker=2 --set sync.h=5 --set train.steps=30 --set optim.total_steps=30 \
  --set train.hang_at_step=12 --set train.gpu_timeout=4 --set train.fault_members=1 \
  --set run.dir="$LOCO_TMP/nccl_hang" >"$LOCO_TMP/nccl_hang.log" 2>&1 || true
grep -q "GPU 1 of this worker hangs at step 12" "$LOCO_TMP/nccl_hang.log" || fail "GPU 1 never hung"
grep -q "did not finish within train.gpu_timeout" "$LOCO_TMP/nccl_hang.log" || { tail -30 "$LOCO_TMP/nccl_hang.log"; fail "the watchdog did not end the worker stuck in NCCL"; }
same_digests "$LOCO_TMP/nccl_hang" 2 1 || { tail -30 "$LOCO_TMP/nccl_hang.log"; fail "2-GPU workers after a hang inside one"; }
pass "a GPU hung inside a 2-GPU worker (its peer stuck in NCCL) ends that worker; the others agree"
