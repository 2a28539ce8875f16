package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/oci"
)

// fullSpec sets every field codeSpec carries to something other than its
// zero value, nil apart from empty where JSON keeps them apart.
func fullSpec() *specs.Spec {
	s := oci.DefaultSpec()
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	u32 := func(v uint32) *uint32 { return &v }
	u16 := func(v uint16) *uint16 { return &v }
	t := true
	n := 5
	umask := uint32(0o027)
	mode := os.FileMode(0o620)
	errno := uint(38)
	s.Process.Terminal = true
	s.Process.User = specs.User{UID: 1, GID: 2, Umask: &umask, AdditionalGids: []uint32{3, 4}}
	s.Process.Args = []string{"sh", "-c", "true"}
	s.Process.Capabilities.Ambient = []string{"CAP_CHOWN"}
	s.Process.NoNewPrivileges = true
	s.Process.ApparmorProfile = "shoal-default"
	s.Process.OOMScoreAdj = &n
	s.Process.SelinuxLabel = "label"
	s.Root.Readonly = true
	s.Hostname, s.Domainname = "h", "d"
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/v", Type: "bind", Source: "/s", Options: []string{"rbind"},
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}, GIDMappings: []specs.LinuxIDMapping{{HostID: 2000, Size: 2}}})
	hook := specs.Hook{Path: "/bin/hook", Args: []string{"hook", "x"}, Env: []string{"A=B"}, Timeout: &n}
	s.Hooks = &specs.Hooks{Prestart: []specs.Hook{hook}, CreateRuntime: []specs.Hook{hook}, CreateContainer: []specs.Hook{hook},
		StartContainer: []specs.Hook{hook}, Poststart: []specs.Hook{hook}, Poststop: []specs.Hook{hook}}
	s.Annotations = map[string]string{"a": "1", "b": ""}
	l := s.Linux
	l.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	l.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	l.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
	l.Resources = &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"}},
		Memory: &specs.LinuxMemory{Limit: i64(1 << 30), Reservation: i64(1), Swap: i64(2), Kernel: i64(3), KernelTCP: i64(4),
			Swappiness: u64(60), DisableOOMKiller: &t, UseHierarchy: &t, CheckBeforeUpdate: &t},
		CPU: &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Burst: u64(1), Period: u64(100000), RealtimeRuntime: i64(5),
			RealtimePeriod: u64(6), Cpus: "0-1", Mems: "0", Idle: i64(1)},
		Pids: &specs.LinuxPids{Limit: i64(100)},
		BlockIO: &specs.LinuxBlockIO{Weight: u16(500), LeafWeight: u16(400),
			WeightDevice:            []specs.LinuxWeightDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Weight: u16(1), LeafWeight: u16(2)}},
			ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8}, Rate: 1}},
			ThrottleWriteBpsDevice:  []specs.LinuxThrottleDevice{{Rate: 2}},
			ThrottleReadIOPSDevice:  []specs.LinuxThrottleDevice{{Rate: 3}},
			ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{Rate: 4}}},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}},
		Network:        &specs.LinuxNetwork{ClassID: u32(7), Priorities: []specs.LinuxInterfacePriority{{Name: "eth0", Priority: 1}}},
		Unified:        map[string]string{"memory.high": "max"},
	}
	l.CgroupsPath = "/shoal/x"
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/run/netns/x"})
	l.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode, UID: u32(0), GID: u32(0)}}
	l.Seccomp.DefaultErrnoRet = &errno
	l.Seccomp.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}
	l.Seccomp.ListenerPath, l.Seccomp.ListenerMetadata = "/l", "m"
	l.Seccomp.Syscalls = append(l.Seccomp.Syscalls, specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActAllow, ErrnoRet: &errno,
		Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, ValueTwo: 2, Op: specs.OpMaskedEqual}}})
	l.RootfsPropagation = "rslave"
	l.MountLabel = "ml"
	return s
}

// Every field codeSpec carries comes back as encoding/json would make it,
// so the daemon writes the file; a spec with a field codeSpec does not
// carry gets none (and an earlier one goes), and the runtime reads such a
// bundle's config.json.
func TestBundleSpecRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name  string
		spec  *specs.Spec
		carry bool
	}{
		{"default", oci.DefaultSpec(), true},
		{"every carried field", fullSpec(), true},
		{"console size", func() *specs.Spec { s := fullSpec(); s.Process.ConsoleSize = &specs.Box{Height: 1, Width: 2}; return s }(), false},
		{"intel rdt", func() *specs.Spec { s := fullSpec(); s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "x"}; return s }(), false},
		{"windows", func() *specs.Spec { s := fullSpec(); s.Windows = &specs.Windows{}; return s }(), false},
	} {
		bundle := t.TempDir()
		config, err := json.Marshal(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), config, 0o600); err != nil {
			t.Fatal(err)
		}
		// A stale file from an earlier start goes when this spec cannot have one.
		if err := os.WriteFile(filepath.Join(bundle, SpecFile), []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := WriteBundleSpec(bundle, config); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := bundleSpec(bundle, config)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (got != nil) != c.carry {
			t.Fatalf("%s: spec file written: %v, want %v", c.name, got != nil, c.carry)
		}
		var want specs.Spec
		if err := json.Unmarshal(config, &want); err != nil {
			t.Fatal(err)
		}
		if got != nil && !reflect.DeepEqual(got, &want) {
			t.Fatalf("%s: decoded spec differs from encoding/json's", c.name)
		}
		s, _, err := loadSpec(bundle)
		if err != nil || !reflect.DeepEqual(s, &want) {
			t.Fatalf("%s: loadSpec: %v", c.name, err)
		}
	}
}

// A spec file made for another config.json, or damaged, is refused, never
// used and never ignored.
func TestBundleSpecMismatchRefused(t *testing.T) {
	bundle := t.TempDir()
	config, _ := json.Marshal(oci.DefaultSpec())
	if err := WriteBundleSpec(bundle, config); err != nil {
		t.Fatal(err)
	}
	other := append([]byte{}, config...)
	other[len(other)-2] = ' '
	if _, err := bundleSpec(bundle, other); !errors.Is(err, ErrInvalid) {
		t.Fatalf("other config.json: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(bundle, SpecFile))
	for _, cut := range []int{33, len(b) / 2, len(b) - 1} {
		if err := os.WriteFile(filepath.Join(bundle, SpecFile), b[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := bundleSpec(bundle, config); !errors.Is(err, ErrInvalid) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
}

// Hostile bytes give an error or a spec: never a panic, never a length
// that allocates beyond what the bytes could hold.
func FuzzDecodeSpec(f *testing.F) {
	f.Add(encodeSpec(fullSpec()))
	f.Add(encodeSpec(oci.DefaultSpec()))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := decodeSpec(b); err == nil && s == nil {
			t.Fatal("nil spec without an error")
		}
	})
}
