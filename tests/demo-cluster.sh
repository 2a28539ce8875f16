#!/usr/bin/env bash
# The cluster part of make demo (tests/demo.sh runs it after the engine part; it also
# runs alone: bash tests/demo-cluster.sh path/to/shoal).
#
# Three test hosts as in DESIGN.md ("Test hosts"): a switch namespace holding a bridge,
# and per host a network namespace with eth0 = 198.18.250.N/24 on that bridge, running
# its own `shoal daemon` (entered with nsenter --net, not `ip netns exec`, which would
# remount /sys and hide the cgroups). Node 1 inits a swarm, 2 and 3 join, a replicated
# service is created and scaled; an image built from a Dockerfile on node1 is pushed to the
# cluster registry and runs on the workers; then an overlay network carries a web service with a task
# on every node, which a client task reaches by name (DNS at 127.0.0.11, the service's
# virtual IP spreading the requests); a port published through the routing mesh answers
# on a node without the task; and what a user sees is printed. Everything it makes
# (daemons and what they started, mounts, cgroups, namespaces and their links, nft
# tables) is removed on exit, also on failure or Ctrl-C, and before starting, in case
# an earlier run crashed. K=250 in 198.18.K.0/24: the Go tests' harness uses names
# starting with shoale2e and picks K from its pid, and never sees ours.
set -uo pipefail
BIN=${1:?usage: demo-cluster.sh path/to/shoal}
BIN=$(readlink -f "$BIN")
DIR=/tmp/shoaldemo-cluster
P=shoaldemo            # prefix of every namespace and link name
CG=shoaldemo-cg        # prefix of the daemons' cgroup parents
K=250
NODES=(1 2 3)
SW=$P-sw               # the switch namespace; its bridge is br0
MANAGER=198.18.$K.1
declare -a DPID=()

sock() { echo "$DIR/n$1/exec/shoal.sock"; }
netns() { echo "$P-n$1"; }
cli() { local n=$1; shift; "$BIN" -H "unix://$(sock "$n")" "$@"; }

# show prints a command as a user would type it (quoting only what needs it).
show() {
  local s="[node$1] + shoal" a; shift
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then s+=" $a"; else s+=" '${a//\'/\'\\\'\'}'"; fi
  done
  echo "$s" >&2
}

FAILED=""
# fail reports a failed step clearly, with the tail of the node's daemon log, and exits
# non-zero (the EXIT trap cleans up).
fail() {
  local n=$1; shift
  FAILED="$*"
  {
    echo
    echo "!! DEMO FAILED on node$n: $*"
    if [ -f "$DIR/n$n/daemon.log" ]; then
      echo "!! last lines of node$n's daemon log ($DIR/n$n/daemon.log):"
      tail -n 40 "$DIR/n$n/daemon.log" | sed 's/^/   | /'
    fi
  } >&2
  exit 1
}

# on N ARGS... runs `shoal ARGS...` against node N's daemon, printed first; a failure
# (or a hang of more than 3 minutes) ends the demo.
on() {
  local n=$1; shift
  show "$n" "$@"
  timeout --foreground -k 5 180 "$BIN" -H "unix://$(sock "$n")" "$@"
  local rc=$?
  [ $rc -eq 0 ] || fail "$n" "\`shoal $*\` exited with status $rc$([ $rc -eq 124 ] && echo ' (timed out)')"
}

