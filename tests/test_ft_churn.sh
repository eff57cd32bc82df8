#!/usr/bin/env bash
# tests/test_ft_churn.sh — churn under launch/loco-mpirun -np 4 with a DiLoCo-like loop
# (tests/tools/ft_driver): a worker SIGKILLed mid-allreduce, two at once, the coordinator's host,
# a worker SIGSTOPped past the deadline, a graceful leave (SIGTERM), a worker joining mid-run, a
# killed worker re-joining, a joiner with the wrong run key, and a standalone `loco coordinator`
# SIGKILLed (the workers fail over to one of them). Every check reads loco's own
# result files through tests/ft_check.py (never mpirun's exit code): the run finished, the
# survivors' state digests are equal, the membership counts are right, and no operation counted
# as committed failed to run everywhere.
set -euo pipefail
: "${LOCO:?}" "${LOCO_SRC:?}" "${LOCO_TOOLS:?}" "${LOCO_TMP:?}"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
export LOCO_RUN_KEY="churn-test-run-key-0123456789" # joiners need it; mpirun forwards LOCO_*
export LOCO_LOG=warn
DRIVER="$LOCO_TOOLS/ft_driver"
CHECK=(python3 "$LOCO_SRC/tests/ft_check.py")
RUN=(timeout --kill-after=5 120 "$LOCO_SRC/launch/loco-mpirun" -np 4 "$DRIVER")
COMMON=(--steps 12 --count 256K --sleep-ms 30 --heartbeat 0.1 --peer-timeout 1 --op-deadline 2)
rm -rf "$LOCO_TMP"
mkdir -p "$LOCO_TMP"
fail() { echo "FAIL: $*" >&2; exit 1; }

# wait_for FILE [SECONDS]: until FILE exists and is not empty.
wait_for() {
    for _ in $(seq 1 $((${2:-30} * 10))); do [ -s "$1" ] && return 0; sleep 0.1; done
    fail "$1 never appeared"
}
# wait_steps DIR ID N: until member ID logged N steps.
wait_steps() {
    for _ in $(seq 1 300); do
        [ "$(cat "$1/member.$2.log" 2>/dev/null | grep -c '"event": "step"')" -ge "$3" ] && return 0
        sleep 0.1
    done
    fail "member $2 did not reach step $3"
}

echo "--- 1. a worker SIGKILLed mid-allreduce"
"${RUN[@]}" --out "$LOCO_TMP/kill1" "${COMMON[@]}" --count 2M --die-id 2 --die-step 4 \
    --die-after-ms 10 >/dev/null 2>&1 || true
"${CHECK[@]}" "$LOCO_TMP/kill1" --finished 0,1,3 --died 1 --resume-max 1.0

echo "--- 2. two workers SIGKILLed at once"
"${RUN[@]}" --out "$LOCO_TMP/kill2" "${COMMON[@]}" --die-id 1,3 --die-step 4 >/dev/null 2>&1 || true
"${CHECK[@]}" "$LOCO_TMP/kill2" --finished 0,2 --died 2 --resume-max 2.0

echo "--- 3. the coordinator's host SIGKILLed"
"${RUN[@]}" --out "$LOCO_TMP/kill0" "${COMMON[@]}" --die-id 0 --die-step 4 >/dev/null 2>&1 || true
"${CHECK[@]}" "$LOCO_TMP/kill0" --finished 1,2,3 --died 1 --resume-max 3.0
for m in 1 2 3; do
    grep -q '"failovers": 1' "$LOCO_TMP/kill0/member.$m.json" || fail "member $m did not fail over"
done

echo "--- 4. a worker SIGSTOPped past the deadline"
d="$LOCO_TMP/stop"
"${RUN[@]}" --out "$d" "${COMMON[@]}" >/dev/null 2>&1 &
mpirun_pid=$!
wait_steps "$d" 2 3
victim=$(cat "$d/member.2.pid")
kill -STOP "$victim"
for m in 0 1 3; do wait_for "$d/member.$m.json" 60; done
kill -KILL "$victim" 2>/dev/null || true
wait "$mpirun_pid" || true
"${CHECK[@]}" "$d" --finished 0,1,3 --evicted 1

