#!/usr/bin/env bash
# launch/wan-netns.sh — kernel-level WAN shaping for loco workers (optional; needs root).
#
#   launch/wan-netns.sh up N [--rate 100mbit] [--loss 0.5%] [--prefix loco]
#   launch/wan-netns.sh exec I COMMAND...      run COMMAND inside node I's namespace
#   launch/wan-netns.sh addr I                 print node I's address (10.77.0.(I+1))
#   launch/wan-netns.sh down [--prefix loco]   remove every namespace of the prefix
# The prefix can also come from LOCO_NETNS_PREFIX (exec and addr use it).
#
# Builds N network namespaces PREFIX0..PREFIX(N-1), each with a veth into a bridge that lives in
# its own namespace PREFIXhub (the host's network is never touched). Every node's egress is rate
# limited with tbf and, with --loss, randomly dropped by an nft rule (real TCP retransmissions).
# This kernel has no netem, so one-way delay and jitter cannot be shaped here: use loco's
# built-in link emulator for those (transport.link: {delay: ..., jitter: ...}).
#
# MPI cannot start inside a namespace (its PMIx server lives in the root one), so start workers
# with the join bootstrap, e.g. for N=2:
#   launch/wan-netns.sh exec 0 build/loco train cfg.yaml --join 10.77.0.1:29400 --rank 0 --world 2 &
#   launch/wan-netns.sh exec 1 build/loco train cfg.yaml --join 10.77.0.1:29400 --rank 1 --world 2
set -euo pipefail

prefix="${LOCO_NETNS_PREFIX:-loco}"
die() { echo "wan-netns: $*" >&2; exit 2; }
need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, tc, nft)"
    command -v ip >/dev/null || die "needs iproute2 (apt-get install iproute2)"
}

cmd="${1:-}"
[ -n "$cmd" ] || die "usage: wan-netns.sh up N [--rate R] [--loss P] [--prefix P] | exec I CMD... | addr I | down"
shift

case "$cmd" in
up)
    need_root
    n="${1:-}"
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up N: N must be 1..200"
    shift
    rate="" loss=""
    while [ "$#" -gt 0 ]; do
        case "$1" in
        --rate) rate="$2"; shift 2 ;;
        --loss) loss="$2"; shift 2 ;;
        --prefix) prefix="$2"; shift 2 ;;
        *) die "unknown option $1" ;;
        esac
    done
    [[ "$prefix" =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "--prefix must be 1-8 lowercase letters/digits"
    if [ -n "$loss" ]; then
        command -v nft >/dev/null || die "--loss needs nft (apt-get install nftables)"
        pct="${loss%\%}"
        [[ "$pct" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--loss takes a percentage like 0.5%"
        per_mille=$(awk -v p="$pct" 'BEGIN { printf "%d", p * 10 + 0.5 }')
    fi
    hub="${prefix}hub"
    ip netns add "$hub"
    ip -n "$hub" link set lo up
    ip -n "$hub" link add br0 type bridge
    ip -n "$hub" link set br0 up
    for ((i = 0; i < n; i++)); do
        ns="${prefix}${i}"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip link add "${prefix}v${i}" type veth peer name "${prefix}p${i}"
        ip link set "${prefix}v${i}" netns "$ns"
        ip link set "${prefix}p${i}" netns "$hub"
        ip -n "$ns" link set "${prefix}v${i}" name eth0
        ip -n "$ns" addr add "10.77.0.$((i + 1))/16" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$hub" link set "${prefix}p${i}" master br0
        ip -n "$hub" link set "${prefix}p${i}" up
        if [ -n "$rate" ]; then
            # burst must cover the veth's 64 KB TSO segments, or tbf starves the link
            ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 256kb latency 400ms
        fi
        if [ -n "$loss" ] && [ "$per_mille" -gt 0 ]; then
            ip netns exec "$ns" nft add table inet wanloss
            ip netns exec "$ns" nft add chain inet wanloss out '{ type filter hook output priority 0; }'
            ip netns exec "$ns" nft add rule inet wanloss out oifname eth0 numgen random mod 1000 \< "$per_mille" drop
        fi
    done
    echo "wan-netns: $n nodes ${prefix}0..${prefix}$((n - 1)) at 10.77.0.1..10.77.0.$n" \
         "${rate:+rate $rate }${loss:+loss $loss}"
    ;;
exec)
    need_root
    i="${1:-}"
    [[ "$i" =~ ^[0-9]+$ ]] || die "exec I COMMAND..."
    shift
    exec ip netns exec "${prefix}${i}" "$@"
    ;;
addr)
    i="${1:-}"
    [[ "$i" =~ ^[0-9]+$ ]] || die "addr I"
    echo "10.77.0.$((i + 1))"
    ;;
down)
    need_root
    if [ "${1:-}" = "--prefix" ]; then prefix="$2"; fi
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}([0-9]+|hub)$" || true); do
        ip netns del "$ns"
    done
    ;;
*)
    die "unknown command '$cmd' (up, exec, addr, down)"
    ;;
esac
