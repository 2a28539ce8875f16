package shim

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestArgsRoundTrip(t *testing.T) {
	o := Options{ID: "c1", Bundle: "/b", StateDir: "/s", RuntimeRoot: "/r", CgroupParent: "/p", LogPath: "/l", Stdin: true, StdinOnce: true}
	got, err := parseArgs(o.Args()[1:])
	if err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("parseArgs(Args()) = %+v, %v", got, err)
	}
	o.Tty, o.ConsoleHeight, o.ConsoleWidth = true, 40, 120
	if got, err := parseArgs(o.Args()[1:]); err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("parseArgs(Args()) with a TTY = %+v, %v", got, err)
	}
	base := []string{"--id", "x", "--bundle", "/b", "--state", "/s", "--runtime-root", "/r", "--log", "/l"}
	for _, bad := range [][]string{{}, {"--id"}, {"--id", "x", "--bogus", "y"}, {"--id", "x", "--bundle", "/b"},
		append(base, "--console-size", "40"), append(base, "--console-size", "axb"), append(base, "--console-size", "70000x80")} {
		if _, err := parseArgs(bad); err == nil {
			t.Errorf("parseArgs(%q) accepted", bad)
		}
	}
}

func TestExitRecordDurable(t *testing.T) {
	dir := t.TempDir()
	want := Exit{ExitCode: 137, OOMKilled: true, FinishedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	if err := writeExit(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadExit(dir)
	if err != nil || got != want {
		t.Fatalf("ReadExit = %+v, %v", got, err)
	}
	if _, err := os.Stat(ExitPath(dir) + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary exit record left: %v", err)
	}
	if _, err := ReadExit(t.TempDir()); err == nil {
		t.Fatal("ReadExit of an empty dir succeeded")
	}
}

// deepDir is a state directory whose socket path exceeds sun_path.
func deepDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 64))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if len(SocketPath(dir)) <= maxSunPath {
		t.Fatalf("test dir too short: %d", len(SocketPath(dir)))
	}
	return dir
}

// frames reads stdcopy frames until EOF.
func frames(t *testing.T, r io.Reader) string {
	var b strings.Builder
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return b.String()
		}
		data := make([]byte, binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.ReadFull(r, data); err != nil {
			t.Errorf("short frame: %v", err)
			return b.String()
		}
		if len(data) == 0 {
			b.WriteString("ack;")
			continue
		}
		b.WriteString(map[byte]string{1: "out:", 2: "err:"}[hdr[0]] + string(data))
	}
}

// TestProtocol drives serve over a real socket in a deep directory: state
// before and after the exit, wait, and an attach whose stdin reaches the
// container's pipe byte for byte (nothing of the request line leaks into it).
func TestProtocol(t *testing.T) {
	dir := deepDir(t)
	ln, err := listenUnix(SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinR.Close()
	fan := &fanout{clients: map[net.Conn]struct{}{}}
	xs := &exitState{done: make(chan struct{})}
	xs.pid.Store(4242)
	var replies sync.WaitGroup
	served := make(chan struct{})
	go func() { serve(ln, fan, &stdio{stdin: stdinW}, true, xs, &replies); close(served) }()

	st, err := QueryState(dir)
	if err != nil || !st.Running || st.Pid != 4242 || st.Exit != nil {
		t.Fatalf("state while running: %+v %v", st, err)
	}
	// A container without a terminal has no console to resize.
	if err := ResizeConsole(dir, 24, 80); err == nil || !strings.Contains(err.Error(), "no terminal") {
		t.Fatalf("resize without a TTY: %v", err)
	}

	// Attach with stdin.
	ac, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewEncoder(ac).Encode(Request{Attach: true, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(ac, "hello\n")
	ac.(*net.UnixConn).CloseWrite()
	got, err := io.ReadAll(stdinR) // EOF: the client's half-close closed the pipe
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("stdin got %q, %v", got, err)
	}
	// Output reaches the attached client as frames.
	deadline := time.Now().Add(2 * time.Second)
	for {
		fan.mu.Lock()
		n := len(fan.clients)
		fan.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("attach not registered")
		}
		time.Sleep(time.Millisecond)
	}
	fan.send("stdout", []byte("a\n"))
	fan.send("stderr", []byte("b\n"))

	// A waiter blocks until the exit.
	wc, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(wc).Encode(Request{Wait: true})
	exitc := make(chan Exit, 1)
	go func() {
		var e Exit
		json.NewDecoder(bufio.NewReader(wc)).Decode(&e)
		exitc <- e
	}()
	select {
	case <-exitc:
		t.Fatal("wait answered before the exit")
	case <-time.After(50 * time.Millisecond):
	}
	fan.closeAll()
	if out := frames(t, ac); out != "ack;out:a\nerr:b\n" {
		t.Fatalf("attached output %q", out)
	}
	xs.exit = Exit{ExitCode: 3}
	close(xs.done)
	select {
	case e := <-exitc:
		if e.ExitCode != 3 {
			t.Fatalf("wait: %+v", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("wait not answered after the exit")
	}
	st, err = QueryState(dir)
	if err != nil || st.Running || st.Exit == nil || st.Exit.ExitCode != 3 {
		t.Fatalf("state after exit: %+v %v", st, err)
	}
	ln.Close()
	<-served
	replies.Wait()
	if _, err := QueryState(dir); err == nil {
		t.Fatal("state answered after the socket closed")
	}
}
