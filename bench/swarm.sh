#!/usr/bin/env bash
# Benchmark (a) of the cluster issue: one node, a service of 100 replicas until all
# run, then scaling it 100 -> 200, for shoal beside Docker Swarm mode (Debian's
# docker.io, Engine 20.10) on the same machine, with an image imported from the same
# busybox rootfs. Both sides get the same service flags; task containers have no
# network on either side (shoal's worker defaults to --network none; dockerd runs
# with --bridge=none), and dnsrr because this kernel has no IPVS for Swarm's VIPs.
#
# Each side runs its own daemon with private roots (data, exec, socket, cgroup
# parent, links), and everything it made is removed on exit, also on failure, Ctrl-C
# or TERM; a run killed with -9 is cleaned up by the next run. It never fails on
# speed, nor when a side does not work: it prints that side's error and goes on.
#
# usage: bench/swarm.sh path/to/shoal [swarm|build|stats]
#   build: instead of the swarm, issue 8's build figures on the same two daemons: the
#   first build of a 7-instruction two-stage Dockerfile and its fully cached rebuild,
#   shoal build beside `DOCKER_BUILDKIT=0 docker build` (the classic builder), both
#   with --network none (dockerd runs without a bridge).
#   stats: the anchor of bench/stats.sh, dockerd's side only: the CPU of dockerd,
#   containerd and the containerd-shims (in Engine 20.10 the shims read the cgroups
#   for dockerd) with BENCH_STATS_N (100) containers running, idle and while `docker
#   stats` streams them, and the time of `docker stats --no-stream`; the lines
#   printed start with "anchor:" for run.sh.
#   BENCH_SWARM_REPLICAS (100; the scale step goes to twice that)
#   BENCH_SWARM_TIMEOUT  (300 s per wait), BENCH_SWARM_STALL (90 s without progress)
set -uo pipefail
BIN=${1:?usage: swarm.sh path/to/shoal}
BIN=$(readlink -f "$BIN")
MODE=${2:-swarm}
case $MODE in swarm | build | stats) ;; *) echo "swarm.sh: unknown mode $MODE (swarm, build or stats)" >&2; exit 2 ;; esac
N=${BENCH_SWARM_REPLICAS:-100}
N2=$((2 * N))
TIMEOUT=${BENCH_SWARM_TIMEOUT:-300}
STALL=${BENCH_SWARM_STALL:-90}
DIR=/tmp/shoal-bench-swarm
BEFORE=$DIR/before
# Debian's docker.io, not whatever `docker` comes first in PATH (/usr/local/bin has a
# newer CLI here).
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
DK=$DIR/docker
DSOCK=$DK/docker.sock
DCG=shoal-bench-swarm-docker
SH=$DIR/shoal
SSOCK=$SH/exec/shoal.sock
SCG=shoal-bench-swarm
SBR=shoalbswarm0
SBIP=198.19.252.1/24
# Private swarm ports, so that a swarm someone else runs on :2377 does not collide.
DPORT=23771
SPORT=23772
SERVICE_FLAGS=(--detach --no-resolve-image --name b --endpoint-mode dnsrr --stop-grace-period 1s)

dk() { DOCKER_HOST="unix://$DSOCK" DOCKER_CONFIG="$DK/client" timeout --foreground 60 "$DOCKER" "$@"; }
sh_() { timeout --foreground 60 "$BIN" -H "unix://$SSOCK" "$@"; }
log() { echo "swarm.sh: $*" >&2; }
now_us() { echo "${EPOCHREALTIME/./}"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
firstline() { grep -m1 -v '^[[:space:]]*$' | cut -c1-200; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
# ours PID: the process names our private directory (a PID from a pidfile of a run
# killed long ago may belong to someone else by now).
ours() { [ -n "${1:-}" ] && { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -q -- "$DIR/"; }
# ipt_tables BIN: the tables to look at. Listing a legacy table instantiates it in
# the kernel (and then shoal's bridge would start using iptables-legacy as well), so
# for the legacy backend only the tables that already exist.
ipt_tables() {
  case $1 in
    iptables-legacy) cat /proc/net/ip_tables_names 2>/dev/null ;;
    ip6tables-legacy) cat /proc/net/ip6_tables_names 2>/dev/null ;;
    *) echo filter nat mangle raw ;;
  esac
}

