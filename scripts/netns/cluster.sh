#!/usr/bin/env bash
# Hosts as network namespaces on one machine, joined by a bridge, links shaped with tc tbf
# (real throttling; this kernel has no netem, so latency stays in-process emulation).
#   cluster.sh up N RATE     N namespaces lbhost0..N-1 (10.231.0.1..N), each link shaped to
#                            RATE (tc units: 100mbit, 1gbit) in both directions
#   cluster.sh down          removes everything this script made
# Needs root. Addresses stay inside these namespaces and the bridge lbbr0 (10.231.0.254).
set -euo pipefail
bridge=lbbr0
prefix=10.231.0

down() {
  for ns in $(ip netns list 2>/dev/null | awk '/^lbhost[0-9]+/ {print $1}'); do
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '/ lbh[0-9]+@/ {print $2}' | cut -d@ -f1); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$bridge" 2>/dev/null || true
}

up() {
  local n=$1 rate=$2
  down
  ip link add "$bridge" type bridge
  ip addr add "$prefix.254/24" dev "$bridge"
  ip link set "$bridge" up
  for i in $(seq 0 $((n - 1))); do
    local ns=lbhost$i
    ip netns add "$ns"
    ip link add "lbh$i" type veth peer name eth0 netns "$ns"
    ip link set "lbh$i" master "$bridge" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$prefix.$((i + 1))/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    # Host egress inside the namespace, host ingress on the bridge side.
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 100ms
    tc qdisc add dev "lbh$i" root tbf rate "$rate" burst 64kb latency 100ms
  done
}

case "${1:-}" in
  up) [ $# -eq 3 ] || { echo "usage: $0 up N RATE" >&2; exit 2; }; trap 'down' ERR; up "$2" "$3" ;;
  down) down ;;
  *) echo "usage: $0 up N RATE | down" >&2; exit 2 ;;
esac
