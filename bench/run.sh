#!/usr/bin/env bash
# make bench: shoal's figures beside the anchors, measured in the same run on this
# machine, printed as ratios. It never fails on speed; it fails only if something
# it measures does not work.
#
# usage: bench/run.sh path/to/shoal [SECTION...]
#   SECTION: lifecycle (run/anchor medians), cpu (CPU time per container start),
#   parallel (100 x run -d), rss, stats (bench/stats.sh: the daemon's CPU while `stats` streams
#   100 containers), import, scheduler, scale, swarm, build (bench/swarm.sh build), cluster,
#   overlay (issue 7's data path: tests/overlay_bench_test.go), mesh (the routing
#   mesh: tests/mesh_bench_test.go), encrypt (encrypted beside plaintext overlay:
#   tests/encrypt_bench_test.go), registry
#   (issue 8's push/pull: tests/registry_bench_test.go); none given means all,
#   in that order.
#   BENCH_N (50) runs per median; BENCH_PARALLEL (100) containers started at once;
#   BENCH_DIR, BENCH_BRIDGE, BENCH_CGROUP, BENCH_BIP name what it makes (so that
#   two runs on one machine do not collide).
set -euo pipefail
BIN=${1:?usage: run.sh path/to/shoal [SECTION...]}
shift
SECTIONS=" ${*:-lifecycle cpu parallel rss stats import scheduler scale swarm build cluster overlay mesh encrypt registry} "
want() { [[ $SECTIONS == *" $1 "* ]]; }
for s in $SECTIONS; do
  case $s in lifecycle | cpu | parallel | rss | stats | import | scheduler | scale | swarm | build | cluster | overlay | mesh | encrypt | registry) ;;
  *) echo "run.sh: unknown section $s" >&2; exit 2 ;; esac
done
N=${BENCH_N:-50}
P=${BENCH_PARALLEL:-100}
DIR=${BENCH_DIR:-/tmp/shoal-bench}
BRIDGE=${BENCH_BRIDGE:-shoalbench0}
CGP=${BENCH_CGROUP:-shoal-bench}
BIP=${BENCH_BIP:-198.19.251.1/24}
SOCK=$DIR/exec/shoal.sock
# The runtimes' state (crun's and runc's --root, `shoal runtime --root`) on a
# tmpfs, as on a host whose /run is one (these VMs' /run is ext4 without a
# journal, where each new inode costs more the more were deleted in the last
# minutes); the daemon makes its exec root a tmpfs itself.
AR=$DIR/anchor-root
CRUN_CMD=(crun --root "$AR/crun")
RUNC_CMD=(runc --root "$AR/runc")
sh_() { "$BIN" -H "unix://$SOCK" "$@"; }
CT=${BRIDGE}ct   # crun/runc container ids: $CT, $CT-1..$CT-$P

cleanup() {
  set +e
  if [ -S "$SOCK" ]; then ids=$(sh_ ps -aq 2>/dev/null); [ -n "$ids" ] && sh_ rm -f $ids >/dev/null 2>&1; fi
  [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  for rt in crun runc; do
    $rt --root "$AR/$rt" list -q 2>/dev/null | grep -x -- "$CT\(-[0-9]*\)\{0,1\}" | while read -r id; do $rt --root "$AR/$rt" delete -f "$id" >/dev/null 2>&1; done
  done
  grep -o "$DIR[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip link del "$BRIDGE" 2>/dev/null
  for t in iptables iptables-legacy; do
    command -v $t >/dev/null || continue
    $t -S FORWARD 2>/dev/null | grep -- "$BRIDGE" | sed 's/^-A/-D/' | while read -r rule; do eval "$t $rule"; done
  done
  nft list tables 2>/dev/null | awk -v b="$BRIDGE" '$0 ~ b {print $2, $3}' | while read -r fam name; do nft delete table "$fam" "$name"; done
  for c in /sys/fs/cgroup/*/"$CGP"; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  # crun's and runc's containers of the parallel run (cgroups named after their ids).
  for c in /sys/fs/cgroup/*/"$CT"-* /sys/fs/cgroup/*/"$CT"; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
  # `shoal runtime run` puts its container under the default parent /shoal
  # and leaves that parent behind; rmdir removes it only while it is empty.
  for c in /sys/fs/cgroup/*/shoal /sys/fs/cgroup/shoal; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
  rm -rf "$DIR"
}
trap cleanup EXIT
cleanup
mkdir -p "$DIR" "$AR"
mount -t tmpfs -o mode=0700 tmpfs "$AR"

# settle: before a section whose figures a loaded machine moves most (the
# start path, the cluster, the overlay and the mesh; their anchors run in the
# same section, after the same wait), wait (at most 180 s) for the aftermath
# of the sections before it: dirty pages written (sync) and the 1-minute load
# average under 2. The build before the first section and the scale
# section leave loads of 2-30 behind them, the cluster section 15-20, the
# swarm section Docker's teardown; on this VM's ext4 without a journal,
# inodes freed in the last 60 s also make every new file slower
# (docs/engine.md, session 18). The wait and the load it ended at are
# printed with the section.
settle() {
  sync
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 180 ] && awk '{exit !($1 >= 2)}' /proc/loadavg; do sleep 5; done
  echo "  (waited $((SECONDS - t0)) s for the machine to settle: load average $(cut -d' ' -f1-3 /proc/loadavg))"
}

