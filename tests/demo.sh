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
  "$BIN" -H "unix://$SOCK" "$@"
}

cleanup() {
  set +e
  if [ -S "$SOCK" ]; then
    ids=$("$BIN" -H "unix://$SOCK" ps -aq 2>/dev/null)
    [ -n "$ids" ] && "$BIN" -H "unix://$SOCK" rm -f $ids >/dev/null 2>&1
  fi
  [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip link del shoaldemo0 2>/dev/null
  for t in iptables iptables-legacy; do
    command -v $t >/dev/null || continue
    $t -S FORWARD 2>/dev/null | grep -- 'shoaldemo0' | sed 's/^-A/-D/' | while read -r rule; do eval "$t $rule"; done
  done
  nft list tables 2>/dev/null | awk '/shoaldemo0/ {print $2, $3}' | while read -r fam name; do nft delete table "$fam" "$name"; done
  for c in /sys/fs/cgroup/*/shoal-demo; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cleanup
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
"$BIN" daemon --data-root "$DIR/data" --exec-root "$DIR/exec" -H "unix://$SOCK" \
  --cgroup-parent shoal-demo --bridge-name shoaldemo0 --bip 198.19.250.1/24 >"$DIR/daemon.log" 2>&1 &
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
if command -v curl >/dev/null; then curl -s -m 3 http://198.19.250.1:18080/; else echo "(curl not installed)"; fi
shoal run --rm busybox wget -q -O - http://198.19.250.1:18080/
shoal logs --tail 2 ticker
shoal exec web ps
shoal stop -t 1 ticker
shoal ps -a
shoal rm -f web ticker
echo "== engine demo done; cleaning up"
trap - EXIT INT TERM
cleanup

exec bash "$HERE/demo-cluster.sh" "$BIN"
