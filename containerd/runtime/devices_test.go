package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
)

// deviceAttack is what a root process of a default container tries: make
// nodes of devices it was not given (CAP_MKNOD is in Docker's default set
// and /tmp is on the rootfs) and open them. mknod itself is allowed, as in
// Docker (the 'm' rules): the open must be refused. $1 $2 is a host block
// device holding a secret. sda (8:0, the example) has no driver on
// most test hosts, and neither has /dev/mem on some kernels: without
// enforcement their open fails with ENXIO, not EPERM. /dev/kmsg opened for
// writing needs no capability and shows a char device that got through.
const deviceAttack = `
try() {
	name=$1 mode=$2; shift 2
	busybox mknod /tmp/$name "$@" || { echo "$name: mknod failed"; return; }
	if [ $mode = r ]; then (exec 3</tmp/$name) 2>/tmp/err; else (exec 3>/tmp/$name) 2>/tmp/err; fi
	if [ $? = 0 ]; then
		echo "$name: opened, read '$(busybox head -c 32 /tmp/$name 2>/dev/null | busybox tr -dc a-z-)'"
	else
		echo "$name: $(cat /tmp/err)"
	fi
}
try disk r b $1 $2
try sda r b 8 0
try mem r c 1 1
try kmsg w c 1 11
if echo x >/dev/null && [ "$(busybox head -c 4 /dev/urandom | busybox wc -c)" = 4 ]; then
	echo "default devices work"
fi
`

// hostSecretDevice attaches a loop device to a file starting with
// "host-secret" and returns its numbers; the device is detached when the
// test ends. A loop device and not the host's disk: the test machines'
// sandbox may itself refuse the disk to every process.
func hostSecretDevice(t *testing.T) (uint32, uint32) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, 1<<16)
	copy(data, "host-secret")
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device: losetup: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		t.Fatalf("stat %q: %v", loop, err)
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev)
}