# PIDs of processes we started that outlive their daemon: any process whose command
# line names our private directory (containerd, shims) or that sits in one of our
# private cgroups (task containers).
our_pids() {
  local p f
  for f in /proc/[0-9]*/cmdline; do
    p=${f#/proc/}; p=${p%/cmdline}
    [ "$p" = $$ ] && continue
    { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q -- "$DIR/" && echo "$p"
  done
  for f in /sys/fs/cgroup/*/"$DCG" /sys/fs/cgroup/*/"$SCG"; do
    [ -d "$f" ] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# stop_pid PID SECONDS: TERM, wait, then KILL.
stop_pid() {
  local pid=$1 i
  alive "$pid" && ours "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq $((${2:-20} * 10))); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  sleep 0.2
}

# ---- host state: recorded before anything is started, restored at cleanup ------

record_before() {
  mkdir -p "$BEFORE"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$BEFORE/links"
  for t in iptables iptables-legacy ip6tables ip6tables-legacy; do
    command -v $t >/dev/null || continue
    for tb in $(ipt_tables $t); do $t -w -t $tb -S 2>/dev/null | sed "s/^/$tb /"; done >"$BEFORE/$t"
  done
  if command -v nft >/dev/null; then nft list tables 2>/dev/null >"$BEFORE/nft-tables"; fi
  cat /proc/sys/net/ipv4/ip_forward >"$BEFORE/ip_forward"
  for d in /run/docker /run/containerd; do [ -e "$d" ] && echo "$d"; done >"$BEFORE/rundirs"
  : >"$BEFORE/recorded"
}

restore_host() {
  local t tb rule c fam name
  # Links: whatever the two daemons made that was not there before. docker_gwbridge
  # and docker0 (Docker's, when it created them), the veths hanging off them, our
  # own bridge.
  for br in docker_gwbridge docker0; do
    grep -qx "$br" "$BEFORE/links" 2>/dev/null && continue
    [ -e "/sys/class/net/$br" ] || continue
    for l in /sys/class/net/"$br"/brif/*; do [ -e "$l" ] && ip link del "${l##*/}" 2>/dev/null; done
    ip link del "$br" 2>/dev/null
  done
  grep -qx "$SBR" "$BEFORE/links" 2>/dev/null || ip link del "$SBR" 2>/dev/null
  # iptables, every backend: rules naming Docker's chains or bridges, or our bridge,
  # that were not there before; then Docker's chains that were not there before.
  for t in iptables iptables-legacy ip6tables ip6tables-legacy; do
    command -v $t >/dev/null || continue
    [ -f "$BEFORE/$t" ] || continue
    for tb in $(ipt_tables $t); do
      $t -w -t $tb -S 2>/dev/null | grep -E '^-A ' | grep -E "DOCKER|docker0|docker_gwbridge|$SBR" |
        while read -r rule; do
          grep -qxF -- "$tb $rule" "$BEFORE/$t" && continue
          eval "$t -w -t $tb ${rule/#-A/-D}" 2>/dev/null
        done
      $t -w -t $tb -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}' |
        while read -r c; do
          grep -qxF -- "$tb -N $c" "$BEFORE/$t" && continue
          $t -w -t $tb -F "$c" 2>/dev/null; $t -w -t $tb -X "$c" 2>/dev/null
        done
    done
  done
  # nftables: our bridge's table, and the empty `ip filter` table that iptables-nft
  # leaves behind on first use, if it was not there before.
  if command -v nft >/dev/null && [ -f "$BEFORE/nft-tables" ]; then
    nft list tables 2>/dev/null | while read -r _ fam name; do
      grep -qx "table $fam $name" "$BEFORE/nft-tables" && continue
      case "$name" in
        *"$SBR"*) nft delete table "$fam" "$name" 2>/dev/null ;;
        filter | nat) # only when it holds no rule: nothing but table, chain, type lines and braces
          nft list table "$fam" "$name" 2>/dev/null | grep -vqE '^\s*(table |chain |type |\}|$)' ||
            nft delete table "$fam" "$name" 2>/dev/null ;;
      esac
    done
  fi
  # ip_forward: dockerd runs with --ip-forward=false; shoal's bridge turns it on (and,
  # like Docker, never off). Put back what was there, unless some other dockerd or
  # shoal daemon runs now: it may have turned it on meanwhile and need it.
  if [ -f "$BEFORE/ip_forward" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$(cat "$BEFORE/ip_forward")" ]; then
    if ps -eo args= | grep -v -- "$DIR/" | grep -qE '^[^ ]*(dockerd|shoal) (.* )?daemon|^[^ ]*dockerd( |$)'; then
      log "left net.ipv4.ip_forward=$(cat /proc/sys/net/ipv4/ip_forward) (was $(cat "$BEFORE/ip_forward")): another daemon runs"
    else
      cat "$BEFORE/ip_forward" >/proc/sys/net/ipv4/ip_forward
    fi
  fi
  # /run/docker/plugins and /run/containerd/s, which dockerd and containerd create
  # whatever their roots: only if they were not there before and are empty.
  for d in /run/docker /run/containerd; do
    grep -qx "$d" "$BEFORE/rundirs" 2>/dev/null && continue
    [ -d "$d" ] && find "$d" -depth -type d -empty -delete 2>/dev/null
  done
}

