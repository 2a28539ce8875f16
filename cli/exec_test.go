package cli

import "testing"

// TestExecConsoleSize: exec sends the terminal's size only with -t; the
// daemon refuses a console size for an exec without a TTY ("console size
// is only supported when TTY is enabled"), which `shoal exec` run from a
// terminal without -t used to send.
func TestExecConsoleSize(t *testing.T) {
	size := [2]uint{24, 80}
	if got := execConsoleSize(false, size); got != nil {
		t.Errorf("without -t: %v, want none", *got)
	}
	if got := execConsoleSize(true, size); got == nil || *got != size {
		t.Errorf("with -t: %v, want %v", got, size)
	}
	if got := execConsoleSize(true, [2]uint{}); got != nil {
		t.Errorf("with -t, no terminal: %v, want none", *got)
	}
}
