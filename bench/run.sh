#!/usr/bin/env bash
# make bench: shoal's figures beside the anchors, measured in the same run on this
# machine, printed as ratios. It never fails on speed; it fails only if something
# it measures does not work.
set -euo pipefail
BIN=${1:?usage: run.sh path/to/shoal}
N=${BENCH_N:-50}
DIR=/tmp/shoal-bench
SOCK=$DIR/exec/shoal.sock
sh_() { "$BIN" -H "unix://$SOCK" "$@"; }

cleanup() {
  set +e
  if [ -S "$SOCK" ]; then ids=$(sh_ ps -aq 2>/dev/null); [ -n "$ids" ] && sh_ rm -f $ids >/dev/null 2>&1; fi
  [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  for rt in crun runc; do $rt delete -f benchct >/dev/null 2>&1; done
  grep -o "$DIR[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  ip link del shoalbench0 2>/dev/null
  for t in iptables iptables-legacy; do
    command -v $t >/dev/null || continue
    $t -S FORWARD 2>/dev/null | grep -- 'shoalbench0' | sed 's/^-A/-D/' | while read -r rule; do eval "$t $rule"; done
  done
  nft list tables 2>/dev/null | awk '/shoalbench0/ {print $2, $3}' | while read -r fam name; do nft delete table "$fam" "$name"; done
  for c in /sys/fs/cgroup/*/shoal-bench; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  # `shoal runtime run` puts its container under the default parent /shoal
  # and leaves that parent behind; rmdir removes it only while it is empty.
  for c in /sys/fs/cgroup/*/shoal /sys/fs/cgroup/shoal; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
  rm -rf "$DIR"
}
trap cleanup EXIT
cleanup
mkdir -p "$DIR"

# median of N timings (ms) of a command
TIMELOOP='for _ in $(seq "$N"); do s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }; e=$(date +%s%N); echo $(( (e - s) / 1000 )); done'
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m/1000}'; }
median_ms() { N=$N bash -c "$TIMELOOP" timeloop "$@" | median; }
# crun 1.8 refuses hybrid cgroups when the v2 hierarchy holds a controller
# (hugetlb, here): it runs in a private mount namespace without the unified
# mount, which it then sees as plain cgroup v1, as our runtime uses it.
median_ms_v1only() { N=$N unshare -m --propagation private bash -c "umount /sys/fs/cgroup/unified 2>/dev/null; $TIMELOOP" timeloop "$@" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a/b }'; }

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

echo "== container lifecycle, median of $N (ms)"
CRUN=$(median_ms_v1only crun run --bundle "$DIR/bundle" benchct)
RUNC=$(median_ms runc run --bundle "$DIR/bundle" benchct)
OURRT=$(median_ms "$BIN" runtime --root "$DIR/rt" run --bundle "$DIR/bundle" benchct)

"$BIN" daemon --data-root "$DIR/data" --exec-root "$DIR/exec" -H "unix://$SOCK" \
  --cgroup-parent shoal-bench --bridge-name shoalbench0 --bip 198.19.251.1/24 >"$DIR/daemon.log" 2>&1 &
DPID=$!
for _ in $(seq 200); do sh_ version >/dev/null 2>&1 && break; sleep 0.05; done
sleep 1
RSS_IDLE=$(awk '/VmRSS/ {print $2}' /proc/$DPID/status)
sh_ import "$DIR/busybox.tar" busybox:latest >/dev/null
sh_ run --rm --network none busybox /bin/true >/dev/null   # warm: first layer use
SHOAL=$(median_ms "$BIN" -H "unix://$SOCK" run --rm --network none busybox /bin/true)

printf '%-58s %9s ms\n' "crun run /bin/true (anchor)" "$CRUN"
printf '%-58s %9s ms\n' "runc run /bin/true (anchor)" "$RUNC"
printf '%-58s %9s ms   %s of crun, %s of runc\n' "shoal runtime run /bin/true (our OCI runtime)" "$OURRT" "$(ratio "$OURRT" "$CRUN")" "$(ratio "$OURRT" "$RUNC")"
printf '%-58s %9s ms   %s of crun, %s of runc\n' "shoal run --rm --network none busybox /bin/true (daemon)" "$SHOAL" "$(ratio "$SHOAL" "$CRUN")" "$(ratio "$SHOAL" "$RUNC")"

echo "== daemon idle RSS"
printf '%-58s %9s MB   target < 30 MB; dockerd idle RSS: measured in this run, swarm section below\n' "shoal daemon idle RSS" "$(awk -v k="$RSS_IDLE" 'BEGIN{printf "%.1f", k/1024}')"

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

echo "== stats overhead with ${BENCH_STATS_N:-100} running containers (bench/stats.sh)"
bash "$(dirname "$0")/stats.sh" "$BIN" "$SOCK" "$DPID"

echo "== scheduler alone: 100,000 tasks onto 10,000 nodes, one pass"
SCHED=$(go test -run '^$' -bench 'BenchmarkSchedule100kOn10k$' -benchtime 3x ./scheduler/ 2>/dev/null | awk '/^BenchmarkSchedule100kOn10k/ {printf "%.0f", $3/1e6}')
printf '%-58s %9s ms   target < 1000 ms; Nomad C1M placed ~3,750 containers/s cluster-wide\n' "scheduler.Schedule 100k tasks / 10k nodes" "${SCHED:-?}"
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
bash "$(dirname "$0")/swarm.sh" "$BIN"   # one node: 100 replicas, then 100 -> 200, beside Docker Swarm

echo "== cluster on test hosts (tests/cluster_bench_test.go; Swarm figures: DESIGN.md references, not measured here)"
CLUSTER_OUT=$DIR/cluster-bench.txt
if ! SHOAL_BIN=$(readlink -f "$BIN") go test -run '^$' -bench 'Cluster' -benchtime 1x -timeout 30m ./tests/ >"$CLUSTER_OUT" 2>&1; then
  sed -n 's/^\(Benchmark[^\t]*\t\)\{0,1\}\(cluster .*\)$/\2/p' "$CLUSTER_OUT"
  echo "cluster benchmarks FAILED; the end of their output:" >&2
  tail -n 80 "$CLUSTER_OUT" >&2
  exit 1
fi
sed -n 's/^\(Benchmark[^\t]*\t\)\{0,1\}\(cluster .*\)$/\2/p' "$CLUSTER_OUT"