// TestDefaultContainerCannotOpenDevices runs the attack in a container with
// Docker's default spec twice: with the host's cgroups (on this hybrid host
// the v1 devices controller, plus the BPF program on the unified cgroup), and
// with only the unified hierarchy as the cgroup root, as on a cgroup v2 host
// (where the BPF program is all there is). Both must refuse every open with
// EPERM, the program must be attached, and the cgroup gone once the
// container is.
func TestDefaultContainerCannotOpenDevices(t *testing.T) {
	requireRoot(t)
	major, minor := hostSecretDevice(t)
	modes := map[string]string{"host": cgroups.DefaultRoot}
	switch cgroups.Detect() {
	case cgroups.Hybrid:
		modes["unified only"] = filepath.Join(cgroups.DefaultRoot, "unified")
	case cgroups.Legacy, cgroups.Unavailable:
		t.Skip("no cgroup v2 tree on this host")
	}
	for name, root := range modes {
		t.Run(name, func(t *testing.T) {
			r := newRuntime(t)
			r.CgroupRoot = root
			unified := root
			if cgroups.DetectAt(root) == cgroups.Hybrid {
				unified = filepath.Join(root, "unified")
			}
			t.Cleanup(func() { removeUnifiedParent(unified, r.CgroupParent) })
			bundle := newBundle(t, nil, "sh", "-c", deviceAttack, "sh", fmt.Sprint(major), fmt.Sprint(minor))
			o := newOutput(t)
			c := ctx(t)
			if err := r.Create(c, "dev", bundle, o.opts()); err != nil {
				t.Fatal(err)
			}
			cg, err := r.Cgroup("dev")
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(unified, cg.Path())
			ids, err := cgroups.DeviceProgramIDs(dir)
			if err != nil || len(ids) != 1 {
				t.Errorf("device programs on %s: %v, %v; want one", dir, ids, err)
			}
			if err := r.Start(c, "dev"); err != nil {
				t.Fatal(err)
			}
			code, err := r.Wait(c, "dev")
			stdout, stderr := o.String()
			if err != nil || code != 0 {
				t.Fatalf("attack script: code %d, %v, stderr %q", code, err, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(lines) != 5 || lines[4] != "default devices work" {
				t.Fatalf("attack printed %q", stdout)
			}
			for _, l := range lines[:4] {
				if !strings.HasSuffix(l, "Operation not permitted") {
					t.Errorf("device not refused: %s", l)
				} else {
					t.Logf("refused: %s", l)
				}
			}
			if err := r.Delete(c, "dev", false); err != nil {
				t.Fatal(err)
			}
			// Removing the cgroup releases the program
			// (TestV2ManagerDevices, TestV1Real in containerd/cgroups).
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("unified cgroup %s left after delete: %v", dir, err)
			}
		})
	}
}

// removeUnifiedParent removes the test's cgroup parent from a unified tree
// given as the cgroup root (newRuntime's cleanup looks one level down, for
// v1 hierarchies).
func removeUnifiedParent(unified, parent string) {
	dir := filepath.Join(unified, parent)
	subs, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, s := range subs {
		if fi, err := os.Stat(s); err == nil && fi.IsDir() {
			_ = unix.Rmdir(s)
		}
	}
	_ = unix.Rmdir(dir)
}

func TestDefaultDevicesNotRepeated(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	rule := func(allow bool, typ string, major, minor *int64, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: major, Minor: minor, Access: access}
	}
	denyAll := rule(false, "", nil, nil, "rwm")
	// Docker's default rules: every always-allowed rule is there, but the
	// final deny of c 10:229 may touch "c *:* m", which is appended again.
	docker := append([]specs.LinuxDeviceCgroup{denyAll}, alwaysAllowed...)
	docker = append(docker, rule(true, "c", n(10), n(200), "rwm"), rule(false, "c", n(10), n(229), "rwm"))
	got := withDefaultDevices(&specs.LinuxResources{Devices: docker}).Devices
	if len(got) != len(docker)+1 || !reflect.DeepEqual(got[len(docker)], alwaysAllowed[0]) {
		t.Errorf("docker's rules: %d rules, want %d (the given ones, then %+v)", len(got), len(docker)+1, alwaysAllowed[0])
	}
	// A rule followed by a deny that covers it is granted again.
	oneThenDeny := []specs.LinuxDeviceCgroup{rule(true, "c", n(1), n(3), "rwm"), denyAll}
	got = withDefaultDevices(&specs.LinuxResources{Devices: oneThenDeny}).Devices
	if len(got) != 2+len(alwaysAllowed) {
		t.Errorf("allow then deny all: %d rules, want %d", len(got), 2+len(alwaysAllowed))
	}
	// The same rule last stays single.
	denyThenOne := []specs.LinuxDeviceCgroup{denyAll, rule(true, "c", n(1), n(3), "rwm")}
	got = withDefaultDevices(&specs.LinuxResources{Devices: denyThenOne}).Devices
	if len(got) != 2+len(alwaysAllowed)-1 {
		t.Errorf("deny all then allow c 1:3: %d rules, want %d", len(got), 2+len(alwaysAllowed)-1)
	}
	// A deny of another device leaves it alone; one of the same major and
	// any minor does not.
	for _, tc := range []struct {
		deny specs.LinuxDeviceCgroup
		want int
	}{
		{rule(false, "c", n(1), n(4), "rwm"), 3 + len(alwaysAllowed) - 1},
		{rule(false, "c", n(1), nil, "w"), 3 + len(alwaysAllowed)},
		{rule(false, "b", n(1), n(3), "rwm"), 3 + len(alwaysAllowed) - 1},
	} {
		rules := []specs.LinuxDeviceCgroup{denyAll, rule(true, "c", n(1), n(3), "rwm"), tc.deny}
		if got := withDefaultDevices(&specs.LinuxResources{Devices: rules}).Devices; len(got) != tc.want {
			t.Errorf("allow c 1:3 then %+v: %d rules, want %d", tc.deny, len(got), tc.want)
		}
	}
}
