package shim

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestServeRefusesBadRequests: a start request that cannot be read is
// refused on its status pipe (or, without its descriptors, dropped with
// them closed); the shim goes on serving, and returns when the engine's end
// closes, leaking no descriptor.
func TestServeRefusesBadRequests(t *testing.T) {
	before := openFDs(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "ctl")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	engine, shimEnd := conn(fds[0]), conn(fds[1])
	served := make(chan struct{})
	go func() { Serve(shimEnd, "/s"); close(served) }()

	// request sends raw with a fresh status pipe, log and a client's
	// socket, and returns what the status pipe said before it closed.
	request := func(raw []byte, nfds int) string {
		statusR, statusW, _ := os.Pipe()
		logf, _ := os.CreateTemp(t.TempDir(), "log")
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { statusR.Close(); unix.Close(pair[0]) }()
		all := []int{int(statusW.Fd()), int(logf.Fd()), pair[1]}
		if _, _, err := engine.WriteMsgUnix(raw, unix.UnixRights(all[:nfds]...), nil); err != nil {
			t.Fatal(err)
		}
		statusW.Close()
		logf.Close()
		unix.Close(pair[1])
		b, _ := io.ReadAll(statusR)
		return string(b)
	}
	valid := Options{ID: "c", Bundle: "/b", StateDir: "/s/c", RuntimeRoot: "/r", LogPath: "/l"}
	noID := valid
	noID.ID = ""
	elsewhere := valid
	elsewhere.StateDir = "/t/c"
	oneClient := valid
	oneClient.Clients = 1
	b, _ := json.Marshal(noID)
	b2, _ := json.Marshal(elsewhere)
	b3, _ := json.Marshal(oneClient)
	b4, _ := json.Marshal(valid)
	for _, tc := range []struct {
		name string
		raw  []byte
		nfds int
		want string
	}{
		{"not JSON", []byte("{bogus"), nFDs, "start request: invalid character"},
		{"no ID", b, nFDs, "ID, Bundle, StateDir, RuntimeRoot and LogPath are required"},
		{"state elsewhere", b2, nFDs, "state directory /t/c is not under /s"},
		{"a client announced, none sent", b3, nFDs, "1 clients announced, 0 sockets attached"},
		{"a client sent, none announced", b4, nFDs + 1, "0 clients announced, 1 sockets attached"},
	} {
		var st Status
		got := request(tc.raw, tc.nfds)
		if err := json.Unmarshal([]byte(got), &st); err != nil || !strings.Contains(st.Error, tc.want) {
			t.Errorf("%s: status %q, want an error with %q", tc.name, got, tc.want)
		}
	}
	b, _ = json.Marshal(valid)
	if got := request(b, 1); got != "" {
		t.Errorf("a request with one descriptor: status %q, want it dropped", got)
	}
	select {
	case <-served:
		t.Fatal("Serve returned while the engine's end was open")
	default:
	}
	engine.Close()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the engine's end closed")
	}
	if after := openFDs(t); after != before {
		t.Errorf("descriptors open: %d before, %d after", before, after)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
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
	srv := newServer(fan, &stdio{stdin: stdinW}, true, xs)
	served := make(chan struct{})
	go func() { srv.serve(ln); close(served) }()

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
	srv.replies.Wait()
	if _, err := QueryState(dir); err == nil {
		t.Fatal("state answered after the socket closed")
	}
}

// TestHandOver: clients that come with the start request are served as if
// they had connected to the socket, and an attach among them is registered
// before handOver returns, so output sent right after it reaches the client
// (the container starts right after); a waiter gets the exit, and a client
// whose request is not one is closed.
func TestHandOver(t *testing.T) {
	pair := func() (engine, shimEnd net.Conn) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		var conns [2]net.Conn
		for i, fd := range fds {
			f := os.NewFile(uintptr(fd), "pair")
			c, err := net.FileConn(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
		}
		t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
		return conns[0], conns[1]
	}
	fan := &fanout{clients: map[net.Conn]struct{}{}}
	xs := &exitState{done: make(chan struct{})}
	srv := newServer(fan, &stdio{}, false, xs)
	attachE, attachS := pair()
	waitE, waitS := pair()
	junkE, junkS := pair()
	json.NewEncoder(attachE).Encode(Request{Attach: true})
	json.NewEncoder(waitE).Encode(Request{Wait: true})
	io.WriteString(junkE, "not a request\n")
	srv.handOver(attachS)
	srv.handOver(waitS)
	srv.handOver(junkS)
	fan.send("stdout", []byte("first\n"))

	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.serve(ln); close(served) }()
	srv.end(ln, served, Exit{ExitCode: 7})
	if out := frames(t, attachE); out != "ack;out:first\n" {
		t.Errorf("handed-over attach got %q, want the ack and the first output", out)
	}
	var e Exit
	if err := json.NewDecoder(waitE).Decode(&e); err != nil || e.ExitCode != 7 {
		t.Errorf("handed-over wait: %+v, %v", e, err)
	}
	_ = junkE.SetReadDeadline(time.Now().Add(2 * time.Second))
	if b, err := io.ReadAll(junkE); err != nil || len(b) != 0 {
		t.Errorf("a handed-over client without a request: read %q, %v; want it closed", b, err)
	}
}
