package runtime

import (
	"os"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/seccomp"
)

// fullInitConfig sets every field the init config carries, each to a
// value other than its zero (nil and empty lists apart).
func fullInitConfig(t *testing.T) *initConfig {
	t.Helper()
	prog, err := seccomp.Compile(seccomp.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	u32 := func(v uint32) *uint32 { return &v }
	mode := os.FileMode(0o620)
	oom := -500
	return &initConfig{
		Mode: modeCreate, Rootfs: "/b/rootfs", Bundle: "/b", Fifo: true, UserNS: true, AttachRootfs: true, Console: "/dev/pts/3",
		NoPivot: true, MountNS: "/proc/1/ns/mnt", PidNS: "/proc/1/ns/pid", NewCgroupNS: true,
		CgroupMode: cgroups.Hybrid, CgroupRoot: "/sys/fs/cgroup", CgroupPath: "/shoal/x", Seccomp: prog,
		Spec: &specs.Spec{
			Hostname: "h", Domainname: "d",
			Root: &specs.Root{Path: "rootfs", Readonly: true},
			Process: &specs.Process{
				Terminal: true,
				User:     specs.User{UID: 1000, GID: 1001, Umask: u32(0o27), AdditionalGids: []uint32{5, 6}},
				Args:     []string{"sh", "-c", "x"}, Env: []string{"A=1", ""}, Cwd: "/w",
				Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Effective: []string{},
					Inheritable: []string{"CAP_CHOWN"}, Permitted: []string{"CAP_KILL", "CAP_CHOWN"}, Ambient: []string{"CAP_CHOWN"}},
				Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 40, Soft: 1024}},
				NoNewPrivileges: true, OOMScoreAdj: &oom,
			},
			Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid"}},
				{Destination: "/e", Type: "bind", Source: "/s", Options: []string{}}},
			Linux: &specs.Linux{
				Devices: []specs.LinuxDevice{{Path: "/dev/x", Type: "c", Major: 1, Minor: -3, FileMode: &mode, UID: u32(0), GID: u32(7)},
					{Path: "/dev/y", Type: "b", Major: 8}},
				RootfsPropagation: "rslave",
				Sysctl:            map[string]string{"net.ipv4.ip_forward": "1", "kernel.msgmax": "8192"},
				ReadonlyPaths:     []string{"/proc/sys"},
				MaskedPaths:       []string{"/proc/kcore", "/proc/keys"},
			},
		},
	}
}

func TestInitConfigRoundTrip(t *testing.T) {
	for _, cfg := range []*initConfig{fullInitConfig(t), {Mode: modeExec, Spec: &specs.Spec{Process: &specs.Process{Args: []string{"true"}}}}} {
		b, err := encodeInitConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeInitConfig(b[4:])
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, cfg) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, cfg)
		}
		// Every shorter input is refused, none panics.
		for n := 4; n < len(b); n++ {
			if _, err := decodeInitConfig(b[4:n]); err == nil {
				t.Fatalf("a config cut at %d of %d bytes was accepted", n, len(b))
			}
		}
	}
}

// TestInitSpecIsWhatTheInitGets: the parent trims the spec (initSpec) and
// the codec carries the rest; a field of the trimmed spec that the codec
// dropped would reach the init as its zero value.
func TestInitSpecIsWhatTheInitGets(t *testing.T) {
	full := fullInitConfig(t)
	spec := *full.Spec
	spec.Annotations = map[string]string{"a": "b"}
	spec.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}}
	l := *spec.Linux
	l.Resources = &specs.LinuxResources{}
	l.Seccomp = seccomp.DefaultProfile()
	spec.Linux = &l
	cfg := *full
	cfg.Spec = initSpec(&spec)
	b, err := encodeInitConfig(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeInitConfig(b[4:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Spec, full.Spec) {
		t.Errorf("the init got\n %+v\nwant\n %+v", got.Spec, full.Spec)
	}
}
