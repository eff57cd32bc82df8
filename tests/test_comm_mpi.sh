#!/usr/bin/env bash
# tests/test_comm_mpi.sh — collectives across 4 real processes under launch/loco-mpirun:
#   1. allreduce results are bit-identical on every rank (f32 sum, bf16 avg; odd sizes);
#   2. a rank SIGKILLed mid-allreduce: every survivor reports "peer lost" naming it, within the
#      deadline; the dead rank writes nothing;
#   3. a rank SIGSTOPped mid-allreduce: every survivor reports "peer lost" by the peer timeout
#      (silent for 2 s), within 5 s;
# and launch/loco-mpirun refuses a program it cannot start instead of hanging.
# mpirun exits 0 whatever happened (--enable-recovery), so every check reads the ranks' own
# result files (tests/tools/comm_driver writes DIR/rank.R.json).
set -euo pipefail
: "${LOCO_SRC:?}" "${LOCO_TOOLS:?}" "${LOCO_TMP:?}"
# In a sanitizer build, Open MPI's own components leak at MPI_Finalize (not loco's memory; the
# in-process tests check loco's leaks): do not let LeakSanitizer turn that into a failure.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
DRIVER="$LOCO_TOOLS/comm_driver"
RUN=(timeout --kill-after=5 120 "$LOCO_SRC/launch/loco-mpirun" -np 4)
rm -rf "$LOCO_TMP"
mkdir -p "$LOCO_TMP"
fail() { echo "FAIL: $*" >&2; exit 1; }

# 0. a program that cannot be started is refused up front (with --enable-recovery, mpirun itself
# would wait forever), in a plain and in an MPMD line
for line in "nonexistent_program_x" "$DRIVER : -np 1 nonexistent_program_x"; do
  set +e
  # shellcheck disable=SC2086
  timeout 20 "$LOCO_SRC/launch/loco-mpirun" -np 1 $line >"$LOCO_TMP/noprog.out" 2>&1
  rc=$?
  set -e
  [ "$rc" -eq 127 ] || fail "loco-mpirun with a missing program: rc $rc (want 127, 124 = hung)"
  grep -q "'nonexistent_program_x' is not a program that can be started" "$LOCO_TMP/noprog.out" ||
    fail "loco-mpirun did not name the missing program: $(cat "$LOCO_TMP/noprog.out")"
done
echo "ok: a missing program is refused at once"

# check.py DIR EXPECT...: assertions over the result files, in Python for readable JSON.
check() {
    python3 - "$@" <<'PY'
import json, os, sys
d, mode = sys.argv[1], sys.argv[2]
ranks = {}
for name in os.listdir(d):
    if name.startswith("rank.") and name.endswith(".json"):
        r = json.load(open(os.path.join(d, name)))
        ranks[r["rank"]] = r
def die(msg):
    print("FAIL:", msg, file=sys.stderr)
    for r in sorted(ranks):
        for o in ranks[r]["ops"]:
            print(f"  rank {r}: count {o['count']} {o['status']} {o['seconds']:.3f}s {o['error']}",
                  file=sys.stderr)
    sys.exit(1)
if mode == "identical":
    if sorted(ranks) != [0, 1, 2, 3]:
        die(f"result files from ranks {sorted(ranks)}, expected 0..3")
    ops = [r["ops"] for r in ranks.values()]
    for k, o in enumerate(ops[0]):
        for other in ops:
            if other[k]["status"] != "ok":
                die(f"op {k} failed: {other[k]['error']}")
            if other[k]["digest"] != o["digest"]:
                die(f"op {k} (count {o['count']}): digests differ across ranks")
        if o["iter"] > 0 and o["digest"] != ops[0][k - 1]["digest"]:
            die(f"op {k}: the same inputs gave a different result")
    print(f"ok: {len(ops[0])} allreduces bit-identical on 4 ranks")
else:  # lost|stalled VICTIM MIN_S MAX_S
    victim, lo, hi = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    survivors = sorted(r for r in range(4) if r != victim)
    if sorted(ranks) != survivors:
        die(f"result files from ranks {sorted(ranks)}, expected the survivors {survivors}")
    for r in survivors:
        o = ranks[r]["ops"][0]
        if o["status"] != "peer lost":
            die(f"rank {r}: status '{o['status']}', expected 'peer lost'")
        if o["lost_rank"] != victim or f"rank {victim}" not in o["error"]:
            die(f"rank {r}: blamed rank {o['lost_rank']} ('{o['error']}'), expected {victim}")
        if not lo <= o["seconds"] <= hi:
            die(f"rank {r}: failed after {o['seconds']:.2f} s, expected {lo}..{hi} s")
        # a stalled peer is caught by the heartbeat ("sent nothing for", "silent for") or, when
        # the kernel's TCP_USER_TIMEOUT (set to the same peer timeout) fires first on a stream
        # with data unsent, by that ("timed out with data unsent"): both blame the same rank
        verdicts = ("sent nothing for", "silent for", "timed out with data unsent")
        if mode == "stalled" and not any(v in o["error"] for v in verdicts):
            die(f"rank {r}: '{o['error']}' is not a peer-timeout verdict")
    print(f"ok: survivors {survivors} reported rank {victim} lost within {hi} s")
PY
}

echo "--- 1. bit-identical results across ranks"
"${RUN[@]}" "$DRIVER" --out "$LOCO_TMP/f32" --counts 0,1,7,1000003 --iters 2 || true
check "$LOCO_TMP/f32" identical
"${RUN[@]}" "$DRIVER" --out "$LOCO_TMP/bf16" --counts 5,300001 --dtype bf16 --op avg --iters 2 \
    --streams 2 --chunk 64K || true
check "$LOCO_TMP/bf16" identical

echo "--- 2. a rank SIGKILLed mid-allreduce"
"${RUN[@]}" "$DRIVER" --out "$LOCO_TMP/kill" --counts 16M --die-rank 2 --die-after-ms 40 \
    --peer-timeout 5 || true
[ ! -e "$LOCO_TMP/kill/rank.2.json" ] || fail "the killed rank wrote a result"
check "$LOCO_TMP/kill" lost 2 0 5

echo "--- 3. a rank SIGSTOPped mid-allreduce"
mkdir -p "$LOCO_TMP/stop"
"${RUN[@]}" "$DRIVER" --out "$LOCO_TMP/stop" --counts 16M --stall-rank 1 --stall-after-ms 40 \
    --heartbeat 0.2 --peer-timeout 2 > "$LOCO_TMP/stop.log" 2>&1 &
mpirun_pid=$!
for _ in $(seq 1 300); do
    n=$(find "$LOCO_TMP/stop" -name 'rank.*.json' | wc -l)
    [ "$n" -ge 3 ] && break
    sleep 0.1
done
if [ -s "$LOCO_TMP/stop/rank.1.pid" ]; then
    kill -9 "$(cat "$LOCO_TMP/stop/rank.1.pid")" 2>/dev/null || true
fi
wait "$mpirun_pid" || true
check "$LOCO_TMP/stop" stalled 1 1.0 5
echo "all mpirun collective checks passed"
