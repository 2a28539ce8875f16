package ocicli

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]unix.Signal{"TERM": unix.SIGTERM, "SIGTERM": unix.SIGTERM, "15": unix.SIGTERM,
		"kill": unix.SIGKILL, "SIGUSR1": unix.SIGUSR1, "9": unix.SIGKILL} {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "NOPE", "0", "99", "-1"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) accepted", bad)
		}
	}
}

func TestCommandTree(t *testing.T) {
	c := Command()
	for _, name := range []string{"create", "start", "state", "kill", "delete", "run", "exec"} {
		if sub, _, err := c.Find([]string{name}); err != nil || sub.Name() != name {
			t.Errorf("subcommand %s missing", name)
		}
	}
	c.SetArgs([]string{"--root", t.TempDir(), "state", "nope"})
	if err := c.Execute(); err == nil {
		t.Error("state of a missing container succeeded")
	}
}