# pids_matching lists live processes other than this shell whose command line names DIR,
# whose network namespace is one of ours, or which sit in one of our cgroups.
pids_matching() {
  local pid ns c
  for ns in $(ip netns list 2>/dev/null | awk -v p="^$P-" '$1 ~ p {print $1}'); do
    ip netns pids "$ns" 2>/dev/null
  done
  for c in /sys/fs/cgroup/"$CG"-* /sys/fs/cgroup/*/"$CG"-*; do
    [ -d "$c" ] && find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [ "$pid" = $$ ] && continue
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$DIR/" && echo "$pid"
  done
}

kill_all() {
  local i pids
  for i in $(seq 50); do
    pids=$(pids_matching | sort -un | grep -vx "$$")
    [ -z "$pids" ] && return 0
    kill -9 $pids 2>/dev/null
    sleep 0.1
  done
  echo "cleanup: processes survive SIGKILL: $pids" >&2
}

unmount_all() {
  awk -v d="$DIR" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo |
    awk '{print length, $0}' | sort -rn | cut -d' ' -f2- | xargs -r -n1 umount -l 2>/dev/null
}

remove_cgroups() {
  local c
  for c in /sys/fs/cgroup/"$CG"-* /sys/fs/cgroup/*/"$CG"-*; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
  done
}

