#!/bin/sh
# Runs the OCI distribution-spec conformance suite (v1.1.1) against the
# cluster registry's handler (manager/registry), with pull, push, content
# discovery and content management enabled.
#
#   tests/registry-conformance/run.sh
#
# Builds the suite with `go test -c` from the Go module cache (downloaded
# through the module proxy) in a temporary directory outside the repository,
# then runs manager/registry's TestConformance, which serves a Handler on a
# loopback port and runs the suite against it. CONFORMANCE_TEST=PATH uses an
# already built conformance.test instead. When the module proxy does not serve
# the suite, the script fails, or with OPTIONAL=1 says so and exits 0
# (make test does not set it).
# REPORT=DIR keeps junit.xml and report.html. KEEP=1 keeps the work directory.
set -u
MOD=github.com/opencontainers/distribution-spec/conformance
VERSION=v1.1.1
# The suite is a nested module and distribution-spec tags no
# "conformance/v1.1.1", so the module proxy knows the v1.1.1 commit only by
# its pseudo-version.
PSEUDO=v0.0.0-20250123160558-a139cc423184
# The proxy this project builds with refuses both (403) but serves a later
# commit of the suite (2026-08-31), which still runs the v1.1 specs (its
# "legacy" runner) and more: that one is taken when v1.1.1 cannot be had,
# and the output says which version ran.
LATER=v0.0.0-20260831232431-97274622c111

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/shoal-registry-conformance.XXXXXX)
cleanup() { [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT

BIN=${CONFORMANCE_TEST:-}
if [ -z "$BIN" ]; then
	export GOFLAGS=-mod=mod GOWORK=off GOTOOLCHAIN=local GOPATH="${GOPATH:-$(go env GOPATH)}"
	dir=
	for v in $VERSION $PSEUDO $LATER; do
		[ -n "$dir" ] || { dir=$(cd "$WORK" && go mod download -json "$MOD@$v" 2>/dev/null | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); ran=$v; }
	done
	echo "registry-conformance: the suite at $MOD@$ran"
	if [ -z "$dir" ]; then
		msg="cannot download $MOD@$VERSION through the module proxy ($(go env GOPROXY)); set CONFORMANCE_TEST to a conformance.test built from distribution-spec $VERSION"
		if [ -n "${OPTIONAL:-}" ]; then
			echo "registry-conformance: SKIPPED: $msg"
			exit 0
		fi
		echo "$0: $msg" >&2
		exit 2
	fi
	cp -r "$dir" "$WORK/src" && chmod -R u+w "$WORK/src"
	(cd "$WORK/src" && go test -c -o "$WORK/conformance.test" .) ||
		{ echo "$0: building the conformance suite failed" >&2; exit 2; }
	BIN=$WORK/conformance.test
fi
BIN=$(readlink -f "$BIN")

cd "$ROOT" || exit 2
out=$(GOFLAGS=-buildvcs=false REGISTRY_CONFORMANCE_BIN="$BIN" REGISTRY_CONFORMANCE_REPORT="${REPORT:-$WORK/report}" \
	go test -count=1 -v -run '^TestConformance$' ./manager/registry 2>&1)
rc=$?
# The suite's summary line ("Ran N of M Specs", "N Passed | N Failed ...").
summary=$(echo "$out" | sed 's/\x1b\[[0-9;]*m//g' | grep -E 'Ran [0-9]+ of|Passed \||OCI Conformance Result|^ *(Pass|FAIL|Error|Skip|Disabled|Total)\.\.\.' | sed 's/^ *//; s/\.\.\.*:  */ /')
if [ $rc -ne 0 ]; then
	echo "$out"
	echo "registry-conformance: FAILED: $summary" | tr '\n' ' '; echo
	exit 1
fi
echo "registry-conformance: $summary" | tr '\n' ' '; echo