echo "--- 5. a graceful leave (SIGTERM)"
d="$LOCO_TMP/leave"
"${RUN[@]}" --out "$d" "${COMMON[@]}" >/dev/null 2>&1 &
mpirun_pid=$!
wait_steps "$d" 3 3
kill -TERM "$(cat "$d/member.3.pid")"
wait "$mpirun_pid" || true
"${CHECK[@]}" "$d" --finished 0,1,2 --left 3 --left-count 1
if grep -h '"event": "op"' "$d"/member.*.log | grep -qv '"status": "ok"'; then
    fail "an operation was aborted by the leave"
fi

echo "--- 6. a worker joining mid-run"
d="$LOCO_TMP/join"
"${RUN[@]}" --out "$d" "${COMMON[@]}" --steps 20 >/dev/null 2>&1 &
mpirun_pid=$!
wait_steps "$d" 1 3
timeout 60 "$DRIVER" --out "$d" "${COMMON[@]}" --steps 20 --join "$(cat "$d/member.1.addr")" \
    > "$d/joiner.out" 2>&1 || fail "the joiner failed: $(tail -n 3 "$d/joiner.out")"
wait "$mpirun_pid" || true
"${CHECK[@]}" "$d" --finished 0,1,2,3,4 --joined 1

echo "--- 7. a killed worker re-joining"
d="$LOCO_TMP/rejoin"
"${RUN[@]}" --out "$d" "${COMMON[@]}" --steps 20 --die-id 2 --die-step 3 >/dev/null 2>&1 &
mpirun_pid=$!
wait_steps "$d" 1 5
timeout 60 "$DRIVER" --out "$d" "${COMMON[@]}" --steps 20 --join "$(cat "$d/member.0.addr")" \
    > "$d/joiner.out" 2>&1 || fail "the restarted worker failed: $(tail -n 3 "$d/joiner.out")"
wait "$mpirun_pid" || true
"${CHECK[@]}" "$d" --finished 0,1,3,4 --died 1 --joined 1

echo "--- 8. a joiner with the wrong run key"
d="$LOCO_TMP/badkey"
"${RUN[@]}" --out "$d" "${COMMON[@]}" --steps 16 > "$d.members.log" 2>&1 &
mpirun_pid=$!
wait_steps "$d" 1 3
if LOCO_RUN_KEY="not-the-run-key-at-all-000" timeout 30 "$DRIVER" --out "$d" "${COMMON[@]}" \
    --join "$(cat "$d/member.1.addr")" > "$d/intruder.out" 2>&1; then
    fail "a joiner without the run key was admitted"
fi
grep -q "run key" "$d/intruder.out" || fail "the intruder's error: $(tail -n 2 "$d/intruder.out")"
wait "$mpirun_pid" || true
grep -q "refused a connection" "$d.members.log" || fail "the refusal was not logged"
"${CHECK[@]}" "$d" --finished 0,1,2,3
echo "--- 9. a standalone coordinator (loco coordinator) SIGKILLed"
d="$LOCO_TMP/standalone"
mkdir -p "$d"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$LOCO" coordinator --listen "127.0.0.1:$port" --timeout 60s --set ft.coordinator=external \
    --set ft.coordinator_addr="127.0.0.1:$port" > "$d/coordinator.out" 2>&1 &
coord_pid=$!
wait_for "$d/coordinator.out" 10
"${RUN[@]}" --out "$d" "${COMMON[@]}" --steps 40 --coordinator "127.0.0.1:$port" \
    >/dev/null 2>&1 &
mpirun_pid=$!
wait_steps "$d" 1 4
kill -KILL "$coord_pid"
wait "$mpirun_pid" || true
"${CHECK[@]}" "$d" --finished 0,1,2,3
for m in 0 1 2 3; do
    grep -q '"failovers": 1' "$d/member.$m.json" || fail "member $m did not fail over"
done
echo "all churn checks passed"
