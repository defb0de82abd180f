#!/usr/bin/env bash
# mpiexec's launcher for namespace hosts (mpiexec -launcher ssh -launcher-exec THIS): called
# like ssh, `exec.sh [ssh options] HOST COMMAND...`, it runs COMMAND inside the namespace of
# HOST: its address 10.231.0.(I+1) as cluster.sh assigns them (1..253), or lbhostI.
# ssh options are parsed as ssh does (those that take a value consume it, as in -o X=y or -p 22)
# and then ignored. Any other HOST is refused: it is only ever matched as an address, never
# evaluated. As with ssh, COMMAND's words are joined with spaces and run by a shell.
set -euo pipefail
prog=exec.sh
# ssh exits 255 on its own errors; callers like mpiexec read that the same way.
die() { echo "$prog: $*" >&2; exit 255; }

# ssh(1)'s options: these take a value, the other letters are flags.
with_value=BbcDEeFIiJLlmOoPpQRSWw
flags=146AaCfGgKkMNnqsTtVvXxYy
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    -?*)
      opts=${1#-}
      shift
      while [ -n "$opts" ]; do
        c=${opts:0:1}
        opts=${opts:1}
        if [[ $flags == *"$c"* ]]; then
          continue
        elif [[ $with_value == *"$c"* ]]; then
          if [ -z "$opts" ]; then  # the value is the next word, not attached (-oX=y)
            [ $# -gt 0 ] || die "option -$c needs a value"
            shift
          fi
          break
        else
          die "unknown ssh option -$c"
        fi
      done
      ;;
    *) break ;;
  esac
done

[ $# -gt 0 ] || die "no host (usage: $prog [ssh options] HOST COMMAND...)"
host=$1
shift
[ $# -gt 0 ] || die "no command to run on $host"
# Digits without leading zeros only, so the arithmetic below sees a plain decimal number.
if [[ $host =~ ^10\.231\.0\.([1-9][0-9]{0,2})$ ]] && [ "${BASH_REMATCH[1]}" -le 253 ]; then
  ns=lbhost$((10#${BASH_REMATCH[1]} - 1))
elif [[ $host =~ ^lbhost(0|[1-9][0-9]{0,2})$ ]] && [ "${BASH_REMATCH[1]}" -le 252 ]; then
  ns=$host
else
  die "host '$host' is not a cluster.sh host (10.231.0.1-253 or lbhost0-252)"
fi
ip netns list 2>/dev/null | awk -v n="$ns" '$1 == n {f = 1} END {exit !f}' ||
  die "no namespace $ns for host $host (cluster.sh up N RATE makes them)"
exec ip netns exec "$ns" sh -c "$*"