# median of N timings (ms) of a command
TIMELOOP='for _ in $(seq "$N"); do s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }; e=$(date +%s%N); echo $(( (e - s) / 1000 )); done'
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1000}'; }
median_ms() { N=$N bash -c "$TIMELOOP" timeloop "$@" | median; }
# crun 1.8 refuses hybrid cgroups when the v2 hierarchy holds a controller
# (hugetlb, here): it runs in a private mount namespace without the unified
# mount, which it then sees as plain cgroup v1. `shoal runtime run` is
# measured in the same view for its ratio (the same work as crun's), and on
# the hybrid host as well, where it also makes the container's cgroup on the
# unified hierarchy and loads its device program there.
V1ONLY='umount /sys/fs/cgroup/unified 2>/dev/null;'
median_ms_v1only() { N=$N unshare -m --propagation private bash -c "$V1ONLY $TIMELOOP" timeloop "$@" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a/b }'; }

# CPU time (user+sys, ms) per run of a command run N times: getrusage of the
# loop's children, so every process involved that is reaped within it counts
# (the runtime, its init, the container's process). With a daemon pid as
# well, the CPU during the loop of the daemon and of its children, live or
# reaped, is added: a shim serves many containers and outlives the loop, so
# its CPU (with that of the containers it reaped) is read from its own stat
# before and after.
CPULOOP='TIMEFORMAT="%3U %3S"; { time (for _ in $(seq "$N"); do "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }; done) ; } 2>&1 | tail -n 1'
proc_cpu() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }  # clock ticks
# tree_cpu PID: PID's clock ticks and those of its live children (a child
# that exits while this reads may be missed or counted twice: the shims are
# long-lived, and nothing else of the daemon's comes and goes in the loop).
tree_cpu() {
  local t c
  t=$(proc_cpu "$1")
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    t=$((t + $(proc_cpu "$c" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
cpu_ms() { # [-v1only] [-daemon PID] CMD...
  local pre="" dpid="" d0=0 d1=0 out
  [ "$1" = -v1only ] && { pre=$V1ONLY; shift; }
  [ "$1" = -daemon ] && { dpid=$2; shift 2; }
  [ -n "$dpid" ] && d0=$(tree_cpu "$dpid")
  if [ -n "$pre" ]; then out=$(N=$N unshare -m --propagation private bash -c "$pre $CPULOOP" cpuloop "$@")
  else out=$(N=$N bash -c "$CPULOOP" cpuloop "$@"); fi
  [ -n "$dpid" ] && d1=$(tree_cpu "$dpid")
  echo "$out" | awk -v n="$N" -v dt=$((d1 - d0)) -v hz="$(getconf CLK_TCK)" '{printf "%.1f", (($1 + $2) * 1000 + dt * 1000 / hz) / n}'
}

# The same busybox rootfs for everyone.
ROOT=$DIR/bundle/rootfs
mkdir -p "$ROOT"/{bin,etc,tmp,proc,sys,dev}
cp /bin/busybox "$ROOT/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOT/etc/passwd"
tar --numeric-owner -C "$ROOT" -cf "$DIR/busybox.tar" .

# An OCI bundle as runc and crun expect it: runc's default spec, /bin/true, no tty,
# no network namespace sharing changes (a new netns, as --network none).
( cd "$DIR/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"\/bin\/true"/' config.json )
grep -q '"/bin/true"' "$DIR/bundle/config.json" || { echo "could not write the bundle's args" >&2; exit 1; }

if want lifecycle || want cpu || want parallel || want rss || want import || want stats; then
  "$BIN" daemon --data-root "$DIR/data" --exec-root "$DIR/exec" -H "unix://$SOCK" \
    --cgroup-parent "$CGP" --bridge-name "$BRIDGE" --bip "$BIP" >"$DIR/daemon.log" 2>&1 &
  DPID=$!
  for _ in $(seq 200); do sh_ version >/dev/null 2>&1 && break; sleep 0.05; done
  sh_ version >/dev/null 2>&1 || { echo "the daemon did not start:" >&2; tail -n 5 "$DIR/daemon.log" >&2; exit 1; }
  sleep 1
  RSS_IDLE=$(awk '/VmRSS/ {print $2}' /proc/$DPID/status)
  sh_ import "$DIR/busybox.tar" busybox:latest >/dev/null
  sh_ run --rm --network none busybox /bin/true >/dev/null   # warm: first layer use
fi
SHX=("$BIN" -H "unix://$SOCK")
RUNRM=("${SHX[@]}" run --rm --network none busybox /bin/true)

if want lifecycle; then
  echo "== container lifecycle, median of $N (ms)"
  settle
  CRUN=$(median_ms_v1only "${CRUN_CMD[@]}" run --bundle "$DIR/bundle" "$CT")
  RUNC=$(median_ms "${RUNC_CMD[@]}" run --bundle "$DIR/bundle" "$CT")
  OURRT=$(median_ms_v1only "$BIN" runtime --root "$AR/shoal" run --bundle "$DIR/bundle" "$CT")
  OURRT_HY=$(median_ms "$BIN" runtime --root "$AR/shoal" run --bundle "$DIR/bundle" "$CT")
  SHOAL=$(median_ms "${RUNRM[@]}")
  printf '%-58s %9s ms\n' "crun run /bin/true (anchor)" "$CRUN"
  printf '%-58s %9s ms\n' "runc run /bin/true (anchor)" "$RUNC"
  printf '%-58s %9s ms   %s of crun, %s of runc; target <= 1.0x crun\n' "shoal runtime run /bin/true (our OCI runtime)" "$OURRT" "$(ratio "$OURRT" "$CRUN")" "$(ratio "$OURRT" "$RUNC")"
  printf '%-58s %9s ms   %s of crun (the unified hierarchy too: its cgroup and device program)\n' "shoal runtime run /bin/true, hybrid cgroups" "$OURRT_HY" "$(ratio "$OURRT_HY" "$CRUN")"
  printf '%-58s %9s ms   %s of crun, %s of runc; target <= 1.5x crun\n' "shoal run --rm --network none busybox /bin/true (daemon)" "$SHOAL" "$(ratio "$SHOAL" "$CRUN")" "$(ratio "$SHOAL" "$RUNC")"
fi

if want cpu; then
  echo "== CPU time per container start, user+sys of every process involved, mean of $N (ms)"
  C_CRUN=$(cpu_ms -v1only "${CRUN_CMD[@]}" run --bundle "$DIR/bundle" "$CT")
  C_RUNC=$(cpu_ms "${RUNC_CMD[@]}" run --bundle "$DIR/bundle" "$CT")
  C_OURRT=$(cpu_ms -v1only "$BIN" runtime --root "$AR/shoal" run --bundle "$DIR/bundle" "$CT")
  C_SHOAL=$(cpu_ms -daemon "$DPID" "${RUNRM[@]}")
  C_CLI=$(cpu_ms "${SHX[@]}" version)
  printf '%-58s %9s ms\n' "crun run /bin/true (anchor)" "$C_CRUN"
  printf '%-58s %9s ms\n' "runc run /bin/true (anchor)" "$C_RUNC"
  printf '%-58s %9s ms   %s of crun\n' "shoal runtime run /bin/true" "$C_OURRT" "$(ratio "$C_OURRT" "$C_CRUN")"
  printf '%-58s %9s ms   %s of crun; target < 15 ms (CLI + daemon + shim + init)\n' "shoal run --rm --network none busybox /bin/true" "$C_SHOAL" "$(ratio "$C_SHOAL" "$C_CRUN")"
  printf '%-58s %9s ms   (the CLI process alone, part of the line above)\n' "shoal version (client)" "$C_CLI"
fi

if want parallel; then
  echo "== $P containers started at once (/bin/true, detached), containers/s"
  # Every client at once; the time is until the last has returned (its
  # container started). The containers are removed afterwards, untimed.
  par_s() { # [-v1only] SNIPPET: a command in which $i is 1..P
    local pre=""
    [ "$1" = -v1only ] && { pre=$V1ONLY; shift; }
    P=$P unshare -m --propagation private bash -c "$pre"'
      s=$(date +%s%N)
      for i in $(seq "$P"); do eval "$1" >/dev/null 2>&1 </dev/null & done
      fail=0; for j in $(jobs -p); do wait "$j" || fail=$((fail + 1)); done
      e=$(date +%s%N)
      [ "$fail" = 0 ] || { echo "FAILED: $fail of $P: $1" >&2; exit 1; }
      awk -v p="$P" -v ns=$((e - s)) "BEGIN {printf \"%.1f\", p / (ns / 1e9)}"' parloop "$1"
  }
  P_CRUN=$(par_s -v1only "crun --root '$AR/crun' run -d --bundle '$DIR/bundle' '$CT'-\$i")
  for i in $(seq "$P"); do crun --root "$AR/crun" delete -f "$CT-$i" >/dev/null 2>&1; done
  P_SHOAL=$(par_s "'$BIN' -H 'unix://$SOCK' run -d --name '$CT'-\$i --network none busybox /bin/true")
  ids=$(sh_ ps -aq); [ -n "$ids" ] && sh_ rm -f $ids >/dev/null
  printf '%-58s %9s /s\n' "crun run -d x $P (anchor)" "$P_CRUN"
  printf '%-58s %9s /s   %s of crun\n' "shoal run -d --network none busybox /bin/true x $P" "$P_SHOAL" "$(ratio "$P_SHOAL" "$P_CRUN")"
fi

if want rss; then
  echo "== daemon idle RSS"
  printf '%-58s %9s MB   target < 30 MB; dockerd idle RSS: measured in this run, swarm section below\n' "shoal daemon idle RSS" "$(awk -v k="$RSS_IDLE" 'BEGIN{printf "%.1f", k/1024}')"
fi

if want stats; then
  echo "== stats overhead with ${BENCH_STATS_N:-100} running containers (bench/stats.sh; dockerd's: bench/swarm.sh stats)"
  # The anchor first, with our daemon idle beside it: Docker Engine's processes
  # while `docker stats` streams the same number of containers.
  ANCHOR=$(bash "$(dirname "$0")/swarm.sh" "$BIN" stats 2>/dev/null | sed -n 's/^anchor: //p')
  echo "$ANCHOR"
  BENCH_STATS_ANCHOR_STREAM=$(echo "$ANCHOR" | awk '/streaming/ {for (i = 1; i <= NF; i++) if ($i == "%") {print $(i - 1); exit}}') \
    BENCH_STATS_ANCHOR_ONESHOT=$(echo "$ANCHOR" | awk '/--no-stream/ {for (i = 1; i <= NF; i++) if ($i == "ms") {print $(i - 1); exit}}') \
    bash "$(dirname "$0")/stats.sh" "$BIN" "$SOCK" "$DPID"
fi

if want import; then
  echo "== import of a 50 MB rootfs"
  BIG=$DIR/big
  cp -a "$ROOT" "$BIG"
  head -c 48000000 /dev/urandom > "$BIG/blob"
  tar --numeric-owner -C "$BIG" -cf "$DIR/big.tar" .
  s=$(date +%s%N); sh_ import "$DIR/big.tar" big:latest >/dev/null; e=$(date +%s%N)
  IMP=$(( (e - s) / 1000000 ))
  s=$(date +%s%N); mkdir -p "$DIR/untar" && tar -C "$DIR/untar" -xf "$DIR/big.tar" && sync -f "$DIR/untar"; e=$(date +%s%N)
  UNTAR=$(( (e - s) / 1000000 ))
  printf '%-58s %9s ms\n' "tar -x + sync of the same archive (anchor)" "$UNTAR"
  printf '%-58s %9s ms   %s of tar -x\n' "shoal import 50 MB rootfs" "$IMP" "$(ratio "$IMP" "$UNTAR")"
fi

if want scheduler; then
  echo "== scheduler alone: 100,000 tasks onto 10,000 nodes, one pass"
  SCHED=$(go test -run '^$' -bench 'BenchmarkSchedule100kOn10k$' -benchtime 3x ./scheduler/ 2>/dev/null | awk '/^BenchmarkSchedule100kOn10k/ {printf "%.0f", $3/1e6}')
  printf '%-58s %9s ms   target < 1000 ms; Nomad C1M placed ~3,750 containers/s cluster-wide\n' "scheduler.Schedule 100k tasks / 10k nodes" "${SCHED:-?}"
fi

if want scale; then
  echo "== 3 managers (in-process raft, mTLS) + simulated nodes (manager/scale_bench_test.go)"
  # SHOAL_SCALE_NODES / SHOAL_SCALE_TASKS (default 1,000 / 100,000) make it smaller on a small machine.
  SCALE_OUT=$DIR/scale-bench.txt
  if ! SHOAL_SCALE_BENCH=1 go test -count=1 -run '^TestScaleBench$' -v -timeout 30m ./manager/ >"$SCALE_OUT" 2>&1; then
    grep '^scale: ' "$SCALE_OUT" | sed 's/^scale: //'
    echo "scale benchmark FAILED; the end of its output:" >&2
    tail -n 40 "$SCALE_OUT" >&2
    exit 1
  fi
  grep '^scale: ' "$SCALE_OUT" | sed 's/^scale: //'
fi

if want swarm; then
  bash "$(dirname "$0")/swarm.sh" "$BIN"   # one node: 100 replicas, then 100 -> 200, beside Docker Swarm
fi

if want build; then
  bash "$(dirname "$0")/swarm.sh" "$BIN" build   # first and cached build beside docker's classic builder
fi


if want cluster; then
  echo "== cluster on test hosts (tests/cluster_bench_test.go; Swarm figures: DESIGN.md references, not measured here)"
  settle
  CLUSTER_OUT=$DIR/cluster-bench.txt
  if ! SHOAL_BIN=$(readlink -f "$BIN") go test -run '^$' -bench 'Cluster' -benchtime 1x -timeout 30m ./tests/ >"$CLUSTER_OUT" 2>&1; then
    sed -n 's/^\(Benchmark[^\t]*\t\)\{0,1\}\(cluster .*\)$/\2/p' "$CLUSTER_OUT"
    echo "cluster benchmarks FAILED; the end of their output:" >&2
    tail -n 80 "$CLUSTER_OUT" >&2
    exit 1
  fi
  sed -n 's/^\(Benchmark[^\t]*\t\)\{0,1\}\(cluster .*\)$/\2/p' "$CLUSTER_OUT"
fi

# Go benchmarks on test hosts (tests/*_bench_test.go) whose names match $2,
# for section $1: their result lines (bench_lines) go to stdout; on failure,
# the end of their output too.
go_bench() {
  local out=$DIR/$1-bench.txt
  if ! SHOAL_BIN=$(readlink -f "$BIN") go test -run '^$' -bench "$2" -benchtime 1x -timeout 30m ./tests/ >"$out" 2>&1; then
    bench_lines "$1" "$out"
    echo "$1 benchmarks FAILED; the end of their output:" >&2
    tail -n 80 "$out" >&2
    exit 1
  fi
  bench_lines "$1" "$out"
}
# The lines of section $1 in file $2, without the "BenchmarkX-N <tab>" that
# go test may put before a benchmark's first line.
bench_lines() { sed -n "s/^\(Benchmark[^\t]*\t\)\{0,1\}\(\(== \)\{0,1\}$1 .*\)\$/\2/p" "$2"; }

if want overlay; then
  echo "== overlay data path on test hosts (tests/overlay_bench_test.go; iperf3, TCP ping-pong; ratios vs a kernel VXLAN pair)"
  settle
  # 3 rounds of 5 s per path, taking turns (BENCH_IPERF_ROUNDS): one 10 s run
  # each moved by 10-20 % with the machine's load.
  BENCH_IPERF_SECONDS=${BENCH_IPERF_SECONDS:-5} go_bench overlay '^BenchmarkOverlay'
fi

if want mesh; then
  echo "== routing mesh on test hosts (tests/mesh_bench_test.go; ab through a node without the task vs direct to the task's node)"
  settle
  go_bench mesh '^BenchmarkMesh'
fi

if want encrypt; then
  echo "== encrypted overlay on test hosts (tests/encrypt_bench_test.go; iperf3 task to task, encrypted vs plaintext overlay)"
  go_bench encrypt '^BenchmarkEncryptOverlay'
fi

if want registry; then
  echo "== registry push/pull on test hosts (tests/registry_bench_test.go; beside docker-registry and skopeo)"
  go_bench registry '^BenchmarkRegistry'
fi
