#!/usr/bin/env bash
# tests/test_train_churn.sh — real `loco train` workers (launch/loco-mpirun -np 4, a tiny model)
# losing, stalling, leaving and gaining members, every case judged by loco's own results:
# run.json (status, membership {started, died, evicted, joined, left}, every survivor's steps,
# parameter and shared-state digests, control-plane totals), member.ID.json (each worker's own
# outcome and exit code) and metrics.jsonl (every logged sync carries one digest). mpirun's exit
# code means nothing here (--enable-recovery returns 0 whatever happened).
#
#   1. kill -9 of one worker in the middle of a collective, for ddp, diloco, diloco with delay,
#      streaming and demo (train.kill_at_step: the worker SIGKILLs itself once it has sent
#      train.kill_after_bytes of that step's traffic; its link is rate-limited so the collective
#      is still under way): the survivors repeat it and finish with equal digests; at least one
#      operation was ABORTED and none counted as committed by one survivor and not another
#   2. two workers killed at once
#   3. the coordinator's process (rank 0) killed: a survivor takes over
#   4. one long ddp run with a run key: SIGSTOP for longer than ft.op_deadline (evicted; its
#      process exits 1 with outcome "evicted"), SIGTERM (leaves at a step boundary, exit 0),
#      a joiner with the wrong key (refused, exit != 0, not counted), kill -9 and the same
#      worker re-joining, a new worker joining, then the coordinator's process killed (the two
#      joiners take over at once): 2 survivors with equal digests
#   5. the coordinator's host SIGSTOPped past transport.peer_timeout: the others take over and
#      finish; woken, it gives up after ft.sync_timeout (exit 1, outcome "failed") without
#      writing run.json
source "$(dirname "$0")/lib.sh"
export LOCO_MPIRUN_TIMEOUT=150
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
MPIRUN=("$LOCO_SRC/launch/loco-mpirun" -np 4)
data=$LOCO_TMP/data
tiny_data "$data"
common=("${TINY[@]}" --set data.path="$data" --set train.threads=1 --set train.eval_every=0)
short=(--set train.steps=30 --set optim.total_steps=30)

# check DIR 'EXPECT': assertions over run.json, member.*.json and metrics.jsonl. EXPECT is a
# Python dict: membership (the five counts), survivors (member ids), killed_mid_op, failover,
# outcomes ({member id: outcome} of workers that did not finish).
check() {
  python3 - "$1" "$2" <<'PY'
import glob, json, sys, collections
d, want = sys.argv[1], eval(sys.argv[2])
def die(msg):
    print(f"FAIL ({d}): {msg}", file=sys.stderr); sys.exit(1)
run = json.load(open(f"{d}/run.json"))
if run["status"] != "ok": die(f"status {run['status']}: {run.get('error')}")
if run["membership"] != want["membership"]: die(f"membership {run['membership']}, want {want['membership']}")
ws = run["workers"]
ids = sorted(w["member_id"] for w in ws)
if ids != want["survivors"]: die(f"survivors {ids}, want {want['survivors']}")
if len({w["steps"] for w in ws}) != 1: die(f"survivors at different steps: {[w['steps'] for w in ws]}")
if len({w["param_digest"] for w in ws}) != 1: die(f"parameter digests differ: {[w['param_digest'] for w in ws]}")
if len({w["state_digest"] for w in ws}) != 1: die(f"shared-state digests differ: {[w['state_digest'] for w in ws]}")
# every member from the start saw the same verdicts: the same operations committed
orig = [w for w in ws if w["member_id"] < 4]
if len({w["ops_committed"] for w in orig}) > 1: die(f"committed counts differ: {[(w['member_id'], w['ops_committed']) for w in orig]}")
recs = [json.loads(line) for line in open(f"{d}/metrics.jsonl")]
# a kill mid-collective: every survivor recovered (a "recover" record) and repeated the call
# (inside a step, or in the sync point that quiesces an asynchronous average)
# (or, when the kill landed after the collective's last byte, the sync point that follows
# removed the dead worker: every survivor saw it one way or the other)
if want.get("killed_mid_op"):
    recovered = {r["member"] for r in recs if r["event"] == "recover"}
    removed = {r["member"] for r in recs if r["event"] == "membership" and r["n_removed"] > 0}
    if not set(ids) <= recovered | removed:
        die(f"survivors that never saw the loss: {[(w['member_id'], w['recoveries']) for w in ws]}, records {recovered} {removed}")
if want.get("failover") and min(w["failovers"] for w in ws) < 1: die("no coordinator takeover counted")
for w in ws:
    m = json.load(open(f"{d}/member.{w['member_id']}.json"))
    if m["outcome"] != "finished" or m["exit_code"] != 0 or m["param_digest"] != w["param_digest"]:
        die(f"member {w['member_id']}: {m}")
for mid, outcome in want.get("outcomes", {}).items(): # an outcome, or a tuple of allowed ones
    m = json.load(open(f"{d}/member.{mid}.json"))
    allowed = outcome if isinstance(outcome, tuple) else (outcome,)
    code = 0 if allowed == ("left",) else 1
    if m["outcome"] not in allowed or m["exit_code"] != code: die(f"member {mid}: {m['outcome']} exit {m['exit_code']}, want {outcome}")
syncs = collections.defaultdict(set)
for r in recs:
    if r["event"] == "sync":
        syncs[(r["step"], r["kind"], r.get("fragment"))].add(r["state_digest"])
bad = {k: v for k, v in syncs.items() if len(v) != 1}
if bad: die(f"sync events with different digests: {bad}")
print(f"ok: {d.split('/')[-1]}: {run['strategy']}, survivors {ids}, membership {run['membership']}, "
      f"recoveries {[w['recoveries'] for w in ws]}, {len(syncs)} syncs agree")
PY
}