cleanup_docker() {
  local pid ids i
  pid=$(cat "$DK/dockerd.pid" 2>/dev/null)
  if alive "$pid" && [ -S "$DSOCK" ]; then
    dk service rm b >/dev/null 2>&1
    ids=$(dk ps -aq 2>/dev/null)
    [ -n "$ids" ] && dk rm -f $ids >/dev/null 2>&1
    dk swarm leave --force >/dev/null 2>&1
  fi
  stop_pid "$pid" 30
  [ -n "${DOCKERD_PID:-}" ] && stop_pid "$DOCKERD_PID" 5
}

cleanup_shoal() {
  local pid ids i
  pid=$(cat "$SH/daemon.pid" 2>/dev/null)
  if alive "$pid" && [ -S "$SSOCK" ]; then
    sh_ service rm b >/dev/null 2>&1
    for i in $(seq 300); do [ -z "$(sh_ ps -q 2>/dev/null)" ] && break; sleep 0.1; done
    ids=$(sh_ ps -aq 2>/dev/null)
    [ -n "$ids" ] && sh_ rm -f $ids >/dev/null 2>&1
    sh_ swarm leave --force >/dev/null 2>&1
  fi
  stop_pid "$pid" 20
}

CLEANED=
cleanup() {
  [ -n "$CLEANED" ] && return
  CLEANED=1
  trap '' INT TERM HUP
  set +e
  [ -d "$DIR" ] || return 0
  cleanup_shoal
  cleanup_docker
  # What outlived the daemons (shims and their containers after a crash or kill -9).
  for pid in $(our_pids); do kill -KILL "$pid" 2>/dev/null; done
  sleep 0.3
  grep -o " $DIR[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
  for c in /sys/fs/cgroup/*/"$DCG" /sys/fs/cgroup/*/"$SCG"; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  [ -f "$BEFORE/recorded" ] && restore_host
  if grep -q " $DIR" /proc/mounts; then log "mounts under $DIR remain; leaving it"; else rm -rf "$DIR"; fi
}
# A run killed with -9 left its state (and its record of the host before it).
cleanup
CLEANED=
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
mkdir -p "$DIR"
record_before