leftovers() {
  ip netns list 2>/dev/null | grep "^$P-"
  ip -o link 2>/dev/null | grep -o "$P-[^:@ ]*"
  grep -F "$DIR" /proc/self/mountinfo | awk '{print "mount " $5}'
  ls -d /sys/fs/cgroup/"$CG"-* /sys/fs/cgroup/*/"$CG"-* 2>/dev/null
  nft list tables 2>/dev/null | grep "shoal-$P[1-9]\$"
  pids_matching | sort -un | grep -vx "$$" | sed 's/^/pid /'
  [ -e "$DIR" ] && echo "$DIR"
}

# polite N ARGS... runs a cleanup step on node N if its daemon has a socket, for at most
# 10 s; only a timeout is worth a word (the daemon may well be gone already).
polite() {
  local n=$1; shift
  [ -S "$(sock "$n")" ] || return 0
  timeout -k 2 10 "$BIN" -H "unix://$(sock "$n")" "$@" >/dev/null 2>&1
  [ $? -ne 124 ] || echo "cleanup: \`shoal $*\` on node$n timed out" >&2
}

cleanup() {
  local rc=$? n i pid
  trap '' INT TERM HUP
  # Politely first, while the daemons answer: the service, then the swarm (workers
  # before the manager). Then the daemons stop; whatever is left is killed.
  polite 1 service rm web
  local leaving=()
  for n in 2 3; do polite "$n" swarm leave --force & leaving+=($!); done
  wait "${leaving[@]}"
  polite 1 swarm leave --force
  for pid in $(pgrep -f -- "--data-root $DIR/" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
  for i in $(seq 100); do pgrep -f -- "--data-root $DIR/" >/dev/null || break; sleep 0.1; done
  pgrep -f -- "--data-root $DIR/" >/dev/null && echo "cleanup: a daemon did not stop within 10 s of SIGTERM; killing it" >&2
  kill_all
  unmount_all
  for n in $(ip netns list 2>/dev/null | awk -v p="^$P-" '$1 ~ p {print $1}'); do ip netns del "$n" 2>/dev/null; done
  # A link of ours in the root namespace can only be a half-made veth of a crashed run.
  for n in $(ip -o link 2>/dev/null | grep -o "$P-[^:@ ]*"); do ip link del "$n" 2>/dev/null; done
  nft list tables 2>/dev/null | awk -v p="^shoal-$P[1-9]\$" '$3 ~ p {print $2, $3}' |
    while read -r fam name; do nft delete table "$fam" "$name"; done
  for i in $(seq 20); do
    remove_cgroups
    unmount_all
    rm -rf "$DIR" 2>/dev/null && break
    sleep 0.1
  done
  remove_cgroups
  local left
  left=$(leftovers)
  [ -n "$left" ] && { echo "cleanup: left behind:"; echo "$left"; } >&2
  if [ -n "$FAILED" ]; then
    echo "!! cluster demo FAILED (cleaned up): $FAILED" >&2
  elif [ $rc -ne 0 ]; then
    echo "!! cluster demo interrupted (status $rc; cleaned up)" >&2
  fi
  exit $rc
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
cleanup_at_start() { ( trap - EXIT; FAILED=""; cleanup ) 2>&1 | grep -v '^$' >&2 || true; }
cleanup_at_start
mkdir -p "$DIR"

echo
echo "== cluster: three test hosts on one switch (198.18.$K.0/24); [nodeN] commands use -H unix://$DIR/nN/exec/shoal.sock"
# A rootfs from Debian's static busybox (busybox-static is installed by make deps).
ROOT=$DIR/rootfs
mkdir -p "$ROOT"/{bin,etc,tmp,proc,sys,dev,root}
cp /bin/busybox "$ROOT/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
echo 'root:x:0:' >"$ROOT/etc/group"
tar --numeric-owner -C "$ROOT" -cf "$DIR/busybox.tar" . || fail 1 "cannot make the busybox rootfs"

ip netns add "$SW" && ip -n "$SW" link add br0 type bridge && ip -n "$SW" link set br0 up ||
  fail 1 "cannot make the switch namespace $SW"
for n in "${NODES[@]}"; do
  ns=$(netns "$n")
  # Both veth ends are made inside their namespaces, never in the root one.
  ip netns add "$ns" &&
    ip link add name "$P-p$n" netns "$SW" type veth peer name eth0 netns "$ns" &&
    ip -n "$SW" link set "$P-p$n" master br0 && ip -n "$SW" link set "$P-p$n" up &&
    ip -n "$ns" addr add "198.18.$K.$n/24" dev eth0 && ip -n "$ns" link set eth0 up &&
    ip -n "$ns" link set lo up || fail "$n" "cannot make test host $ns"
  mkdir -p "$DIR/n$n"
  args=(daemon --node-name "node$n" --data-root "$DIR/n$n/data" --exec-root "$DIR/n$n/exec"
    -H "unix://$(sock "$n")" --cgroup-parent "$CG-n$n" --bridge-name "${P}$n" --bip "198.19.25$n.1/24"
    --gwbridge-subnet 198.19.250.0/24)
  echo "+ ip netns add $ns   # eth0 198.18.$K.$n/24, a port of the switch $SW" >&2
  echo "+ nsenter --net=/run/netns/$ns shoal ${args[*]} &   # log: $DIR/n$n/daemon.log" >&2
  # Own session: a Ctrl-C goes to the script, which then stops the daemons in order.
  setsid nsenter --net="/run/netns/$ns" "$BIN" "${args[@]}" </dev/null >"$DIR/n$n/daemon.log" 2>&1 &
  DPID[$n]=$!
done
for n in "${NODES[@]}"; do
  for _ in $(seq 200); do
    cli "$n" version >/dev/null 2>&1 && break
    kill -0 "${DPID[$n]}" 2>/dev/null || fail "$n" "the daemon of node$n exited at start"
    sleep 0.1
  done
  cli "$n" version >/dev/null 2>&1 || fail "$n" "the daemon of node$n did not answer within 20s"
done

echo
echo "== import the busybox image on every node"
for n in "${NODES[@]}"; do on "$n" import "$DIR/busybox.tar" busybox:latest; done

echo
echo "== a swarm: node1 is the manager, node2 and node3 join as workers"
# Overlay subnets from 198.19.240.0/21: test addresses only (DESIGN.md), never 10/8.
on 1 swarm init --advertise-addr "$MANAGER" --default-addr-pool 198.19.240.0/21
on 1 swarm join-token -q worker >"$DIR/token"
TOKEN=$(cat "$DIR/token")
echo "$TOKEN"
[ -n "$TOKEN" ] || fail 1 "swarm join-token -q worker printed no token"
for n in 2 3; do on "$n" swarm join --token "$TOKEN" "$MANAGER:2377"; done
on 1 node ls

echo
echo "== a replicated service, placed across the nodes"
on 1 service create --name sleepers --replicas 3 busybox:latest sleep 3600
on 1 service ls
on 1 service ps sleepers
on 1 service scale sleepers=6
on 1 service ls
on 1 service ps sleepers
on 1 node ls
on 1 service rm sleepers

echo
echo "== an image built from a Dockerfile on node1, pushed to the cluster registry, run on the workers"
mkdir -p "$DIR/hello"
cat >"$DIR/hello/Dockerfile" <<'DOCKERFILE'
FROM busybox:latest
ARG WHO=shoal
RUN echo "hello from an image that $WHO built" > /greeting
CMD ["sh", "-c", "cat /greeting; hostname; exec sleep 3600"]
DOCKERFILE
on 1 build -t "$MANAGER:5000/hello:1" "$DIR/hello"
on 1 build -t "$MANAGER:5000/hello:1" "$DIR/hello"   # again: every step from the cache
on 1 push "$MANAGER:5000/hello:1"
on 1 service create --name hello --replicas 2 --replicas-max-per-node 1 --constraint node.role==worker \
  "$MANAGER:5000/hello:1"
on 1 service ps hello
for n in 2 3; do
  HELLO=$(cli "$n" ps -q --filter label=com.docker.swarm.service.name=hello)
  [ -n "$HELLO" ] || fail "$n" "no task of the hello service on node$n"
  on "$n" logs "$HELLO"
done
on 1 service rm hello

echo
echo "== an overlay network: a web service on every node and a client that finds it by name"
on 1 network create -d overlay app
on 1 network ls --filter driver=overlay
on 1 service create --name web --network app --replicas 3 --replicas-max-per-node 1 --publish 8080:80 busybox:latest \
  sh -c 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'
on 1 service create --name client --network app --constraint node.role==manager busybox:latest sleep 3600
on 1 service ps web
show 1 ps -q --filter label=com.docker.swarm.service.name=client
CLIENT=$(cli 1 ps -q --filter label=com.docker.swarm.service.name=client)
[ -n "$CLIENT" ] || fail 1 "no container of the client service on node1"
# The name web is the service's virtual IP: requests spread over the three tasks, on
# three nodes; each answers with its container's hostname. (busybox wget's own -T
# crashes in Debian's build: timeout bounds it instead.)
on 1 exec "$CLIENT" nslookup web 127.0.0.11
on 1 exec "$CLIENT" nslookup tasks.web 127.0.0.11
for i in 1 2 3 4 5 6; do on 1 exec "$CLIENT" timeout 5 wget -qO- http://web/; done

echo
echo "== the routing mesh: a port published by a service answers on every node"
# web publishes 8080 on every node: each node's port spreads over the three tasks.
for n in 1 2 3; do
  echo "[node2] + curl http://198.18.$K.$n:8080/" >&2
  nsenter --net="/run/netns/$(netns 2)" curl -sS --max-time 5 "http://198.18.$K.$n:8080/" ||
    fail "$n" "web's published port 8080 does not answer on node$n"
done
# site has one task, on a worker; node1 (the manager) runs none of it, yet its port
# 8081 answers, and the task sees the client's own address (Swarm would show an
# address of its ingress sandbox).
on 1 service create --name site --constraint node.role==worker --publish 8081:80 busybox:latest \
  sh -c 'mkdir -p /www/cgi-bin && printf "#!/bin/sh\necho Content-Type: text/plain\necho\necho served by \$(hostname) to \$REMOTE_ADDR\n" > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www'
on 1 service ps site
on 1 network ls --filter name=ingress
for n in 2 3; do
  echo "[node$n] + curl http://$MANAGER:8081/cgi-bin/ip" >&2
  out=$(nsenter --net="/run/netns/$(netns "$n")" curl -sS --max-time 5 "http://$MANAGER:8081/cgi-bin/ip") ||
    fail 1 "the published port 8081 does not answer on node1 (from node$n)"
  echo "$out"
  [[ $out == *"to 198.18.$K.$n"* || $out == *"to [::ffff:198.18.$K.$n]"* ]] ||
    fail 1 "the task did not see node$n's address: $out"
done

echo
echo "== cluster demo done; cleaning up"
