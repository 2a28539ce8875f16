package tests

import (
	"strings"
	"testing"
)

// TestDefaultContainerCannotReachHostDevices: a root process of a default
// container has CAP_MKNOD, so it can make a node of any device in its rootfs
// (as in Docker); the device cgroup rules must refuse opening it (EPERM).
// 7:0 is /dev/loop0, a block device that opens without a backing file (the test machines' sandbox refuses the real disk
// to every process); 8:0 is the issue's /dev/sda, 1:1 /dev/mem, and
// /dev/kmsg opened for writing needs no capability: a device let through
// opens, or fails with another error than EPERM (no such device). Through
// the daemon the host's cgroup layout is used; the same attack with only the
// cgroup v2 program enforcing, reading a secret from a host block device, is
// TestDefaultContainerCannotOpenDevices in containerd/runtime.
func TestDefaultContainerCannotReachHostDevices(t *testing.T) {
	d := engine(t)
	script := `for dev in "loop b 7 0 r" "sda b 8 0 r" "mem c 1 1 r" "kmsg c 1 11 w"; do
	set -- $dev
	mknod /tmp/$1 $2 $3 $4 || continue
	if [ $5 = r ]; then out=$( (head -c 1 /tmp/$1 >/dev/null) 2>&1); else out=$( (echo shoal-devices-test >/tmp/$1) 2>&1); fi
	echo "$1: ${out:-opened}"
done`
	r := d.Run("run", "--rm", "--network", "none", "busybox", "sh", "-c", script)
	if r.Code != 0 {
		t.Fatalf("run: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 results, got: %s", r)
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, "Operation not permitted") {
			t.Errorf("device reached: %s", l)
		}
	}
}
