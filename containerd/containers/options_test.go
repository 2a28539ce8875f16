package containers

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCheckSysctl(t *testing.T) {
	for _, c := range []struct {
		key     string
		network string
		ipc     string
		ok      bool
	}{
		{"kernel.shmmax", "", "", true},
		{"kernel.sem", "", "", true},
		{"fs.mqueue.msg_max", "", "", true},
		{"net.ipv4.ip_forward", "bridge", "", true},
		{"net.ipv4.ip_forward", "host", "", false},
		{"kernel.shmmax", "", "host", false},
		{"fs.mqueue.msg_max", "", "host", false},
		{"kernel.core_pattern", "", "", false},
		{"kernel.domainname", "", "", false},
		{"vm.overcommit_memory", "", "", false},
		{"net./../kernel/core_pattern", "", "", false},
		{"net..x", "", "", false},
		{"", "", "", false},
	} {
		err := checkSysctl(Config{NetworkMode: c.network, IpcMode: c.ipc}, c.key)
		if c.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("sysctl %q (network %q, ipc %q): %v", c.key, c.network, c.ipc, err)
		}
	}
}

// TestSwapWithoutSwapAccounting builds specs over fake v1 cgroup trees with
// and without memory.memsw files (a host without swap accounting cannot be
// had here): an explicit --memory-swap is refused there, Docker's default
// (twice the memory) is dropped rather than failing the start.
func TestSwapWithoutSwapAccounting(t *testing.T) {
	fake := func(memsw bool) string {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "memory"), 0o755); err != nil {
			t.Fatal(err)
		}
		if memsw {
			if err := os.WriteFile(filepath.Join(root, "memory", "memory.memsw.limit_in_bytes"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	c := Container{ID: "0123456789abcdef", Path: "/bin/true", Config: Config{Memory: 64 << 20}}
	for _, tc := range []struct {
		memsw bool
		swap  int64
		want  int64 // -2: no swap in the spec; -3: refused
	}{
		{true, 0, 128 << 20}, {true, 96 << 20, 96 << 20}, {true, -1, -1},
		{false, 0, -2}, {false, -1, -1}, {false, 96 << 20, -3},
	} {
		c.Config.MemorySwap = tc.swap
		s, err := buildSpec(c, ocispec.ImageConfig{}, nil, fake(tc.memsw))
		switch {
		case tc.want == -3:
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("memsw %v swap %d: %v, want refused", tc.memsw, tc.swap, err)
			}
		case err != nil:
			t.Errorf("memsw %v swap %d: %v", tc.memsw, tc.swap, err)
		case tc.want == -2:
			if s.Linux.Resources.Memory.Swap != nil {
				t.Errorf("memsw %v swap %d: swap %d in the spec, want none", tc.memsw, tc.swap, *s.Linux.Resources.Memory.Swap)
			}
		case s.Linux.Resources.Memory.Swap == nil || *s.Linux.Resources.Memory.Swap != tc.want:
			t.Errorf("memsw %v swap %d: spec swap %v, want %d", tc.memsw, tc.swap, s.Linux.Resources.Memory.Swap, tc.want)
		}
	}
}
