#!/usr/bin/env bash
# tests/test_comm_netns.sh — launch/wan-netns.sh: two namespaces behind a 50 Mbit/s tbf, loco
# workers joined across them (--join, MPI cannot start in a namespace); the allreduce must take
# as long as the shaped link says, and `down` must leave nothing behind. Skips (passing) when it
# cannot create namespaces (not root, no iproute2/tc).
set -euo pipefail
: "${LOCO_SRC:?}" "${LOCO_TOOLS:?}" "${LOCO_TMP:?}"
WAN="$LOCO_SRC/launch/wan-netns.sh"
DRIVER="$LOCO_TOOLS/comm_driver"
export LOCO_RUN_KEY="test-run-key-of-the-netns-test" # joining over the network needs a run key
prefix="lt$$"
prefix="${prefix:0:8}"
export LOCO_NETNS_PREFIX="$prefix"
if [ "$(id -u)" != 0 ] || ! command -v tc >/dev/null || ! ip netns add "${prefix}probe" 2>/dev/null; then
    echo "SKIP: cannot create network namespaces here"
    exit 0
fi
ip netns del "${prefix}probe"
rm -rf "$LOCO_TMP"
mkdir -p "$LOCO_TMP"
trap '"$WAN" down --prefix "$prefix"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$WAN" up 2 --rate 50mbit --prefix "$prefix"
# 2 ranks, 2M floats: each rank sends 8 MiB over its own 50 Mbit/s link -> ~1.34 s.
for r in 0 1; do
    timeout 60 "$WAN" exec "$r" "$DRIVER" --out "$LOCO_TMP" --join 10.77.0.1:29400 --rank "$r" \
        --world 2 --counts 2M --connect-timeout 20 2> "$LOCO_TMP/err.$r" &
done
wait || true
python3 - "$LOCO_TMP" <<'PY'
import json, sys
r = [json.load(open(f"{sys.argv[1]}/rank.{k}.json"))["ops"][0] for k in range(2)]
assert all(o["status"] == "ok" for o in r), [o["error"] for o in r]
assert r[0]["digest"] == r[1]["digest"], "digests differ"
ideal = 2 * 1024 * 1024 * 4 * 8 / 50e6
t = max(o["seconds"] for o in r)
print(f"allreduce of 8 MiB over a 50 Mbit/s tbf: {t:.2f} s (link-bound ideal {ideal:.2f} s)")
assert 0.9 * ideal <= t <= 2.0 * ideal, "the shaping did not hold"
PY
"$WAN" down --prefix "$prefix"
trap - EXIT
if ip netns list | grep -qE "^${prefix}"; then fail "namespaces left behind"; fi
echo "netns shaping checks passed"
