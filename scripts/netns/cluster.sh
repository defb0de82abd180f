#!/usr/bin/env bash
# Hosts as network namespaces on one machine, joined by a bridge, links shaped with tc tbf
# (real throttling; this kernel has no netem, so latency stays in-process emulation).
#   cluster.sh up N RATE     N (1..253) namespaces lbhost0..N-1 (10.231.0.1..N), each link
#                            shaped to RATE in both directions: a positive number with a tc
#                            unit (bit kbit mbit gbit tbit, bps kbps mbps gbps tbps, or the IEC
#                            kibit mibit gibit tibit kibps mibps gibps tibps): 100mbit, 1gbit
#   cluster.sh down          removes what the last `up` made, and nothing else
# Needs root. Addresses stay inside these namespaces and the bridge lbbr0 (10.231.0.254).
# `up` records every namespace and link it makes (name and identity) in
# /run/lowband-netns/state as it goes; `down` deletes only those, and only while they are still
# the same objects. `up` first takes down the cluster an earlier `up` left, refuses names it
# needs that something else holds, and removes what it had made when any step fails or it is
# interrupted. Bad arguments: one line `cluster.sh: ...` and exit 2, before anything is touched.
# shellcheck disable=SC2317  # functions called from traps, a subshell and "${kind}_id"
set -euo pipefail
prog=cluster.sh
bridge=lbbr0
prefix=10.231.0
max_hosts=253  # 10.231.0.1-253 are hosts, .254 is the bridge
state_dir=/run/lowband-netns  # /run: cleared at boot, like the namespaces themselves
state=$state_dir/state
lock=$state_dir/lock

usage() { echo "usage: $prog up N RATE | down" >&2; exit 2; }
bad() { echo "$prog: $*" >&2; exit 2; }   # bad input: nothing was touched
fail() { echo "$prog: $*" >&2; exit 1; }

# Identities, so that `down` never deletes a namespace or link of the same name that someone
# made after ours was gone: a link's ifindex (never reused soon), and for a namespace the alias
# `up` gives its lo, with a token new to every `up` (nsfs inode numbers are reused at once).
netns_exists() { ip netns list 2>/dev/null | awk -v n="$1" '$1 == n {f = 1} END {exit !f}'; }
netns_id() {
  local line
  netns_exists "$1" || return 1
  line=$(ip -n "$1" -o link show dev lo 2>/dev/null) || line=""
  if [[ $line =~ alias\ (lowband-cluster-[0-9a-f-]+) ]]; then
    echo "${BASH_REMATCH[1]}"
  else
    echo none
  fi
}
link_id() {
  local line
  line=$(ip -o link show dev "$1" 2>/dev/null) || return 1
  echo "${line%%:*}"
}
record() {  # record KIND NAME: appends "KIND NAME ID" to the state file right after creation
  local id
  id=$("${1}_id" "$2") || fail "made $1 $2 but cannot find it"
  echo "$1 $2 $id" >>"$state"
  [ "$stop" -eq 0 ] || exit "$stop"  # interrupted: everything made so far is recorded
}

# Deletes what the state file lists: the veths first (a veth's other end goes with it; a
# namespace is freed asynchronously, so its veth would vanish at some point after
# `ip netns del`), then the namespaces, the bridge last. Lines it could not remove stay in the
# file for the next try.
teardown() {
  [ -f "$state" ] || return 0
  local line kind name id class cur pass keep=""
  for pass in veth netns bridge; do
    while read -r line; do
      [ -n "$line" ] || continue
      read -r kind name id _ <<<"$line"
      class=bad
      if [[ $kind = link && $name =~ ^lbh(0|[1-9][0-9]*)$ && $id =~ ^[0-9]+$ ]]; then
        class=veth
      elif [[ $kind = netns && $name =~ ^lbhost(0|[1-9][0-9]*)$ &&
        $id =~ ^lowband-cluster-[0-9a-f-]+$ ]]; then
        class=netns
      elif [[ $kind = link && $name = "$bridge" && $id =~ ^[0-9]+$ ]]; then
        class=bridge
      fi
      if [ "$class" = bad ]; then
        [ "$pass" = veth ] && echo "$prog: $state: ignoring the line '$line'" >&2
        continue
      fi
      [ "$class" = "$pass" ] || continue
      cur=$("${kind}_id" "$name") || continue  # already gone
      if [ "$cur" != "$id" ]; then
        echo "$prog: $name is no longer the $kind cluster.sh made; left alone" >&2
        continue
      fi
      if [ "$kind" = netns ]; then
        ip netns del "$name" || keep+="$kind $name $id"$'\n'
      else
        ip link del "$name" || keep+="$kind $name $id"$'\n'
      fi
    done <"$state"
  done
  if [ -n "$keep" ]; then
    printf '%s' "$keep" >"$state"
    echo "$prog: could not remove everything; what is left is listed in $state" >&2
    return 1
  fi
  rm -f "$state"
}