# kill_case NAME CONFIG MEMBERS EXPECT [--set ...]: members MEMBERS kill themselves mid-collective
kill_case() {
  local name=$1 cfg=$2 members=$3 expect=$4; shift 4
  local links="" m
  for m in ${members//,/ }; do links+="${links:+;}$m->-1 rate=200mbit"; done
  "${MPIRUN[@]}" "$LOCO" train "$LOCO_SRC/configs/$cfg.yaml" "${common[@]}" "${short[@]}" \
    --set run.dir="$LOCO_TMP/$name" --set train.kill_at_step=12 --set train.fault_members="$members" \
    --set "transport.links=$links" "$@" >"$LOCO_TMP/$name.out" 2>&1 || true
  [ -f "$LOCO_TMP/$name/run.json" ] || { tail -30 "$LOCO_TMP/$name.out" >&2; fail "$name wrote no run.json"; }
  check "$LOCO_TMP/$name" "$expect" || { tail -30 "$LOCO_TMP/$name.out" >&2; fail "$name"; }
  for m in ${members//,/ }; do
    [ -f "$LOCO_TMP/$name/member.$m.fault.json" ] || fail "$name: member $m never fired its fault"
  done
  grep -q "loco train: done, 30 steps x" "$LOCO_TMP/$name.out" || fail "$name: no closing line"
}

one_dead='{"membership": {"started": 4, "died": 1, "evicted": 0, "joined": 0, "left": 0}, "survivors": [0, 2, 3], "killed_mid_op": True}'
echo "--- 1. kill -9 of one worker mid-collective, every strategy"
kill_case kill-ddp ddp 1 "$one_dead"
kill_case kill-diloco diloco 1 "$one_dead" --set sync.h=5
kill_case kill-delay diloco-delay 1 "$one_dead" --set sync.h=5
kill_case kill-allgather diloco 1 "$one_dead" --set sync.h=5 --set sync.exchange=allgather \
  --set codec.name=maxmin --set codec.bits=8
kill_case kill-streaming streaming 1 "$one_dead" --set sync.h=10 --set sync.overlap=2
kill_case kill-demo demo 1 "$one_dead"

echo "--- 2. two workers killed at once"
kill_case kill-two ddp 1,2 \
  '{"membership": {"started": 4, "died": 2, "evicted": 0, "joined": 0, "left": 0}, "survivors": [0, 3], "killed_mid_op": True}'

echo "--- 3. the coordinator's process (rank 0) killed"
kill_case kill-coordinator diloco 0 \
  '{"membership": {"started": 4, "died": 1, "evicted": 0, "joined": 0, "left": 0}, "survivors": [1, 2, 3], "killed_mid_op": True, "failover": True}' \
  --set sync.h=5

echo "--- 4. stop, leave, wrong key, kill and re-join, join: one ddp run"
dir=$LOCO_TMP/churn
key=$LOCO_TMP/run.key
(umask 077; head -c 32 /dev/urandom | base64 > "$key")
# the coordinator listeners take port + local rank: four free ports in a row
port=$(python3 - <<'PY'
import random, socket
for _ in range(500):
    base, ok = random.randrange(20000, 60000), True
    for p in range(base, base + 4):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        s.close()
    if ok:
        print(base); break
PY
)
[ -n "$port" ] || fail "no four free ports in a row"
# 2 ms per message on every link keeps each step >= ~15 ms, so the run outlasts the events
long=(--set train.steps=1200 --set optim.total_steps=1200 --set transport.key_file="$key"
      --set transport.link.delay=2ms --set ft.op_deadline=3s --set run.dir="$dir")
"${MPIRUN[@]}" "$LOCO" train "$LOCO_SRC/configs/ddp.yaml" "${common[@]}" "${long[@]}" \
  --set ft.coordinator_port="$port" >"$LOCO_TMP/churn.out" 2>&1 &
mpirun_pid=$!

# pid_of RANK: this run's worker of that MPI rank (the command line names its run.dir)
pid_of() {
  local p
  for p in $(pgrep -x loco); do
    # (no pipes: with pipefail, grep -q leaving early could fail the test by SIGPIPE)
    if grep -qzxF "run.dir=$dir" "/proc/$p/cmdline" 2>/dev/null &&
       grep -qzx "OMPI_COMM_WORLD_RANK=$1" "/proc/$p/environ" 2>/dev/null; then
      echo "$p"
    fi
  done
}
# wait_for FILE: until it exists (60 s at most)
wait_for() {
  local i
  for i in $(seq 600); do [ -e "$1" ] && return 0; sleep 0.1; done
  tail -30 "$LOCO_TMP/churn.out" >&2; fail "$1 never appeared"
}
# wait_step STEP: until some worker logged that step
wait_step() {
  local i
  for i in $(seq 600); do
    grep -q "\"event\":\"step\",\"rank\":[0-9]*,\"time\":[0-9.e-]*,\"step\":$1," "$dir/metrics.jsonl" 2>/dev/null && return 0
    sleep 0.1
  done
  tail -30 "$LOCO_TMP/churn.out" >&2; fail "step $1 never came"
}
join_worker() { # NAME [--set ...]: a worker joining the run through rank 0's coordinator port
  local name=$1; shift
  timeout 120 "$LOCO" train "$LOCO_SRC/configs/ddp.yaml" "${common[@]}" "${long[@]}" \
    --set ft.join_timeout=20s "$@" --join "127.0.0.1:$port" >"$LOCO_TMP/$name.out" 2>&1
}

wait_step 20
p3=$(pid_of 3); [ -n "$p3" ] || fail "no rank 3 process"
kill -STOP "$p3"; sleep 6; kill -CONT "$p3"          # longer than ft.op_deadline: evicted
wait_for "$dir/member.3.json"
p2=$(pid_of 2); [ -n "$p2" ] || fail "no rank 2 process"
kill -TERM "$p2"                                     # leaves at the next sync point
wait_for "$dir/member.2.json"
rc=0
(umask 077; head -c 32 /dev/urandom | base64 > "$LOCO_TMP/wrong.key")
join_worker badkey --set transport.key_file="$LOCO_TMP/wrong.key" || rc=$?
[ "$rc" -ne 0 ] || fail "a joiner with the wrong key was admitted"
grep -q "could not prove it knows the run key" "$LOCO_TMP/badkey.out" \
  || { cat "$LOCO_TMP/badkey.out" >&2; fail "the wrong-key joiner's refusal does not say why"; }
p1=$(pid_of 1); [ -n "$p1" ] || fail "no rank 1 process"
kill -9 "$p1"                                        # dies; the same worker then re-joins
join_worker rejoin & rejoin_pid=$!
join_worker newcomer & newcomer_pid=$!
for i in $(seq 600); do                              # both admitted
  [ "$(grep -c '"joined_here":true' "$dir/metrics.jsonl")" -ge 2 ] && break
  sleep 0.1
done
[ "$(grep -c '"joined_here":true' "$dir/metrics.jsonl")" -ge 2 ] || fail "the joiners were not admitted"
p0=$(pid_of 0); [ -n "$p0" ] || fail "no rank 0 process"
kill -9 "$p0"                                        # the coordinator: a joiner takes over
wait "$rejoin_pid" || { cat "$LOCO_TMP/rejoin.out" >&2; fail "the re-joining worker failed"; }
wait "$newcomer_pid" || { cat "$LOCO_TMP/newcomer.out" >&2; fail "the joining worker failed"; }
wait "$mpirun_pid" || true
check "$dir" '{"membership": {"started": 4, "died": 2, "evicted": 1, "joined": 2, "left": 1},
               "survivors": [4, 5], "outcomes": {3: "evicted", 2: "left"}, "failover": True}' \
  || { tail -30 "$LOCO_TMP/churn.out" >&2; fail "churn"; }
grep -q "refused a connection" "$LOCO_TMP/churn.out" || fail "rank 0 did not log the refused joiner"
python3 - "$dir" <<'PY' || fail "joiners"
import json, sys
d = sys.argv[1]
joins = [json.loads(l) for l in open(f"{d}/metrics.jsonl") if '"joined_here":true' in l]
if len(joins) != 2 or min(j["state_bytes_received"] for j in joins) <= 0:
    sys.exit(f"joiners' state transfers: {joins}")
# the joiners took over from the killed coordinator without waiting out the takeover deadline
# (2 transport.peer_timeout + 1 s): they know which member hosted it
slow = [r["seconds"] for r in map(json.loads, open(f"{d}/metrics.jsonl"))
        if r["event"] == "recover" and r["member"] >= 4 and r["seconds"] > 5]
if slow: sys.exit(f"recoveries after the coordinator's death took {slow} s")
print(f"ok: 2 joiners received {[j['state_bytes_received'] for j in joins]} bytes of state")
PY
echo "--- 5. the coordinator's host stopped past transport.peer_timeout: the others go on"
dir=$LOCO_TMP/stopped-coordinator
long=(--set train.steps=600 --set optim.total_steps=600 --set transport.link.delay=2ms
      --set transport.peer_timeout=2s --set ft.op_deadline=3s --set ft.sync_timeout=8s
      --set run.dir="$dir")
"${MPIRUN[@]}" "$LOCO" train "$LOCO_SRC/configs/ddp.yaml" "${common[@]}" "${long[@]}" \
  >"$LOCO_TMP/stopped-coordinator.out" 2>&1 &
mpirun_pid=$!
wait_step 20
p0=$(pid_of 0); [ -n "$p0" ] || fail "no rank 0 process"
kill -STOP "$p0"; sleep 4; kill -CONT "$p0"
# woken, it finds no group to recover with and gives up after ft.sync_timeout ("failed"), or,
# when it reaches the new coordinator first, is told it was removed ("evicted"): either way no
# hang, exit 1, and it does not write the run's summary (the others' new rank 0 does)
wait_for "$dir/member.0.json"
wait "$mpirun_pid" || true
check "$dir" '{"membership": {"started": 4, "died": 1, "evicted": 0, "joined": 0, "left": 0},
               "survivors": [1, 2, 3], "outcomes": {0: ("failed", "evicted")}, "failover": True}' \
  || { tail -30 "$LOCO_TMP/stopped-coordinator.out" >&2; fail "stopped coordinator"; }
pass "train churn"
