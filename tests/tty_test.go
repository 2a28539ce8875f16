package tests

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// terminal is a real terminal for the CLI: a tmux server of its own
// (private socket) with one window running a command.
type terminal struct {
	t      *testing.T
	socket string // tmux -L name
}

// newTerminal starts cmd in a detached tmux session of the given size; the
// server is killed when the test ends.
func newTerminal(t *testing.T, d *harness.Daemon, width, height int, cmd string) *terminal {
	t.Helper()
	tm := &terminal{t: t, socket: "shoaltty-" + d.Name}
	// remain-on-exit keeps the pane (and what it printed) after the CLI ends.
	tm.tmux("new-session", "-d", "-s", "s", "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), cmd)
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	tm.tmux("set-option", "-t", "s", "remain-on-exit", "on")
	return tm
}

func (tm *terminal) tmux(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is what the terminal shows.
func (tm *terminal) screen() string { return tm.tmux("capture-pane", "-p", "-t", "s") }

// keys types text (tmux key names: "Enter", "C-p").
func (tm *terminal) keys(keys ...string) { tm.tmux(append([]string{"send-keys", "-t", "s"}, keys...)...) }

// waitScreen waits until the screen holds want.
func (tm *terminal) waitScreen(want string) string {
	tm.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := tm.screen()
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("terminal never showed %q; screen:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dead reports whether the command in the terminal has ended.
func (tm *terminal) dead() bool {
	return strings.TrimSpace(tm.tmux("display-message", "-p", "-t", "s", "#{pane_dead}")) == "1"
}

func (tm *terminal) waitDead() {
	tm.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !tm.dead() {
		if time.Now().After(deadline) {
			tm.t.Fatalf("the CLI in the terminal did not end; screen:\n%s", tm.screen())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cli(d *harness.Daemon, args ...string) string {
	return d.Bin + " -H unix://" + d.Socket + " " + strings.Join(args, " ")
}

// TestTTYRunInteractive drives `shoal run -it busybox sh` from a real
// terminal: a command's output, the size (initial and after a resize),
// ctrl-p ctrl-q detaching with the container left running, attach again,
// exec -it, then exit and the logs of the TTY container as one stream.
func TestTTYRunInteractive(t *testing.T) {
	d := engine(t)
	defer d.Run("rm", "-f", "ttyc")
	tm := newTerminal(t, d, 91, 27, cli(d, "run", "-it", "--name", "ttyc", "busybox", "sh"))
	tm.waitScreen("/ #")
	tm.keys("echo hello-$((6*7))", "Enter")
	tm.waitScreen("hello-42")
	tm.keys("stty size; tty; echo TERM=$TERM", "Enter")
	tm.waitScreen("27 91")
	tm.waitScreen("TERM=xterm")

	tm.tmux("resize-window", "-t", "s", "-x", "103", "-y", "31")
	// The CLI follows SIGWINCH; the shell sees the new size.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tm.keys("clear; stty size", "Enter")
		time.Sleep(200 * time.Millisecond)
		if strings.Contains(tm.screen(), "31 103") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("size after resize; screen:\n%s", tm.screen())
		}
	}

	// ctrl-p ctrl-q: the CLI ends (exit 0), the container runs on.
	tm.keys("C-p", "C-q")
	tm.waitDead()
	if st := strings.TrimSpace(tm.tmux("display-message", "-p", "-t", "s", "#{pane_dead_status}")); st != "0" {
		t.Fatalf("run -it exit status after detach: %s; screen:\n%s", st, tm.screen())
	}
	if got := strings.TrimSpace(d.Must("inspect", "-f", "{{.State.Running}}", "ttyc")); got != "true" {
		t.Fatalf("container after detach: running=%s", got)
	}

	// exec -it in it, with its own terminal.
	ex := newTerminalNamed(t, d, "x", cli(d, "exec", "-it", "ttyc", "sh"))
	ex.waitScreen("/ #")
	ex.keys("stty size; echo in-exec-$((2+3))", "Enter")
	ex.waitScreen("in-exec-5")
	ex.waitScreen("24 80")
	ex.keys("exit 3", "Enter")
	ex.waitDead()
	if st := strings.TrimSpace(ex.tmux("display-message", "-p", "-t", "s", "#{pane_dead_status}")); st != "3" {
		t.Fatalf("exec -it exit status: %s, want 3", st)
	}

	// Attach again, with other detach keys; then exit the shell.
	at := newTerminalNamed(t, d, "a", cli(d, "attach", "--detach-keys", "ctrl-x,x", "ttyc"))
	time.Sleep(300 * time.Millisecond)
	at.keys("echo back-$((10+1))", "Enter")
	at.waitScreen("back-11")
	at.keys("C-x", "x")
	at.waitDead()
	at2 := newTerminalNamed(t, d, "b", cli(d, "attach", "ttyc"))
	time.Sleep(300 * time.Millisecond)
	at2.keys("exit 5", "Enter")
	at2.waitDead()
	if st := strings.TrimSpace(at2.tmux("display-message", "-p", "-t", "s", "#{pane_dead_status}")); st != "5" {
		t.Fatalf("attach exit status: %s, want 5; screen:\n%s", st, at2.screen())
	}
	if got := strings.TrimSpace(d.Must("inspect", "-f", "{{.State.ExitCode}}", "ttyc")); got != "5" {
		t.Fatalf("exit code %s, want 5", got)
	}

	// The log is the terminal's one stream: echo and output, with CRLF.
	r := d.Run("logs", "ttyc")
	if r.Code != 0 || !strings.Contains(r.Stdout, "hello-42\r\n") || !strings.Contains(r.Stdout, "back-11") || r.Stderr != "" {
		t.Fatalf("logs of the TTY container: %s", r)
	}
}

// newTerminalNamed is newTerminal at 80x24 with its own tmux server.
func newTerminalNamed(t *testing.T, d *harness.Daemon, name, cmd string) *terminal {
	t.Helper()
	tm := &terminal{t: t, socket: "shoaltty-" + d.Name + "-" + name}
	tm.tmux("new-session", "-d", "-s", "s", "-x", "80", "-y", "24", cmd)
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	tm.tmux("set-option", "-t", "s", "remain-on-exit", "on")
	return tm
}
