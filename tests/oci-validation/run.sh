#!/bin/sh
# Runs the opencontainers/runtime-tools v0.9.0 validation suite against
# `shoal runtime`.
#
#   tests/oci-validation/run.sh [SHOAL_BINARY]      (or SHOAL=... run.sh)
#
# Builds runtime-tools' validation tests and cmd/runtimetest from the Go module
# proxy in a temporary directory outside the repository (v0.9.0 has no go.mod;
# its tests build with the older pins below), then runs every test with
# RUNTIME pointing at a wrapper that execs `$SHOAL runtime`. Prints TAP and a
# summary line of how many pass. Exits non-zero when a test of the
# REQUIRED list fails. Needs root. KEEP=1 keeps the work directory.
set -u

SHOAL=${1:-${SHOAL:-}}
if [ -z "$SHOAL" ] || [ ! -x "$SHOAL" ]; then
	echo "usage: $0 SHOAL_BINARY (a shoal built with 'shoal init' and 'shoal runtime')" >&2
	exit 2
fi
SHOAL=$(readlink -f "$SHOAL")
[ "$(id -u)" = 0 ] || { echo "$0: must run as root" >&2; exit 2; }

REQUIRED="create state kill kill_no_effect killsig default hostname process process_user mounts
root_readonly_true linux_masked_paths linux_readonly_paths linux_devices linux_ns_nopath
linux_ns_path linux_ns_path_type linux_sysctl linux_cgroups_pids linux_cgroups_cpus"
# Tests that hang or are broken for every runtime (runtime-tools#698 etc.).
SKIP=${SKIP:-"linux_ns_itype"}
TIMEOUT=${TIMEOUT:-60}

WORK=$(mktemp -d /tmp/shoal-oci-validation.XXXXXX)
# runtime-tools unpacks a bundle per test into $TMPDIR/ocitest*; keep them in
# the work directory, which goes at exit.
mkdir -p "$WORK/tmp"
export TMPDIR=$WORK/tmp
# Containers some tests leave behind (they stop half-way) are force-deleted,
# and the cgroups runtime-tools' cgroup tests name themselves are removed.
cleanup() {
	for c in "$WORK"/state/*/; do
		[ -d "$c" ] && "$SHOAL" runtime --root "$WORK/state" delete --force "$(basename "$c")" 2>/dev/null
	done
	for d in /sys/fs/cgroup/*/shoal/testdir/cgrouptest /sys/fs/cgroup/*/shoal/testdir /sys/fs/cgroup/*/testdir/cgrouptest /sys/fs/cgroup/*/testdir; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	# The runtime's default parent, /shoal: removed when empty (a live daemon's is not).
	for d in /sys/fs/cgroup/*/shoal; do
		[ -d "$d" ] && rmdir "$d" 2>/dev/null
	done
	[ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

export GOFLAGS=-mod=mod GOWORK=off GOTOOLCHAIN=local GOPATH="${GOPATH:-$(go env GOPATH)}"
SRC=$WORK/runtime-tools
dir=$(cd "$WORK" && go mod download -json github.com/opencontainers/runtime-tools@v0.9.0 | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
[ -n "$dir" ] || { echo "$0: cannot download runtime-tools v0.9.0" >&2; exit 2; }
cp -r "$dir" "$SRC" && chmod -R u+w "$SRC"
cat > "$SRC/go.mod" <<'MOD'
module github.com/opencontainers/runtime-tools

go 1.21

require (
	github.com/opencontainers/runtime-spec v1.0.2-0.20190207185410-29686dbc5559
	github.com/opencontainers/selinux v1.8.0
	github.com/urfave/cli v1.22.14
)
MOD
(
	cd "$SRC" || exit 1
	go mod tidy >/dev/null 2>&1 || true
	CGO_ENABLED=0 go build -tags "netgo osusergo" -o runtimetest ./cmd/runtimetest || exit 1
	for t in validation/*/; do
		t=$(basename "$t")
		[ "$t" = util ] && continue
		go build -o "validation/$t/$t.t" "./validation/$t" || echo "build of $t failed" >&2
	done
) || { echo "$0: building runtime-tools failed" >&2; exit 2; }

cat > "$WORK/shoal-runtime" <<WRAP
#!/bin/sh
exec "$SHOAL" runtime --root "$WORK/state" "\$@"
WRAP
chmod +x "$WORK/shoal-runtime"

pass=0; fail=0; skip=0; failed_required=""
results=$WORK/results
: > "$results"
cd "$SRC" || exit 2
for t in validation/*/*.t; do
	name=$(basename "$t" .t)
	case " $SKIP " in *" $name "*) echo "ok - $name # SKIP hangs for every runtime"; echo "$name skip" >> "$results"; skip=$((skip+1)); continue;; esac
	echo "# $name"
	out=$(RUNTIME="$WORK/shoal-runtime" timeout "$TIMEOUT" "./$t" 2>&1)
	rc=$?
	echo "$out" | sed 's/^/    /'
	# Verdict: a non-zero exit or a "not ok" fails; a plan "1..0" with no
	# "ok" at all means nothing was validated and the reasons are in the
	# diagnostics (the hook tests report that way); "_fail" tests that
	# expect create to fail print no TAP at all and exit 0.
	if echo "$out" | grep -q '^1\.\.0 # SKIP'; then
		skip=$((skip+1)); echo "ok - $name # SKIP"; echo "$name skip" >> "$results"
	elif [ $rc -eq 0 ] && ! echo "$out" | grep -q '^not ok' &&
		{ echo "$out" | grep -q '^ok' || ! echo "$out" | grep -q '^1\.\.0$'; }; then
		pass=$((pass+1)); echo "ok - $name"; echo "$name pass" >> "$results"
	else
		fail=$((fail+1)); echo "not ok - $name (exit $rc)"; echo "$name fail" >> "$results"
		case " $(echo $REQUIRED) " in *" $name "*) failed_required="$failed_required $name";; esac
	fi
done
echo "# $skip skipped"
# Not the "N passed, N failed" form: most failures are known and explained in
# README.md; what decides is the required list below.
echo "oci-validation: $pass of $((pass+fail)) tests pass, $skip skipped; see tests/oci-validation/README.md for the $fail that fail and why"
[ -n "${RESULTS:-}" ] && cp "$results" "$RESULTS"
if [ -n "$failed_required" ]; then
	echo "required tests failed:$failed_required"
	exit 1
fi
exit 0
