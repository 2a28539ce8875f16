package containers

import (
	"errors"
	"slices"
	"testing"
)

func TestParsePS(t *testing.T) {
	out := []byte(`UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init
root        4242    4240  0 10:01 ?        00:00:00 sleep 300
1000        4243    4242  0 10:01 ?        00:00:00 sh -c echo  a b
`)
	l, err := parsePS(out, []int{4242, 4243})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"root", "4242", "4240", "0", "10:01", "?", "00:00:00", "sleep 300"},
		{"1000", "4243", "4242", "0", "10:01", "?", "00:00:00", "sh -c echo a b"},
	}
	if len(l.Processes) != 2 || !slices.Equal(l.Processes[0], want[0]) || !slices.Equal(l.Processes[1], want[1]) || len(l.Titles) != 8 {
		t.Fatalf("got %q", l)
	}
	// Thread rows (ps m) follow their process's, with "-" as their PID.
	threads := []byte("PID TTY STAT TIME COMMAND\n 1 ? - 0:01 /sbin/init\n - - Ss 0:01 -\n 7 ? - 0:00 sleep\n - - S 0:00 -\n")
	if l, err := parsePS(threads, []int{7}); err != nil || len(l.Processes) != 2 || l.Processes[0][0] != "7" || l.Processes[1][0] != "-" {
		t.Fatalf("threads: %q %v", l.Processes, err)
	}
	if _, err := parsePS([]byte("USER COMMAND\nroot init\n"), []int{1}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("no PID column: %v", err)
	}
	if _, err := parsePS([]byte("PID CMD\nabc x\n"), []int{1}); err == nil {
		t.Fatal("a PID that is no number was accepted")
	}
}

// A column renamed PID would make the host's processes pass as the
// container's.
func TestValidatePSArgs(t *testing.T) {
	for _, ok := range []string{"", "aux", "-ef", "-o pid,comm", "-o pid=PID,comm", "-o comm=COMMAND", "-opid=PID"} {
		if err := validatePSArgs(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"-o user=PID", "-o pid,comm=PID", "-o ppid=PIDS", "-ouser=PID"} {
		if err := validatePSArgs(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q accepted", bad)
		}
	}
}