# ---- the same busybox rootfs for both (as bench/run.sh makes it) ----------------
[ -x /bin/busybox ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
ROOT=$DIR/rootfs
mkdir -p "$ROOT"/{bin,etc,tmp,proc,sys,dev}
cp /bin/busybox "$ROOT/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOT/etc/passwd"
tar --numeric-owner -C "$ROOT" -cf "$DIR/busybox.tar" .

# converge CLI WANT T0: poll `service ls` every 100 ms until WANT/WANT; sets ELAPSED
# (seconds since T0) or ERR. Gives up after TIMEOUT s, or STALL s without progress.
converge() {
  local cli=$1 want=$2 t0=$3 r last= changed fails=0 t
  changed=$(now_us)
  while :; do
    r=$($cli service ls --format '{{.Replicas}}' 2>&1)
    if [ $? -ne 0 ]; then
      fails=$((fails + 1))
      [ $fails -ge 20 ] && { ERR="service ls: $(echo "$r" | firstline)"; return 1; }
    else
      fails=0
    fi
    t=$(now_us)
    r=$(echo "$r" | head -1)
    [ "$r" = "$want/$want" ] && { ELAPSED=$(secs "$t0" "$t"); return 0; }
    [ "$r" != "$last" ] && { last=$r; changed=$t; }
    if [ $(((t - t0) / 1000000)) -ge "$TIMEOUT" ]; then ERR="timeout after $TIMEOUT s at ${r:-nothing}"; return 1; fi
    if [ $(((t - changed) / 1000000)) -ge "$STALL" ]; then ERR="no progress for $STALL s at ${r:-nothing}"; return 1; fi
    sleep 0.1
  done
}

# task_error CLI: the first error a task of b reports, for a failure message.
task_error() { $1 service ps b --format '{{.Error}}' 2>/dev/null | firstline; }

# running_check CLI CGROUP: how many tasks of b are Running, how many containers run,
# and how many processes live in the daemon's private cgroup (an `sleep` each).
running_check() {
  local tasks ctrs procs
  tasks=$($1 service ps b --filter desired-state=running --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Running')
  ctrs=$($1 ps -q 2>/dev/null | grep -c .)
  procs=$(find "/sys/fs/cgroup/pids/$2" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | grep -c .)
  echo "$tasks tasks Running, $ctrs containers, $procs processes"
}

# measure_build CLI: the first build and the cached rebuild of the same two-stage
# Dockerfile; sets FIRST, CACHED or ERR.
measure_build() { # CLI
  local cli=$1 out t0 ctx=$DIR/buildctx
  out=$($cli import "$DIR/busybox.tar" bench/busybox:latest 2>&1) || { ERR="import: $(echo "$out" | firstline)"; return 1; }
  rm -rf "$ctx" && mkdir -p "$ctx"
  seq 20000 | sort -r >"$ctx/data.txt"
  cat >"$ctx/Dockerfile" <<'EOF2'
FROM bench/busybox:latest AS build
WORKDIR /src
COPY data.txt .
RUN sort -n data.txt > sorted.txt && wc -l < sorted.txt > count.txt
FROM bench/busybox:latest
COPY --from=build /src/sorted.txt /src/count.txt /out/
CMD ["cat", "/out/count.txt"]
EOF2
  t0=$(now_us)
  out=$(DOCKER_BUILDKIT=0 $cli build -q --network none -t bench/built:1 "$ctx" 2>&1) || { ERR="build: $(echo "$out" | firstline)"; return 1; }
  FIRST=$(secs "$t0" "$(now_us)")
  t0=$(now_us)
  out=$(DOCKER_BUILDKIT=0 $cli build -q --network none -t bench/built:1 "$ctx" 2>&1) || { ERR="rebuild: $(echo "$out" | firstline)"; return 1; }
  CACHED=$(secs "$t0" "$(now_us)")
  out=$($cli run --rm --network none bench/built:1 2>&1)
  [ "$(echo "$out" | tr -d ' ')" = 20000 ] || { ERR="the built image prints $(echo "$out" | firstline), not 20000"; return 1; }
}

# measure_stats CLI: STATS_N containers; sets S_IDLE and S_STREAM (percent of one CPU
# over STATS_SECS, of dockerd's processes: our_pids) and S_ONESHOT (ms), or ERR.
STATS_N=${BENCH_STATS_N:-100}
STATS_SECS=${BENCH_STATS_SECS:-10}
measure_stats() { # CLI
  local cli=$1 out i a b hz
  hz=$(getconf CLK_TCK)
  out=$($cli import "$DIR/busybox.tar" bench/busybox:latest 2>&1) || { ERR="import: $(echo "$out" | firstline)"; return 1; }
  # Ten at a time; waited for by pid: a bare wait would wait for dockerd too.
  local pids=()
  for i in $(seq "$STATS_N"); do
    $cli run -d --network none --name "statsbench$i" bench/busybox:latest sleep 100000 >/dev/null 2>>"$DIR/run.err" &
    pids+=($!)
    if (( i % 10 == 0 )); then wait "${pids[@]}"; pids=(); fi
  done
  [ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
  [ "$($cli ps -q | wc -l)" = "$STATS_N" ] || { ERR="$STATS_N containers did not all start: $(firstline <"$DIR/run.err")"; return 1; }
  sleep 2
  a=$(our_ticks); sleep "$STATS_SECS"; b=$(our_ticks)
  S_IDLE=$(awk -v t=$((b - a)) -v hz="$hz" -v s="$STATS_SECS" 'BEGIN{printf "%.1f", t/hz/s*100}')
  a=$(our_ticks)
  DOCKER_HOST="unix://$DSOCK" DOCKER_CONFIG="$DK/client" timeout "$STATS_SECS" "$DOCKER" stats >/dev/null 2>&1
  b=$(our_ticks)
  S_STREAM=$(awk -v t=$((b - a)) -v hz="$hz" -v s="$STATS_SECS" 'BEGIN{printf "%.1f", t/hz/s*100}')
  a=$(now_us); $cli stats --no-stream >/dev/null 2>&1 || { ERR="docker stats --no-stream failed"; return 1; }
  S_ONESHOT=$(( ($(now_us) - a) / 1000 ))
}
# our_ticks: the clock ticks of user and system time of dockerd's processes (our_pids).
our_ticks() {
  local p t=0
  for p in $(our_pids); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}

# measure CLI PORT CGROUP: the service of N, then the scale to N2; sets CREATE, SCALE, CHECK1,
# CHECK2 or ERR.
measure() { # CLI PORT CGROUP
  local cli=$1 out t0
  out=$($cli import "$DIR/busybox.tar" bench/busybox:latest 2>&1) || { ERR="import: $(echo "$out" | firstline)"; return 1; }
  out=$($cli swarm init --advertise-addr 127.0.0.1 --listen-addr "127.0.0.1:$2" 2>&1) || { ERR="swarm init: $(echo "$out" | firstline)"; return 1; }
  t0=$(now_us)
  out=$($cli service create "${SERVICE_FLAGS[@]}" --replicas "$N" bench/busybox:latest sleep 3600 2>&1) ||
    { ERR="service create: $(echo "$out" | firstline)"; return 1; }
  converge "$cli" "$N" "$t0" || { local e; e=$(task_error "$cli"); ERR="$N replicas: $ERR${e:+ (task error: $e)}"; return 1; }
  CREATE=$ELAPSED
  CHECK1=$(running_check "$cli" "$3")
  t0=$(now_us)
  out=$($cli service scale --detach "b=$N2" 2>&1) || { ERR="service scale: $(echo "$out" | firstline)"; return 1; }
  converge "$cli" "$N2" "$t0" || { local e; e=$(task_error "$cli"); ERR="scale to $N2: $ERR${e:+ (task error: $e)}"; return 1; }
  SCALE=$ELAPSED
  CHECK2=$(running_check "$cli" "$3")
}

# ---- anchor: Docker Swarm mode ---------------------------------------------------
docker_side() {
  if ! dpkg -s docker.io >/dev/null 2>&1; then
    log "installing docker.io"
    # No init system may start a host-wide dockerd while it installs.
    local prc=
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; prc=1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null 2>&1
    [ -n "$prc" ] && rm -f /usr/sbin/policy-rc.d
  fi
  [ -x "$DOCKERD" ] && [ -x "$DOCKER" ] || { ERR="docker.io is not installed"; return 1; }
  [ -S /run/containerd/containerd.sock ] && log "note: a containerd runs at /run/containerd; dockerd will use it"
  mkdir -p "$DK/client"
  # deprecated-key-path (a daemon.json key only): else dockerd writes /etc/docker/key.json.
  printf '{"deprecated-key-path": "%s"}\n' "$DK/key.json" >"$DK/daemon.json"
  # --iptables=false --bridge=none --ip-forward=false: swarm mode needs none of them
  # for a dnsrr service without published ports, and nothing host-wide changes;
  # swarm init still makes docker_gwbridge and the ingress sandbox (removed at cleanup).
  setsid "$DOCKERD" --config-file "$DK/daemon.json" --data-root "$DK/data" --exec-root "$DK/exec" \
    --pidfile "$DK/dockerd.pid" -H "unix://$DSOCK" \
    --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
    --cgroup-parent "$DCG" >"$DK/dockerd.log" 2>&1 </dev/null &
  DOCKERD_PID=$!
  local i
  for i in $(seq 300); do dk version >/dev/null 2>&1 && break; alive "$DOCKERD_PID" || break; sleep 0.1; done
  if ! dk version >/dev/null 2>&1; then
    local why
    why=$( (grep -E 'level=fatal' "$DK/dockerd.log" || tail -1 "$DK/dockerd.log") | tail -1 | cut -c1-200)
    if alive "$DOCKERD_PID"; then why=${why:-no answer on $DSOCK in 30 s}; else wait "$DOCKERD_PID"; why=${why:-exit status $?}; fi
    ERR="dockerd did not start: $why"; return 1
  fi
  # Idle RSS before swarm init, as bench/run.sh measures shoal's: dockerd and the
  # containerd it started on our private roots (none of theirs when a host-wide
  # containerd serves it; the row then says so).
  sleep 1
  local p kb
  D_RSS_KB=$(awk '/^VmRSS/ {print $2}' "/proc/$DOCKERD_PID/status" 2>/dev/null)
  for p in $(our_pids); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = containerd ] || continue
    kb=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)
    D_RSS_KB=$(( ${D_RSS_KB:-0} + ${kb:-0} ))
    D_RSS_WHAT="dockerd + containerd"
  done
  case $MODE in
    build) measure_build dk ;;
    stats) measure_stats dk ;;
    *) measure dk "$DPORT" "$DCG" ;;
  esac
}

