#!/usr/bin/env bash
# tests/test_sync_mpi.sh — every sync strategy with 4 real workers under launch/loco-mpirun, on
# a tiny model for 40 steps: the run succeeds, the loss falls, every worker ends with the same
# parameter digest and shared-state digest (run.json), every sync event carries the same digest
# on every worker (metrics.jsonl), and the low-communication strategies send far fewer bytes than
# DDP. Then the same with --join (two processes, no MPI), and inconsistent settings refused
# before training. mpirun's exit code means nothing (--enable-recovery): read loco's own files.
source "$(dirname "$0")/lib.sh"
export LOCO_MPIRUN_TIMEOUT=90
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
MPIRUN=("$LOCO_SRC/launch/loco-mpirun" -np 4)
data=$LOCO_TMP/data
tiny_data "$data"
common=("${TINY[@]}" --set data.path="$data" --set train.steps=40 --set train.eval_every=20
        --set train.threads=1 --set optim.total_steps=40)

# check_run DIR WORLD: assertions over run.json and metrics.jsonl
check_run() {
  python3 - "$1" "$2" <<'PY'
import json, sys, collections
d, world = sys.argv[1], int(sys.argv[2])
run = json.load(open(f"{d}/run.json"))
def die(msg):
    print(f"FAIL ({d}): {msg}", file=sys.stderr); sys.exit(1)
if run["status"] != "ok": die(f"status {run['status']}: {run.get('error')}")
ws = run["workers"]
if sorted(w["rank"] for w in ws) != list(range(world)): die(f"workers {[w['rank'] for w in ws]}")
if len({w["param_digest"] for w in ws}) != 1: die(f"parameter digests differ: {ws}")
if len({w["state_digest"] for w in ws}) != 1: die(f"shared-state digests differ: {ws}")
if any(w["bytes_sent"] <= 0 or w["bytes_received"] <= 0 for w in ws): die("no bytes counted")
recs = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
steps = [r for r in recs if r["event"] == "step" and r["rank"] == 0]
first = sum(r["loss"] for r in steps[:5]) / 5
last = sum(r["loss"] for r in steps[-5:]) / 5
if not last < first - 0.5: die(f"loss did not fall: {first:.3f} -> {last:.3f}")
evals = [r for r in recs if r["event"] == "eval"]
if len(evals) != 2: die(f"{len(evals)} eval records, want 2 (rank 0 only)")
syncs = collections.defaultdict(dict)
for r in recs:
    if r["event"] == "sync":
        syncs[r["sync"]][r["rank"]] = r["state_digest"]
for k, by_rank in syncs.items():
    if len(by_rank) != world or len(set(by_rank.values())) != 1:
        die(f"sync {k}: digests {by_rank}")
sent = sum(w["bytes_sent"] for w in ws) / world
print(f"ok: {run['strategy']} x{world}: loss {first:.2f} -> {last:.2f}, val "
      f"{run['final_val_loss']:.3f}, {len(syncs)} logged syncs agree, {sent/1e6:.2f} MB sent/worker")
PY
}

sent_per_worker() {
  python3 -c 'import json,sys; w=json.load(open(sys.argv[1]))["workers"]; print(int(sum(x["bytes_sent"] for x in w)/len(w)))' "$1/run.json"
}

run_cfg() { # NAME CONFIG [--set ...]
  local name=$1 cfg=$2; shift 2
  "${MPIRUN[@]}" "$LOCO" train "$LOCO_SRC/configs/$cfg.yaml" "${common[@]}" \
    --set run.dir="$LOCO_TMP/$name" "$@" >"$LOCO_TMP/$name.out" 2>&1 || true
  [ -f "$LOCO_TMP/$name/run.json" ] || { cat "$LOCO_TMP/$name.out" >&2; fail "$name wrote no run.json"; }
  check_run "$LOCO_TMP/$name" 4 || { tail -20 "$LOCO_TMP/$name.out" >&2; fail "$name"; }
}

