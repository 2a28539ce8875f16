package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// terminal is a real terminal for the CLI: a tmux server of its own
// (private socket) with one window running a command.
type terminal struct {
	t      *testing.T
	socket string // tmux -S path, in the test's temporary directory
}

// newTerminal starts cmd in a detached tmux session of the given size; the
// server is killed when the test ends.
func newTerminal(t *testing.T, d *harness.Daemon, width, height int, cmd string) *terminal {
	t.Helper()
	tm := &terminal{t: t, socket: filepath.Join(t.TempDir(), "tmux")}
	// remain-on-exit keeps the pane (and what it printed) after the CLI ends.
	tm.tmux("new-session", "-d", "-s", "s", "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), cmd+"; echo EXIT=$?")
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", tm.socket, "kill-server").Run() })
	tm.tmux("set-option", "-t", "s", "remain-on-exit", "on")
	return tm
}

func (tm *terminal) tmux(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is what the terminal shows.
func (tm *terminal) screen() string { return tm.tmux("capture-pane", "-p", "-t", "s") }

// keys types text (tmux key names: "Enter", "C-p").
func (tm *terminal) keys(keys ...string) {
	tm.tmux(append([]string{"send-keys", "-t", "s"}, keys...)...)
}

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
func (tm *terminal) dead() bool { return exitLine.MatchString(tm.screen()) }

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

// dockerCmdLine is cli with the docker CLI as the client; the test fails
// without it.
func dockerCmdLine(t *testing.T, d *harness.Daemon, args ...string) string {
	if _, err := os.Stat(dockerBin); err != nil {
		t.Fatalf("no docker CLI at %s: the compatibility tests need it", dockerBin)
	}
	return dockerBin + " -H unix://" + d.Socket + " " + strings.Join(args, " ")
}

// exitStatus is the exit status of the command in the terminal, which the
// shell around it prints when it ends.
func (tm *terminal) exitStatus() string {
	tm.t.Helper()
	m := exitLine.FindStringSubmatch(tm.waitScreen("EXIT="))
	if m == nil {
		tm.t.Fatalf("no exit status on the screen:\n%s", tm.screen())
	}
	return m[1]
}

var exitLine = regexp.MustCompile(`EXIT=(\d+)`)

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
	// The terminal is the container's own, as with Docker: /dev/pts/0.
	tm.waitScreen("/dev/pts/0")

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
	if st := tm.exitStatus(); st != "0" {
		t.Fatalf("run -it exit status after detach: %s; screen:\n%s", st, tm.screen())
	}
	if got := strings.TrimSpace(d.Must("inspect", "-f", "{{.State.Running}}", "ttyc")); got != "true" {
		t.Fatalf("container after detach: running=%s", got)
	}

	// exec -it in it, with its own terminal.
	ex := newTerminalNamed(t, d, "x", cli(d, "exec", "-it", "ttyc", "sh"))
	ex.waitScreen("/ #")
	ex.keys("stty size; echo in-exec-$((2+3)); tty", "Enter")
	ex.waitScreen("in-exec-5")
	// The exec's terminal is on the container's devpts too, the next one.
	ex.waitScreen("/dev/pts/1")
	ex.waitScreen("24 80")
	ex.keys("exit 3", "Enter")
	ex.waitDead()
	if st := ex.exitStatus(); st != "3" {
		t.Fatalf("exec -it exit status: %s, want 3", st)
	}

	// start -ai of a created TTY container, detached with ctrl-p ctrl-q.
	d.Must("create", "-it", "--name", "ttycr", "busybox", "sh")
	defer d.Run("rm", "-f", "ttycr")
	sa := newTerminalNamed(t, d, "sa", cli(d, "start", "-ai", "ttycr"))
	time.Sleep(300 * time.Millisecond)
	sa.keys("echo started-$((8+1))", "Enter")
	sa.waitScreen("started-9")
	sa.keys("C-p", "C-q")
	if st := sa.exitStatus(); st != "0" {
		t.Fatalf("start -ai exit status after detach: %s", st)
	}
	if got := strings.TrimSpace(d.Must("inspect", "-f", "{{.State.Running}}", "ttycr")); got != "true" {
		t.Fatalf("start -ai container after detach: running=%s", got)
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
	if st := at2.exitStatus(); st != "5" {
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
	tm := &terminal{t: t, socket: filepath.Join(t.TempDir(), "tmux-"+name)}
	tm.tmux("new-session", "-d", "-s", "s", "-x", "80", "-y", "24", cmd+"; echo EXIT=$?")
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", tm.socket, "kill-server").Run() })
	tm.tmux("set-option", "-t", "s", "remain-on-exit", "on")
	return tm
}

// TestTTYDockerCLI drives the docker CLI against the daemon from a real
// terminal: run -it, the size, ctrl-p ctrl-q, attach, exec -it.
func TestTTYDockerCLI(t *testing.T) {
	d := engine(t)
	defer d.Run("rm", "-f", "dk")
	tm := newTerminal(t, d, 85, 23, dockerCmdLine(t, d, "run", "-it", "--name", "dk", "busybox", "sh"))
	tm.waitScreen("/ #")
	tm.keys("stty size; echo docker-$((3*3))", "Enter")
	tm.waitScreen("docker-9")
	tm.waitScreen("23 85")
	tm.keys("C-p", "C-q")
	tm.waitDead()
	if got := strings.TrimSpace(d.Must("inspect", "-f", "{{.State.Running}}", "dk")); got != "true" {
		t.Fatalf("container after docker's detach: running=%s; screen:\n%s", got, tm.screen())
	}
	ex := newTerminalNamed(t, d, "x", dockerCmdLine(t, d, "exec", "-it", "dk", "sh"))
	ex.waitScreen("/ #")
	ex.keys("stty size; echo exec-$((4*4))", "Enter")
	ex.waitScreen("exec-16")
	ex.waitScreen("24 80")
	ex.keys("exit 4", "Enter")
	ex.waitDead()
	if st := ex.exitStatus(); st != "4" {
		t.Fatalf("docker exec -it exit status %s, want 4; screen:\n%s", st, ex.screen())
	}
	at := newTerminalNamed(t, d, "a", dockerCmdLine(t, d, "attach", "dk"))
	time.Sleep(300 * time.Millisecond)
	at.keys("echo again-$((5*5))", "Enter")
	at.waitScreen("again-25")
	at.tmux("resize-window", "-t", "s", "-x", "99", "-y", "33")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(at.screen(), "33 99") {
		if time.Now().After(deadline) {
			t.Fatalf("size after resize under docker attach; screen:\n%s", at.screen())
		}
		at.keys("clear; stty size", "Enter")
		time.Sleep(200 * time.Millisecond)
	}
	at.keys("exit 6", "Enter")
	at.waitDead()
	if st := at.exitStatus(); st != "6" {
		t.Fatalf("docker attach exit status %s, want 6; screen:\n%s", st, at.screen())
	}
	// docker logs reads a TTY container's log as one raw stream.
	lg := (&harness.Daemon{Bin: "/usr/local/bin/docker", Socket: d.Socket}).Run("logs", "dk")
	if lg.Code != 0 || !strings.Contains(lg.Stdout, "docker-9\r\n") || !strings.Contains(lg.Stdout, "again-25\r\n") {
		t.Fatalf("docker logs of the TTY container: %s", lg)
	}
}

// TestTTYSurvivesDaemonKill: the shim owns the console, so a TTY container
// outlives a daemon killed with -9, and the restarted daemon attaches to
// the same shell (its variables still set) and resizes it.
func TestTTYSurvivesDaemonKill(t *testing.T) {
	d := engine(t)
	defer d.Run("rm", "-f", "surv")
	tm := newTerminal(t, d, 80, 24, cli(d, "run", "-it", "--name", "surv", "busybox", "sh"))
	tm.waitScreen("/ #")
	tm.keys("X=before-restart; echo set-$X", "Enter")
	tm.waitScreen("set-before-restart") // the shell has it before the daemon goes
	d.Kill9()
	tm.waitDead() // the CLI lost its daemon
	d.Restart()
	if got := strings.TrimSpace(d.Must("inspect", "-f", "{{.State.Running}}", "surv")); got != "true" {
		t.Fatalf("TTY container after the daemon's restart: running=%s", got)
	}
	at := newTerminalNamed(t, d, "a", cli(d, "attach", "surv"))
	time.Sleep(300 * time.Millisecond)
	at.keys("clear; stty size; echo X=$X", "Enter")
	at.waitScreen("X=before-restart")
	at.waitScreen("24 80")
	at.keys("exit", "Enter")
	at.waitDead()
	if r := d.Run("logs", "surv"); !strings.Contains(r.Stdout, "X=before-restart") {
		t.Fatalf("logs after the restart: %s", r)
	}
}

// TestTTYBadInput: bad detach keys and sizes are one-line errors, and
// nothing is left behind.
func TestTTYBadInput(t *testing.T) {
	d := engine(t)
	for _, args := range [][]string{
		{"run", "-it", "--detach-keys", "ctrl-", "--name", "bad", "busybox", "sh"},
		{"run", "-it", "--detach-keys", "ctrl-p,,", "--name", "bad", "busybox", "sh"},
	} {
		r := d.Run(args...)
		if r.Code != 125 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 || !strings.Contains(r.Stderr, "detach-keys") {
			t.Fatalf("shoal %s: %s", strings.Join(args, " "), r)
		}
	}
	if out := d.Must("ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("a refused run left containers: %q", out)
	}
	id := strings.TrimSpace(d.Must("run", "-d", "-t", "busybox", "sleep", "1000"))
	defer d.Run("rm", "-f", id)
	plain := strings.TrimSpace(d.Must("run", "-d", "busybox", "sleep", "1000"))
	defer d.Run("rm", "-f", plain)
	for _, c := range []struct {
		path string
		code int
	}{
		{"/containers/" + id + "/resize?h=0&w=80", 400},
		{"/containers/" + id + "/resize?h=70000&w=80", 400},
		{"/containers/" + id + "/resize?h=x&w=80", 400},
		{"/containers/" + plain + "/resize?h=24&w=80", 409},
		{"/containers/" + id + "/attach?stream=1&stdin=1&detachKeys=ctrl-", 400},
		{"/containers/" + id + "/resize?h=24&w=80", 200},
	} {
		if code, body := apiPost(t, d.Socket, c.path, ""); code != c.code {
			t.Errorf("POST %s: %d %s, want %d", c.path, code, body, c.code)
		}
	}
	if code, body := apiPost(t, d.Socket, "/containers/"+id+"/exec", `{"Cmd":["sh"],"Tty":true,"DetachKeys":"ctrl-"}`); code != 400 {
		t.Errorf("exec create with bad detach keys: %d %s", code, body)
	}
	// The size the API set is the one the container sees.
	if out := d.Must("exec", id, "stty", "-F", "/dev/console", "size"); strings.TrimSpace(out) != "24 80" {
		t.Errorf("stty size after resize: %q", out)
	}
}

// dockerPyTTY is the docker-py side of TestTTYDockerPy.
const dockerPyTTY = `
import os, sys, time, docker
c = docker.DockerClient(base_url="unix://" + os.environ["SOCK"])
ct = c.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2; sleep 100"], tty=True, detach=True, name="pytty")
# The test removes the container (docker-py sends link=False, refused).
deadline = time.time() + 10
while b"err" not in ct.logs() and time.time() < deadline:
    time.sleep(0.1)
logs = ct.logs()
assert logs == b"out\r\nerr\r\n", ("logs", logs)
r = ct.exec_run(["sh", "-c", "echo e1; echo e2 >&2; test -t 0 && test -t 2 && exit 3"], tty=True)
assert r.exit_code == 3 and r.output == b"e1\r\ne2\r\n", ("exec tty", r)
r = ct.exec_run(["sh", "-c", "echo e1; echo e2 >&2"], tty=False, demux=True)
assert r.output == (b"e1\n", b"e2\n"), ("exec without tty", r)
ct.resize(30, 100)
r = ct.exec_run(["stty", "-F", "/dev/console", "size"])
assert r.output == b"30 100\n", ("size", r)
ct.reload()
assert ct.attrs["Config"]["Tty"] is True, ct.attrs["Config"]
print("ok")
`

// TestTTYDockerPy runs docker-py against the daemon for tty=True: the logs
// as one raw stream, exec_run with and without a TTY, resize.
func TestTTYDockerPy(t *testing.T) {
	py := dockerPyPython(t)
	d := engine(t)
	defer d.Run("rm", "-f", "pytty")
	cmd := exec.Command(py, "-c", dockerPyTTY)
	cmd.Env = append(os.Environ(), "SOCK="+d.Socket)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("docker-py: %v\n%s", err, out)
	}
}