# ---- ours ------------------------------------------------------------------------
shoal_side() {
  [ -x "$BIN" ] || { ERR="$BIN is not executable"; return 1; }
  mkdir -p "$SH"
  setsid "$BIN" daemon --data-root "$SH/data" --exec-root "$SH/exec" -H "unix://$SSOCK" \
    --cgroup-parent "$SCG" --bridge-name "$SBR" --bip "$SBIP" >"$SH/daemon.log" 2>&1 </dev/null &
  echo $! >"$SH/daemon.pid"
  local pid=$! i
  for i in $(seq 300); do sh_ version >/dev/null 2>&1 && break; alive "$pid" || break; sleep 0.1; done
  if ! sh_ version >/dev/null 2>&1; then
    local why
    why=$( (grep -iE 'error|fatal|panic' "$SH/daemon.log" || tail -1 "$SH/daemon.log") | firstline)
    if alive "$pid"; then why=${why:-no answer on $SSOCK in 30 s}; else wait "$pid"; why=${why:-exit status $?}; fi
    ERR="daemon did not start: $why"; return 1
  fi
  if [ "$MODE" = build ]; then measure_build sh_; else measure sh_ "$SPORT" "$SCG"; fi
}

if [ "$MODE" = stats ]; then
  ERR= S_IDLE= S_STREAM= S_ONESHOT=
  if docker_side; then
    printf 'anchor: %-58s %9s %%   of one CPU, over %ss (dockerd, containerd, shims)\n' "dockerd CPU, $STATS_N containers running, no stats (anchor)" "$S_IDLE" "$STATS_SECS"
    printf 'anchor: %-58s %9s %%   of one CPU\n' "dockerd CPU, docker stats streaming all $STATS_N (anchor)" "$S_STREAM"
    printf 'anchor: %-58s %9s ms\n' "docker stats --no-stream of $STATS_N containers (anchor)" "$S_ONESHOT"
  else
    echo "anchor: dockerd: failed ($ERR)"
  fi
  cleanup_docker
  exit 0
