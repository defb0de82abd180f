#!/usr/bin/env bash
# The root scripts refuse bad input with one line `NAME: problem` and a non-zero exit, clean up
# after a failure and touch only what they made: scripts/netns/exec.sh and cluster.sh,
# scripts/prepare_text.py, scripts/load_safetensors.py, scripts/slurm/train.sbatch (with stub
# srun and scontrol). The namespace parts run only as root with working `ip netns` and tc and
# no cluster already up (someone's), else they print SKIP; everything else always runs.
# Usage: scripts_hardening.sh SOURCE_DIR
set -euo pipefail
src=$(cd "${1:?usage: scripts_hardening.sh SOURCE_DIR}" && pwd)
cluster=$src/scripts/netns/cluster.sh
execsh=$src/scripts/netns/exec.sh
tmp=$(mktemp -d)
failures=0
cluster_up=0      # this test ran cluster.sh up: take it down at the end
test_netns=()     # namespaces this test made by hand (foreign to cluster.sh)
marker=lowband-scripts-hardening-$$  # lo alias of those, so cleanup deletes only them

cleanup() {
  set +e
  [ "$cluster_up" -eq 1 ] && bash "$cluster" down >/dev/null 2>&1
  for ns in "${test_netns[@]}"; do drop_foreign "$ns"; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
# run CMD...: sets $out (stdout and stderr) and $rc, whatever the exit status.
run() { rc=0; out=$("$@" 2>&1) || rc=$?; }
# one_error WHAT PREFIX: the last run failed with exactly one line `PREFIX: ...`.
one_error() {
  if [ "$rc" -eq 0 ]; then
    fail "$1: exit 0 (output: $out)"
  elif [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ] || [[ $out != "$2: "* ]]; then
    fail "$1: exit $rc without one '$2: ...' line: $out"
  else
    ok "$1: $out"
  fi
}

# ---- netns: only as root with ip netns and tc, and with no cluster of someone else's up ----
netns=1
if [ "$(id -u)" -ne 0 ] || ! command -v tc >/dev/null || ! ip netns list >/dev/null 2>&1; then
  netns=0
  echo "SKIP: namespace checks (need root, ip netns and tc)"
elif [ -e /run/lowband-netns/state ] || ip netns list | grep -Eq '^lbhost[0-9]+( |$)' ||
  ip link show dev lbbr0 >/dev/null 2>&1; then
  netns=0
  echo "SKIP: namespace checks (a cluster is up; not touching it)"
elif ! ip netns add "lbsh$$" 2>/dev/null || ! ip netns del "lbsh$$"; then
  netns=0
  echo "SKIP: namespace checks (cannot make a namespace here)"
fi
# The namespaces and links on the machine, to see that a failed command left nothing behind.
objects() {
  {
    ip netns list 2>/dev/null | awk '{print "netns " $1}'
    ip -o link show 2>/dev/null | awk -F': ' '{split($2, a, "@"); print "link " a[1]}'
  } | sort
}
same_objects() {  # same_objects WHAT BEFORE
  local now
  now=$(objects)
  if [ "$now" = "$2" ]; then
    ok "$1: nothing left behind"
  else
    fail "$1: made: $(comm -13 <(echo "$2") <(echo "$now") | tr '\n' ' ')," \
      "removed: $(comm -23 <(echo "$2") <(echo "$now") | tr '\n' ' ')"
  fi
}
# foreign_netns NAME: a namespace cluster.sh did not make, marked as this test's.
foreign_netns() {
  ip netns add "$1"
  test_netns+=("$1")
  ip -n "$1" link set lo alias "$marker"
}
is_foreign_intact() { ip -n "$1" -o link show dev lo 2>/dev/null | grep -q "alias $marker"; }
drop_foreign() { if is_foreign_intact "$1"; then ip netns del "$1"; fi; }

# ---- exec.sh: the host is matched as an address, never evaluated; ssh options skipped ----
# Run in $tmp with a relative path: the old ${host##*.} cut at the last dot, so a dot in the
# path would hide the bug.
# shellcheck disable=SC2016  # the $(...) is for exec.sh, not for this shell
run env -C "$tmp" bash "$execsh" -x '10.231.0.a[$(touch pwned)]' true
one_error "exec.sh host with a command substitution" exec.sh
[ -e "$tmp/pwned" ] && fail "exec.sh ran the command substitution in the host name"
run bash "$execsh" -o Foo=bar 10.231.0.254 true
one_error "exec.sh -o Foo=bar 10.231.0.254 (the bridge)" exec.sh
[[ $out == *"'10.231.0.254'"* ]] || fail "exec.sh took the value of -o as the host: $out"
run bash "$execsh" -oFoo=bar -p 22 10.231.0.010 true
one_error "exec.sh 10.231.0.010 (octal in bash arithmetic)" exec.sh
run bash "$execsh" -x lbhost1
one_error "exec.sh without a command" exec.sh

# ---- cluster.sh: arguments checked before anything is made ----
before=""
if [ "$netns" -eq 1 ]; then
  before=$(objects)
  cluster_up=1  # should one of these make something after all, cleanup takes it down
fi
for args in "0 100mbit" "-1 100mbit" "abc 100mbit" "2.5 100mbit" "300 100mbit" "2 -5mbit" \
  "2 badrate" "2 0mbit"; do
  # shellcheck disable=SC2086  # N and RATE as two words
  run bash "$cluster" up $args
  one_error "cluster.sh up $args" cluster.sh
  [ "$netns" -eq 1 ] && same_objects "cluster.sh up $args" "$before"
done

if [ "$netns" -eq 1 ]; then
  # A step that fails half way (here `ip netns add lbhost1`): what was made is removed.
  mkdir "$tmp/bin"
  cat >"$tmp/bin/ip" <<EOF
#!/bin/bash
[ "\$*" = "netns add lbhost1" ] && { echo "ip: injected failure" >&2; exit 1; }
exec $(command -v ip) "\$@"
EOF
  chmod +x "$tmp/bin/ip"
  run env PATH="$tmp/bin:$PATH" bash "$cluster" up 3 100mbit
  [ "$rc" -ne 0 ] || fail "cluster.sh up with a failing step exited 0"
  same_objects "cluster.sh up failing at lbhost1" "$before"

  # Interrupted half way (SIGTERM, as timeout(1) sends): what was made is removed.
  bash "$cluster" up 60 10mbit >/dev/null 2>&1 &
  pid=$!
  sleep 0.5
  kill -TERM "$pid" 2>/dev/null || true
  rc=0
  wait "$pid" || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "SKIP: cluster.sh up 60 finished before SIGTERM"
    bash "$cluster" down >/dev/null
  fi
  same_objects "cluster.sh up 60 interrupted (exit $rc)" "$before"

  # A namespace it needs that someone else made: refused, and left as it was.
  foreign_netns lbhost1
  with_foreign=$(objects)
  run bash "$cluster" up 2 100mbit
  one_error "cluster.sh up 2 with a foreign lbhost1" cluster.sh
  is_foreign_intact lbhost1 || fail "cluster.sh up replaced the foreign lbhost1"
  same_objects "cluster.sh up 2 with a foreign lbhost1" "$with_foreign"
  drop_foreign lbhost1

  # End to end, next to a foreign lbhost7 that `down` must leave alone.
  foreign_netns lbhost7
  with_foreign=$(objects)
  run bash "$cluster" up 2 100mbit
  if [ "$rc" -eq 0 ]; then ok "cluster.sh up 2 100mbit"; else fail "cluster.sh up 2 100mbit: $out"; fi
  run bash "$execsh" -x -o BatchMode=yes -p 22 10.231.0.2 'ip -o -4 addr show dev eth0'
  if [[ $out == *"inet 10.231.0.2/24"* ]]; then
    ok "exec.sh reaches lbhost1 past ssh options"
  else
    fail "exec.sh -x -o BatchMode=yes -p 22 10.231.0.2: $out"
  fi
  run ip netns exec lbhost0 tc qdisc show dev eth0
  [[ $out == *"tbf"*"rate 100Mbit"* ]] || fail "lbhost0's eth0 is not shaped: $out"
  if command -v ping >/dev/null; then
    run bash "$execsh" 10.231.0.1 ping -c 1 -W 2 10.231.0.2
  else  # no ping here: a TCP connection instead
    bash "$execsh" lbhost1 "timeout 10 python3 -c \"import socket; s = socket.create_server(('10.231.0.2', 5555)); c, _ = s.accept(); c.sendall(b'1 received')\"" &
    server=$!
    run bash "$execsh" lbhost0 "python3 -c \"import socket, time
for _ in range(50):
    try:
        print(socket.create_connection(('10.231.0.2', 5555), timeout=2).recv(16).decode()); break
    except ConnectionRefusedError:
        time.sleep(0.1)\""
    wait "$server" || true
  fi
  if [ "$rc" -eq 0 ] && [[ $out == *"1 received"* ]]; then
    ok "lbhost0 reaches lbhost1"
  else
    fail "lbhost0 does not reach lbhost1: $out"
  fi
  run bash "$cluster" down
  [ "$rc" -eq 0 ] || fail "cluster.sh down: $out"
  cluster_up=0
  if is_foreign_intact lbhost7; then
    ok "cluster.sh down left the foreign lbhost7"
  else
    fail "cluster.sh down deleted or replaced the foreign lbhost7"
  fi
  same_objects "cluster.sh up 2 100mbit; down" "$with_foreign"
  drop_foreign lbhost7
fi

# ---- prepare_text.py: writes and deletes only the shards its .prepared lists ----
prep() { run python3 "$src/scripts/prepare_text.py" "$@"; }
head -c 3000 "$src/README.md" >"$tmp/in.txt"
mkdir "$tmp/foreign"
echo "not mine" >"$tmp/foreign/train_000042.bin"
prep "$tmp/in.txt" "$tmp/foreign"
one_error "prepare_text.py into a directory with someone's train_000042.bin" prepare_text.py
[ "$(cat "$tmp/foreign/train_000042.bin" 2>/dev/null)" = "not mine" ] ||
  fail "prepare_text.py deleted or rewrote train_000042.bin"
[ -e "$tmp/foreign/train_000000.bin" ] && fail "prepare_text.py wrote shards next to a foreign one"
echo "a file" >"$tmp/afile"
prep "$tmp/in.txt" "$tmp/afile"
one_error "prepare_text.py with OUT_DIR a file" prepare_text.py
prep "$tmp/in.txt" "$tmp/ours" --shard-tokens 500
echo "notes" >"$tmp/ours/notes.txt"
prep "$tmp/in.txt" "$tmp/ours" --shard-tokens 5000
shards=$(cd "$tmp/ours" && echo train_*.bin val_*.bin)
if [ "$rc" -eq 0 ] && [ "$shards" = "train_000000.bin val_000000.bin" ] &&
  [ -e "$tmp/ours/notes.txt" ]; then
  ok "prepare_text.py replaced its own 6 shards with 1, kept notes.txt"
else
  fail "prepare_text.py rerun: exit $rc, shards '$shards': $out"
fi
echo "not mine" >"$tmp/ours/val_extra.bin"
prep "$tmp/in.txt" "$tmp/ours" --shard-tokens 500
one_error "prepare_text.py with someone's val_extra.bin beside its shards" prepare_text.py

# ---- load_safetensors.py: crafted headers give one line, not a traceback ----
python3 - "$tmp" <<'EOF'
import json, struct, sys
def st(name, header=None, data=b"", raw=None, n=None):
    h = raw if raw is not None else json.dumps(header).encode()
    with open("%s/%s.safetensors" % (sys.argv[1], name), "wb") as f:
        f.write(struct.pack("<Q", len(h) if n is None else n) + h + data)
f32 = lambda shape, offsets: {"dtype": "F32", "shape": shape, "data_offsets": offsets}
st("good", {"__metadata__": {"step": "1"}, "w": f32([2, 2], [0, 16]), "b": f32([0], [16, 16])},
   struct.pack("<4f", 1, 2, 3, 4.5))
st("short", raw=b"")  # an empty header
with open(sys.argv[1] + "/tiny.safetensors", "wb") as f:
    f.write(b"abc")  # shorter than the header length
st("hugelen", {}, n=2**63)
st("notjson", raw=b"{nope")
st("array", [1, 2])
st("deep", raw=b"[" * 100000)
st("notobj", {"w": 5})
st("nodtype", {"w": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
st("negshape", {"w": f32([-1], [0, 4])}, b"\0" * 4)
st("pastend", {"w": f32([4], [0, 16])}, b"\0" * 4)
st("mismatch", {"w": f32([2], [0, 4])}, b"\0" * 4)
st("overlap", {"w": f32([1], [0, 4]), "v": f32([1], [0, 4])}, b"\0" * 4)
EOF
for name in tiny short hugelen notjson array deep notobj nodtype negshape pastend mismatch overlap; do
  run python3 "$src/scripts/load_safetensors.py" "$tmp/$name.safetensors"
  one_error "load_safetensors.py $name" load_safetensors.py
done
if python3 -c 'import torch' 2>/dev/null; then
  run python3 "$src/scripts/load_safetensors.py" "$tmp/good.safetensors"
  if [ "$rc" -eq 0 ] && [ "$out" = $'w 2x2 1.050000000e+01\nb 0 0.000000000e+00' ]; then
    ok "load_safetensors.py on a good file"
  else
    fail "load_safetensors.py on a good file: $out"
  fi
else
  echo "SKIP: load_safetensors.py on a good file (no PyTorch here)"
fi

# ---- train.sbatch: requeues after a preemption checkpoint; outside Slurm one clear line ----
mkdir -p "$tmp/stub" "$tmp/job/build"
echo "run: {}" >"$tmp/job/run.yaml"
printf '#!/bin/sh\nexit 0\n' >"$tmp/job/build/lowband"
# srun prints what $SRUN_SAYS names and exits $SRUN_EXIT; scontrol logs its arguments.
cat >"$tmp/stub/srun" <<'EOF'
#!/bin/sh
echo "srun $*" >>"$STUB_LOG"
case $SRUN_SAYS in
  preempted) echo "preempted (SIGUSR1) after step 5: resume with --resume auto" ;;
  finished) echo "done: 10 steps in 0m01s, final loss 1.0" ;;
esac
exit "$SRUN_EXIT"
EOF
cat >"$tmp/stub/scontrol" <<'EOF'
#!/bin/sh
echo "scontrol $*" >>"$STUB_LOG"
EOF
chmod +x "$tmp/stub/srun" "$tmp/stub/scontrol" "$tmp/job/build/lowband"
sbatch_run() {  # sbatch_run SAYS EXIT: the script as Slurm would start it, in $tmp/job
  : >"$tmp/stub.log"
  run env -C "$tmp/job" PATH="$tmp/stub:$PATH" STUB_LOG="$tmp/stub.log" SRUN_SAYS="$1" \
    SRUN_EXIT="$2" SLURM_JOB_ID=4242 SLURM_JOB_NODELIST=n[1-2] TMPDIR="$tmp" \
    bash "$src/scripts/slurm/train.sbatch" run.yaml --set run.steps=10
  log=$(cat "$tmp/stub.log")
}
sbatch_run preempted 0
if [ "$rc" -eq 0 ] && grep -qx "scontrol requeue 4242" <<<"$log" &&
  grep -q "./build/lowband train run.yaml --resume auto --set run.steps=10" <<<"$log"; then
  ok "train.sbatch requeues job 4242 after a preemption checkpoint"
else
  fail "train.sbatch after a preemption: exit $rc, calls: $log; output: $out"
fi
sbatch_run finished 0
if [ "$rc" -eq 0 ] && ! grep -q scontrol <<<"$log"; then
  ok "train.sbatch does not requeue a finished run"
else
  fail "train.sbatch after a finished run: exit $rc, calls: $log; output: $out"
fi
sbatch_run preempted 3
if [ "$rc" -eq 3 ] && ! grep -q scontrol <<<"$log"; then
  ok "train.sbatch passes on a failed step's exit 3"
else
  fail "train.sbatch after a failed step: exit $rc, calls: $log; output: $out"
fi
ls "$tmp"/lowband-4242.* >/dev/null 2>&1 && fail "train.sbatch left its output log in TMPDIR"
run env -u SLURM_JOB_ID -C "$tmp/job" PATH="$tmp/stub:$PATH" STUB_LOG="$tmp/stub.log" \
  bash "$src/scripts/slurm/train.sbatch" run.yaml
one_error "train.sbatch outside Slurm" train.sbatch

if [ "$failures" -ne 0 ]; then
  echo "scripts_hardening: $failures failed"
  exit 1
fi
echo "scripts_hardening: all passed"
