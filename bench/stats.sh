#!/usr/bin/env bash
# The stats overhead: the daemon's CPU while `shoal stats` streams the usage
# of N running containers (one sample per container per second), against the
# same daemon idle with them. Called by run.sh with its daemon; removes the
# containers it made.
set -euo pipefail
BIN=${1:?usage: stats.sh path/to/shoal SOCKET DAEMON_PID}
SOCK=${2:?}
DPID=${3:?}
COUNT=${BENCH_STATS_N:-100}
SECS=${BENCH_STATS_SECS:-10}
sh_() { "$BIN" -H "unix://$SOCK" "$@"; }
# CPU seconds (user+sys) the daemon has used, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$DPID/stat"; }
hz=$(getconf CLK_TCK)
ids=()
trap '[ ${#ids[@]} -gt 0 ] && sh_ rm -f "${ids[@]}" >/dev/null 2>&1 || true' EXIT
for i in $(seq "$COUNT"); do
  ids+=("$(sh_ run -d --network none --name "statsbench$i" busybox sleep 100000)")
done
sleep 2
a=$(ticks); sleep "$SECS"; b=$(ticks)
IDLE=$(awk -v t=$((b - a)) -v hz="$hz" -v s="$SECS" 'BEGIN{printf "%.1f", t/hz/s*100}')
a=$(ticks)
timeout "$SECS" "$BIN" -H "unix://$SOCK" stats >/dev/null 2>&1 || true
b=$(ticks)
STREAM=$(awk -v t=$((b - a)) -v hz="$hz" -v s="$SECS" 'BEGIN{printf "%.1f", t/hz/s*100}')
s=$(date +%s%N); sh_ stats --no-stream >/dev/null; e=$(date +%s%N)
ONESHOT=$(( (e - s) / 1000000 ))
printf '%-58s %9s %%   of one CPU, over %ss\n' "daemon CPU, $COUNT containers running, no stats" "$IDLE" "$SECS"
# Ratios to dockerd's figures (bench/swarm.sh stats), when run.sh has them.
vs() { [ -n "${2:-}" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "; %.2fx of dockerd'"'"'s", a / b }'; }
printf '%-58s %9s %%   of one CPU (%s samples/s)%s\n' "daemon CPU, shoal stats streaming all $COUNT" "$STREAM" "$COUNT" "$(vs "$STREAM" "${BENCH_STATS_ANCHOR_STREAM:-}")"
printf '%-58s %9s ms  (two samples a second apart per container, in parallel)%s\n' "shoal stats --no-stream of $COUNT containers" "$ONESHOT" "$(vs "$ONESHOT" "${BENCH_STATS_ANCHOR_ONESHOT:-}")"