fi

if [ "$MODE" = build ]; then
  echo "== builds: a 7-instruction two-stage Dockerfile, first build and cached rebuild, beside docker's classic builder"
  ERR= FIRST= CACHED=
  if docker_side; then D_FIRST=$FIRST D_CACHED=$CACHED D_ERR=; else D_FIRST= D_CACHED= D_ERR=$ERR; fi
  cleanup_docker
  ERR= FIRST= CACHED=
  if shoal_side; then S_FIRST=$FIRST S_CACHED=$CACHED S_ERR=; else S_FIRST= S_CACHED= S_ERR=$ERR; fi
  cleanup_shoal
  row() {
    if [ -z "$2" ]; then printf '%-58s %9s\n' "$1" failed
    elif [ -n "${3:-}" ]; then printf '%-58s %9s s   %s of docker'"'"'s; target <= 1.0x\n' "$1" "$2" "$(ratio "$2" "$3")"
    else printf '%-58s %9s s\n' "$1" "$2"; fi
  }
  row "docker build (classic), first build (anchor)" "$D_FIRST"
  row "shoal build, first build" "$S_FIRST" "$D_FIRST"
  row "docker build (classic), cached rebuild (anchor)" "$D_CACHED"
  row "shoal build, cached rebuild" "$S_CACHED" "$D_CACHED"
  [ -n "$D_ERR" ] && echo "docker build: failed ($D_ERR)"
  [ -n "$S_ERR" ] && echo "shoal build: failed ($S_ERR)"
  exit 0
