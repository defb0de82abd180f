#!/usr/bin/env bash
# mpiexec's launcher for namespace hosts (mpiexec -launcher ssh -launcher-exec THIS): called
# like ssh, `exec.sh [ssh options] HOST COMMAND...`, it runs COMMAND inside the namespace of
# HOST: lbhostI, or its address 10.231.0.(I+1) as cluster.sh assigns them.
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
host=$1
shift
case "$host" in
  10.231.0.*) host=lbhost$(( ${host##*.} - 1 )) ;;
esac
exec ip netns exec "$host" sh -c "$*"