echo "--- 1. every strategy with 4 workers"
run_cfg ddp ddp
run_cfg ddp-topk ddp-topk
run_cfg ddp-qsgd4 ddp-qsgd4
run_cfg diloco diloco --set sync.h=10
run_cfg diloco-int8 diloco-int8 --set sync.h=10
run_cfg diloco-delay diloco-delay --set sync.h=10
run_cfg diloco-allgather-topk diloco --set sync.h=10 --set sync.exchange=allgather \
  --set codec.name=topk --set codec.density=0.1
run_cfg streaming streaming --set sync.h=10 --set sync.overlap=2
run_cfg demo demo
grep -q '"kind":"outer_delayed"' "$LOCO_TMP/diloco-delay/metrics.jsonl" || fail "no delayed sync events"
grep -q '"kind":"fragment","sync":[0-9]*,"fragment":1' "$LOCO_TMP/streaming/metrics.jsonl" \
  || fail "streaming never synced fragment 1"

ddp=$(sent_per_worker "$LOCO_TMP/ddp")
diloco=$(sent_per_worker "$LOCO_TMP/diloco")
int8=$(sent_per_worker "$LOCO_TMP/diloco-int8")
[ "$((ddp / diloco))" -ge 5 ] || fail "diloco H=10 sent $diloco bytes, ddp $ddp: expected >= 5x fewer"
[ "$int8" -lt "$diloco" ] || fail "int8 pseudo-gradients ($int8 B) not smaller than fp32 ($diloco B)"
topk=$(sent_per_worker "$LOCO_TMP/diloco-allgather-topk")
[ "$((diloco / topk))" -ge 2 ] || fail "top-k 10% by allgather sent $topk B, fp32 ring $diloco B"
grep -q "exchange: allgather" "$LOCO_TMP/diloco-allgather-topk/config.yaml" \
  || fail "the resolved config does not say exchange: allgather"
grep -q "exchange: ring" "$LOCO_TMP/diloco-int8/config.yaml" \
  || fail "sync.exchange auto on the CPU did not resolve to ring"
pass "ddp $ddp B, diloco $diloco B, diloco int8 $int8 B, diloco top-k 10% (allgather) $topk B per worker"

echo "--- 2. two workers meeting with --join (no MPI; the run key from transport.key_file)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
expect_rc 2 env -u LOCO_RUN_KEY -u LOCO_RUN_KEY_FILE "$LOCO" train "$LOCO_SRC/configs/diloco.yaml" \
  "${common[@]}" --set run.dir="$LOCO_TMP/nokey" --join "127.0.0.1:$port" --rank 0 --world 2
expect_err "no run key"
key=$LOCO_TMP/run.key
(umask 077; head -c 32 /dev/urandom | base64 > "$key")
for r in 0 1; do
  timeout 90 "$LOCO" train "$LOCO_SRC/configs/diloco.yaml" "${common[@]}" --set sync.h=10 \
    --set run.dir="$LOCO_TMP/join" --set transport.key_file="$key" --join "127.0.0.1:$port" \
    --rank $r --world 2 >"$LOCO_TMP/join.$r.out" 2>&1 &
done
wait
check_run "$LOCO_TMP/join" 2 || { cat "$LOCO_TMP/join.0.out" "$LOCO_TMP/join.1.out" >&2; fail "join"; }

echo "--- 3. inconsistent settings are refused before training"
expect_rc 2 "$LOCO" train "$LOCO_SRC/configs/streaming.yaml" "${common[@]}" --set sync.h=10 \
  --set sync.overlap=5 --set run.dir="$LOCO_TMP/bad1"
expect_err "sync.overlap = 5 must be less than sync.h / sync.fragments = 5"
expect_rc 2 "$LOCO" train "$LOCO_SRC/configs/streaming.yaml" "${common[@]}" --set sync.h=11 \
  --set run.dir="$LOCO_TMP/bad2"
