package containers

import (
	"errors"
	"testing"
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
