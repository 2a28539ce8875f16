#!/usr/bin/env bash
# make demo: first the engine (a shoal daemon with its own roots, a busybox image,
# containers), then a cluster of three test hosts (tests/demo-cluster.sh: a swarm and a
# replicated service), with what a user sees. Everything it makes is removed on exit,
# also on failure or Ctrl-C, and before it starts, in case an earlier run crashed.
set -euo pipefail
BIN=${1:?usage: demo.sh path/to/shoal}
BIN=$(readlink -f "$BIN")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=/tmp/shoal-demo
SOCK=$DIR/exec/shoal.sock
# shoal prints the command as a user would type it (quoting only what needs it), then runs it.
shoal() {
  local s="+ shoal" a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then s+=" $a"; else s+=" '${a//\'/\'\\\'\'}'"; fi
  done
  echo "$s" >&2
  "$BIN" -H "unix://$SOCK" "$@" || { local rc=$?; echo "!! step failed: ${s#+ } (status $rc)" >&2; return $rc; }
}

cleanup() {
  local rc=$? pid c i
  set +e
  trap '' INT TERM
  if [ $rc -gt 128 ]; then
    echo "!! engine demo interrupted (status $rc); cleaning up" >&2
  elif [ $rc -ne 0 ]; then
    echo "!! engine demo FAILED (status $rc); cleaning up" >&2
    [ -f "$DIR/daemon.log" ] && { echo "!! last lines of the daemon log:"; tail -n 30 "$DIR/daemon.log" | sed 's/^/   | /'; } >&2
  fi
  if [ -S "$SOCK" ]; then
    ids=$(timeout 10 "$BIN" -H "unix://$SOCK" ps -aq 2>/dev/null)
    [ -n "$ids" ] && timeout 20 "$BIN" -H "unix://$SOCK" rm -f $ids >/dev/null 2>&1
  fi
  # The daemon (also one a crashed run left), then whatever still runs from our roots
  # or in our cgroups.
  for pid in $(pgrep -f -- "daemon --data-root $DIR/"); do kill "$pid" 2>/dev/null; done
  for i in $(seq 100); do pgrep -f -- "daemon --data-root $DIR/" >/dev/null || break; sleep 0.1; done
  for i in $(seq 50); do
    pids=$(pgrep -f -- "$DIR/"; cat /sys/fs/cgroup/shoal-demo/cgroup.procs /sys/fs/cgroup/*/shoal-demo/cgroup.procs 2>/dev/null)
    pids=$(echo "$pids" | grep -vx "$$" | sort -u)
    [ -z "$pids" ] && break
    kill -9 $pids 2>/dev/null; sleep 0.1
  done
  [ -n "${DPID:-}" ] && wait "$DPID" 2>/dev/null
  awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip link del shoaldemo0 2>/dev/null
  for t in iptables iptables-legacy; do
    command -v $t >/dev/null || continue
    $t -S FORWARD 2>/dev/null | grep -- 'shoaldemo0' | sed 's/^-A/-D/' | while read -r rule; do eval "$t $rule"; done
  done
  nft list tables 2>/dev/null | awk '$3 == "shoal-shoaldemo0" {print $2, $3}' | while read -r fam name; do nft delete table "$fam" "$name"; done
  for c in /sys/fs/cgroup/shoal-demo /sys/fs/cgroup/*/shoal-demo; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  rm -rf "$DIR"
  return $rc
}
trap cleanup EXIT
cleanup
set -e # cleanup turned it off
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$DIR"

# A rootfs from Debian's static busybox (busybox-static is installed by make deps).
ROOT=$DIR/rootfs
mkdir -p "$ROOT"/{bin,etc,tmp,proc,sys,dev,root,var/www}
cp /bin/busybox "$ROOT/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOT/etc/passwd"
echo 'root:x:0:' > "$ROOT/etc/group"
echo 'hello from a shoal container' > "$ROOT/var/www/index.html"
tar --numeric-owner -C "$ROOT" -cf "$DIR/busybox.tar" .

echo "== engine: one shoal daemon (data root $DIR/data)"
# Own session: a Ctrl-C goes to this script, whose cleanup stops the daemon.
setsid "$BIN" daemon --data-root "$DIR/data" --exec-root "$DIR/exec" -H "unix://$SOCK" \
  --cgroup-parent shoal-demo --bridge-name shoaldemo0 --bip 198.19.250.1/24 </dev/null >"$DIR/daemon.log" 2>&1 &
DPID=$!
for _ in $(seq 100); do "$BIN" -H "unix://$SOCK" version >/dev/null 2>&1 && break; sleep 0.05; done
shoal version

shoal import "$DIR/busybox.tar" busybox:latest
shoal images
shoal run --rm busybox echo "hello from shoal"
shoal run --rm --hostname demo -m 64m --pids-limit 50 busybox sh -c 'echo "I am PID $$ on $(hostname); processes I can see: $(ls -d /proc/[0-9]* | wc -l)"'
shoal run -d --name web -p 18080:80 busybox httpd -f -p 80 -h /var/www
shoal run -d --name ticker busybox sh -c 'while true; do date; sleep 1; done'
sleep 1.2
shoal ps
echo "+ fetch http://198.19.250.1:18080/ from the host (published port)" >&2
if command -v curl >/dev/null; then
  curl -sS -m 3 http://198.19.250.1:18080/ || { echo "!! step failed: fetch from the host" >&2; exit 1; }
else echo "(curl not installed)"; fi
shoal run --rm busybox wget -q -O - http://198.19.250.1:18080/
shoal logs --tail 2 ticker
shoal exec web ps
shoal stop -t 1 ticker
shoal ps -a
shoal rm -f web ticker
echo "== engine demo done; cleaning up"
trap - EXIT
cleanup
trap - INT TERM

exec bash "$HERE/demo-cluster.sh" "$BIN"