expect_err "not divisible by sync.fragments"
expect_rc 2 "$LOCO" train "$LOCO_SRC/configs/diloco.yaml" "${common[@]}" --set codec.name=topk \
  --set run.dir="$LOCO_TMP/bad3"
expect_err "does not fit sync.strategy diloco"
expect_rc 2 "$LOCO" train "$LOCO_SRC/configs/ddp.yaml" "${common[@]}" --set sync.exchange=allgather \
  --set run.dir="$LOCO_TMP/bad3b"
expect_err "allgather with sync.strategy diloco"
expect_rc 2 "$LOCO" train "$LOCO_SRC/configs/diloco.yaml" "${common[@]}" --set sync.exchange=allgather \
  --set run.dir="$LOCO_TMP/bad3c"
expect_err "sync.exchange = allgather needs a codec"
expect_rc 2 "$LOCO" train "$LOCO_SRC/configs/demo.yaml" "${common[@]}" --set codec.name=fp4 \
  --set run.dir="$LOCO_TMP/bad4"
expect_err "allowed: dct_topk"
"${MPIRUN[@]}" "$LOCO" train "$LOCO_SRC/configs/single.yaml" "${common[@]}" \
  --set run.dir="$LOCO_TMP/bad5" >"$LOCO_TMP/bad5.out" 2>&1 || true
grep -q "sync.strategy is none but 4 workers were started" "$LOCO_TMP/bad5.out" \
  || { cat "$LOCO_TMP/bad5.out" >&2; fail "4 workers without a strategy were not refused"; }
[ ! -e "$LOCO_TMP/bad5/metrics.jsonl" ] || fail "training started despite the config error"
"${MPIRUN[@]}" "$LOCO" train "$LOCO_SRC/configs/ddp.yaml" "${common[@]}" --set data.partition=source \
  --set run.dir="$LOCO_TMP/bad6" >"$LOCO_TMP/bad6.out" 2>&1 || true
grep -q "more workers than sources\|sources" "$LOCO_TMP/bad6.out" \
  || { cat "$LOCO_TMP/bad6.out" >&2; fail "4 workers on 3 sources were not refused"; }
pass "inconsistent settings refused with clear messages"

echo "--- 4. resuming from a mid-run checkpoint is bit-identical (strategy state included)"
for spec in "diloco-delay --set sync.h=10" "ddp-topk"; do
  set -- $spec
  name=$1; shift
  a=$LOCO_TMP/resume-$name-a b=$LOCO_TMP/resume-$name-b
  "${MPIRUN[@]}" "$LOCO" train "$LOCO_SRC/configs/$name.yaml" "${common[@]}" "$@" \
    --set train.checkpoint_every=20 --set run.dir="$a" >"$a.out" 2>&1 || true
  cp -r "$a" "$b"
  echo step_0000020 > "$b/checkpoints/latest"
  "${MPIRUN[@]}" "$LOCO" train "$LOCO_SRC/configs/$name.yaml" "${common[@]}" "$@" \
    --set train.checkpoint_every=20 --set run.dir="$b" --resume >"$b.out" 2>&1 || true
  [ -f "$b/checkpoints/step_0000020/sync.rank2.safetensors" ] || fail "$name: no sync state saved"
  python3 - "$a" "$b" <<'PY' || { tail -5 "$b.out" >&2; fail "$name resume"; }
import json, sys
a, b = (json.load(open(d + "/run.json")) for d in sys.argv[1:3])
assert a["status"] == "ok" and b["status"] == "ok", (a.get("error"), b.get("error"))
da = [w["param_digest"] for w in a["workers"]]
db = [w["param_digest"] for w in b["workers"]]
assert da == db, (da, db)
print("ok: resumed", a["strategy"], "run ends with digest", da[0])
PY
done
