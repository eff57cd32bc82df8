#!/usr/bin/env bash
# tests/test_comm_join.sh — forming a group without MPI (--join HOST:PORT) with real processes,
# and the bad input a user can give it: an unreachable address, a port in use, mismatched run
# nonces. Each bad case must end quickly with one line naming the peer/address and the cause.
set -euo pipefail
: "${LOCO_TOOLS:?}" "${LOCO_TMP:?}"
DRIVER="$LOCO_TOOLS/comm_driver"
export LOCO_RUN_KEY="test-run-key-of-the-join-tests" # joining over the network needs a run key
rm -rf "$LOCO_TMP"
mkdir -p "$LOCO_TMP"
fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
last_line() { grep -v '^loco' "$1" | tail -n 1; }

echo "--- 1. three processes form a group by dialing rank 0"
port=$(free_port)
pids=()
for r in 0 1 2; do
    timeout 60 "$DRIVER" --out "$LOCO_TMP/ok" --join "127.0.0.1:$port" --rank "$r" --world 3 \
        --counts 7,100003 --connect-timeout 20 2> "$LOCO_TMP/ok.$r.err" &
    pids+=($!)
done
mkdir -p "$LOCO_TMP/ok"
for p in "${pids[@]}"; do wait "$p" || fail "a joined rank exited non-zero: $(cat "$LOCO_TMP"/ok.*.err)"; done
python3 - "$LOCO_TMP/ok" <<'PY'
import json, sys
r = [json.load(open(f"{sys.argv[1]}/rank.{k}.json")) for k in range(3)]
for k in range(len(r[0]["ops"])):
    assert all(x["ops"][k]["status"] == "ok" for x in r), [x["ops"][k]["error"] for x in r]
    assert len({x["ops"][k]["digest"] for x in r}) == 1, "digests differ"
print("ok: 3 joined ranks agree")
PY

echo "--- 2. unreachable join address"
dead=$(free_port)
start=$(date +%s.%N)
if timeout 20 "$DRIVER" --out "$LOCO_TMP" --join "127.0.0.1:$dead" --rank 1 --world 2 \
    --connect-timeout 2 2> "$LOCO_TMP/dead.err"; then fail "joining a dead address succeeded"; fi
took=$(python3 -c "import time; print(time.time() - $start)")
line=$(last_line "$LOCO_TMP/dead.err")
echo "$line"
[[ "$line" == *"127.0.0.1:$dead"* && "$line" == *"cannot reach"* ]] || fail "message: $line"
python3 -c "import sys; sys.exit(0 if $took < 6 else 1)" || fail "took $took s"

echo "--- 3. join port already in use"
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True)
time.sleep(15)' > "$LOCO_TMP/holder.port" &
holder=$!
for _ in $(seq 1 50); do [ -s "$LOCO_TMP/holder.port" ] && break; sleep 0.1; done
busy=$(cat "$LOCO_TMP/holder.port")
if timeout 20 "$DRIVER" --out "$LOCO_TMP" --join "127.0.0.1:$busy" --rank 0 --world 2 \
    --connect-timeout 2 2> "$LOCO_TMP/busy.err"; then fail "listening on a busy port succeeded"; fi
kill "$holder" 2>/dev/null || true
line=$(last_line "$LOCO_TMP/busy.err")
echo "$line"
[[ "$line" == *":$busy"* && "$line" == *"already in use"* ]] || fail "message: $line"

echo "--- 4. mismatched run nonces"
port=$(free_port)
LOCO_RUN_NONCE=1111 timeout 20 "$DRIVER" --out "$LOCO_TMP" --join "127.0.0.1:$port" --rank 0 \
    --world 2 --connect-timeout 3 2> "$LOCO_TMP/n0.err" &
r0=$!
if LOCO_RUN_NONCE=2222 timeout 20 "$DRIVER" --out "$LOCO_TMP" --join "127.0.0.1:$port" \
    --rank 1 --world 2 --connect-timeout 3 2> "$LOCO_TMP/n1.err"; then fail "nonce mismatch accepted"; fi
wait "$r0" && fail "rank 0 formed a group without rank 1"
line=$(last_line "$LOCO_TMP/n1.err")
echo "$line"
[[ "$line" == *"rank 0 at 127.0.0.1:$port"* && "$line" == *"nonce"* ]] || fail "message: $line"
line=$(last_line "$LOCO_TMP/n0.err")
echo "$line"
[[ "$line" == *"never joined"* ]] || fail "rank 0's message: $line"
echo "all join checks passed"