fi

echo "== swarm, one node: a service of $N replicas until all run, then scaled to $N2"
D_RSS_KB= D_RSS_WHAT=dockerd
ERR= CREATE= SCALE= CHECK1= CHECK2=
if docker_side; then D_CREATE=$CREATE D_SCALE=$SCALE D_CHECK="$CHECK1; $CHECK2"; D_ERR=
else D_CREATE=${CREATE:-} D_SCALE= D_CHECK= D_ERR=$ERR; fi
cleanup_docker

ERR= CREATE= SCALE= CHECK1= CHECK2=
if shoal_side; then S_CREATE=$CREATE S_SCALE=$SCALE S_CHECK="$CHECK1; $CHECK2"; S_ERR=
else S_CREATE=${CREATE:-} S_SCALE= S_CHECK= S_ERR=$ERR; fi
cleanup_shoal

# As bench/run.sh prints: the anchor's line, then ours with the ratio ours/anchor.
anchor_row() { if [ -n "$2" ]; then printf '%-58s %9s s\n' "$1 (anchor)" "$2"; else printf '%-58s %9s\n' "$1 (anchor)" failed; fi; }
our_row() {
  if [ -n "$2" ] && [ -n "$3" ]; then printf '%-58s %9s s   %s of Docker Swarm\n' "$1" "$2" "$(ratio "$2" "$3")"
  elif [ -n "$2" ]; then printf '%-58s %9s s\n' "$1" "$2"
  else printf '%-58s %9s\n' "$1" failed; fi
}
anchor_row "docker service create, $N replicas all running" "$D_CREATE"
our_row "shoal service create, $N replicas all running" "$S_CREATE" "$D_CREATE"
anchor_row "docker service scale $N->$N2, all running" "$D_SCALE"
our_row "shoal service scale $N->$N2, all running" "$S_SCALE" "$D_SCALE"
if [ -n "$D_RSS_KB" ]; then printf '%-58s %9s MB   measured here; compare shoal daemon idle RSS above\n' "$D_RSS_WHAT idle RSS (anchor)" "$(awk -v k="$D_RSS_KB" 'BEGIN{printf "%.1f", k/1024}')"
else printf '%-58s %9s\n' "$D_RSS_WHAT idle RSS (anchor)" failed; fi
[ -n "$D_CHECK" ] && echo "  checked, Docker Swarm at the end of each wait: $D_CHECK"
[ -n "$S_CHECK" ] && echo "  checked, shoal at the end of each wait: $S_CHECK"
[ -n "$D_ERR" ] && echo "Docker Swarm: failed ($D_ERR)"
[ -n "$S_ERR" ] && echo "shoal: failed ($S_ERR)"
exit 0