on_up_exit() {
  local rc=$?
  [ "$rc" -eq 0 ] && return
  teardown || true
  if [ "${stop:-0}" -ne 0 ]; then
    echo "$prog: up interrupted; removed what it had made" >&2
  else
    echo "$prog: up failed; removed what it had made" >&2
  fi
}

up() {
  local n=$1 rate=$2 i ns token
  # Refuse names that something other than our (already removed) earlier cluster holds.
  if link_id "$bridge" >/dev/null; then
    fail "$bridge exists and cluster.sh did not make it (ip link del $bridge if it is stale)"
  fi
  for ((i = 0; i < n; i++)); do
    if netns_exists "lbhost$i"; then
      fail "namespace lbhost$i exists and cluster.sh did not make it (ip netns del lbhost$i if it is stale)"
    fi
    if link_id "lbh$i" >/dev/null; then
      fail "link lbh$i exists and cluster.sh did not make it (ip link del lbh$i if it is stale)"
    fi
  done

  token=$(cat /proc/sys/kernel/random/uuid)
  : >"$state"
  trap on_up_exit EXIT
  # SIGTERM only sets $stop, acted on once what was just made is recorded: exiting between
  # `ip netns add` and its record would leave a namespace that teardown does not know.
  stop=0
  trap 'stop=143' TERM
  ip link add "$bridge" type bridge
  record link "$bridge"
  ip addr add "$prefix.254/24" dev "$bridge"
  ip link set "$bridge" up
  for ((i = 0; i < n; i++)); do
    [ "$stop" -eq 0 ] || exit "$stop"
    ns=lbhost$i
    ip netns add "$ns"
    if ! ip -n "$ns" link set lo alias "lowband-cluster-$token"; then
      ip netns del "$ns"  # not recorded yet: teardown would not know it
      fail "could not mark namespace $ns as this cluster's"
    fi
    record netns "$ns"
    ip link add "lbh$i" type veth peer name eth0 netns "$ns"
    record link "lbh$i"
    ip link set "lbh$i" master "$bridge" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$prefix.$((i + 1))/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    # Host egress inside the namespace, host ingress on the bridge side.
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 100ms
    tc qdisc add dev "lbh$i" root tbf rate "$rate" burst 64kb latency 100ms
  done
  [ "$stop" -eq 0 ] || exit "$stop"
  echo "$prog: lbhost0..lbhost$((n - 1)) ($prefix.1-$prefix.$n) on $bridge, links at $rate"
}

# Arguments first, so that bad input is refused the same way with or without root.
case "${1:-}" in
  up)
    [ $# -eq 3 ] || usage
    # Decimal without leading zeros: bash arithmetic would read 010 as octal.
    if ! [[ $2 =~ ^[1-9][0-9]{0,2}$ ]] || [ "$2" -gt "$max_hosts" ]; then
      bad "N must be a whole number of hosts in 1..$max_hosts, got '$2'"
    fi
    rate=${3,,}  # tc reads units case-insensitively
    if ! [[ $rate =~ ^([0-9]+(\.[0-9]+)?|\.[0-9]+)(bit|[kmgt]i?bit|bps|[kmgt]i?bps)$ ]] ||
      ! [[ ${rate%%[a-z]*} =~ [1-9] ]]; then  # the number part must not be all zeros
      bad "RATE must be a positive number with a tc unit (100mbit, 1gbit, 12.5mbps), got '$3'"
    fi
    ;;
  down) [ $# -eq 1 ] || usage ;;
  *) usage ;;
esac

[ "$(id -u)" -eq 0 ] || fail "needs root (ip netns, tc)"
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
  fail "needs ip and tc (iproute2)"
fi
mkdir -p "$state_dir"
# One cluster.sh at a time: two `up`s would race for the same names and the state file.
exec 9>"$lock"
flock -w 60 9 || fail "another cluster.sh still holds $lock after 60 s"

if [ "$1" = down ]; then
  [ -f "$state" ] || { echo "$prog: nothing to remove (no $state)"; exit 0; }
  teardown || exit 1
  exit 0
fi
teardown || fail "could not take down the earlier cluster; not starting a new one"
# `up` runs in its own subshell with SIGINT ignored, which every command it starts inherits,
# so Ctrl-C (sent to the whole process group) cannot kill an `ip` between making something and
# recording it. This shell turns SIGINT and SIGTERM into a SIGTERM for `up`, which stops at its
# next safe point and removes what it made.
(
  trap '' INT
  up "$2" "$rate"
) &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
while :; do
  rc=0
  wait "$child" || rc=$?  # returns early, above 128, when a signal arrives
  kill -0 "$child" 2>/dev/null || break
done
exit "$rc"
