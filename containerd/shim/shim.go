// Package shim is the containers' supervisor: `shoal shim`, started by the
// engine detached from the daemon (own session, reparented to init), so that
// a daemon restart, crash or upgrade never kills a container.
//
// One shim process supervises several containers (Serve): the engine hands
// it each container to start on a control socket, and retires it after a
// number of starts; a retired shim exits when its last container has. A Go
// process's start (its runtime, page faults, threads) was the largest cost
// of a container start after the container's own work, and one shim per
// container paid it every time. What the engine gives up is isolation
// between the containers of one shim: a shim killed ends the supervision of
// all of them (the engine then records each as lost, 137, and ends it).
//
// For each container the shim is the runtime's parent: it creates the
// container with its stdio on pipes it owns, writes the output to the
// json-file log, fans it out to attached clients, waits for the exit, reads
// the OOM kill count and records the exit durably in exit.json. A
// restarted daemon finds the container again through its socket, or, if the
// shim has recorded the exit, through exit.json.
//
// Clients attached before the start miss no output, and a waiter misses no
// exit, because they come with the request: the engine makes a connected
// socket pair per client, writes the client's request line into its end and
// sends the other end along (Options.Clients). The shim creates the
// container, takes those requests as if they had come through its socket
// (an attach is registered before anything runs), starts the process and
// reports its pid on the status pipe. Starting costs the engine no round
// trip through the shim between create and start.
//
// Socket protocol (unix stream, one JSON request line, then):
//   - {"attach":true,"stdin":bool}: an empty stdout frame once the client
//     is registered, then stdcopy frames (header [stream,0,0,0,len BE32],
//     then the data) of every later output; with stdin, what the client
//     writes goes to the container's stdin, and with StdinOnce the client's
//     half-close closes it. The connection ends when the output ends.
//   - {"wait":true}: one JSON Exit line when the container has exited.
//   - {"state":true}: one JSON StateReply line at once (a restarted daemon
//     learns whether the container is still running or how it ended).
//   - {"resize":true,"height":H,"width":W}: sets the console's window size
//     (Tty only); one JSON line, {} or {"error":"..."}.
//
// With Tty the container gets a pseudo-terminal: its slave is the process's
// stdin, stdout, stderr and controlling terminal, and the shim keeps the
// master, so the console outlives a daemon restart. The output is one
// stream (stdout frames, stdout records in the log) written as it comes,
// without waiting for a newline (a shell's prompt has none); attached input
// goes to the master, where the line discipline echoes it.
package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/containerd/runtime"
)

// Options describe a container for the shim to supervise; they are the JSON
// of a start request.
type Options struct {
	ID           string
	Bundle       string
	StateDir     string // shim.sock and exit.json
	RuntimeRoot  string
	CgroupParent string
	LogPath      string
	// Log is the log's driver and rotation (zero: json-file, no rotation).
	Log   logs.Config
	Stdin bool // keep a stdin pipe open for attach -i
	// StdinOnce closes the container's stdin when the first attached client
	// ends its input (docker run -i); otherwise stdin stays open for the next.
	StdinOnce bool
	// Tty gives the container a pseudo-terminal owned by the shim.
	Tty bool
	// ConsoleHeight and ConsoleWidth are the terminal's initial size (Tty;
	// 0 leaves the kernel's default).
	ConsoleHeight, ConsoleWidth uint16
	// Clients is the number of connected sockets that come with the
	// request, each holding a client's request line (see Request): they
	// are served as if they had connected to the socket, attaches
	// registered before the start.
	Clients int `json:",omitempty"`
}

// Exit is the record of a finished container.
type Exit struct {
	ExitCode   int       `json:"exitCode"`
	OOMKilled  bool      `json:"oomKilled"`
	FinishedAt time.Time `json:"finishedAt"`
	Error      string    `json:"error,omitempty"`
}

// Status is what the shim reports on the status pipe during start-up: the
// started process's pid, or why there is none.
type Status struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	// Kind is "notfound" or "permission" when the process cannot be executed.
	Kind string `json:"kind,omitempty"`
}

// Request is the first line a client sends on the socket.
type Request struct {
	Attach bool `json:"attach,omitempty"`
	Stdin  bool `json:"stdin,omitempty"`
	Wait   bool `json:"wait,omitempty"`
	// State asks for one StateReply line, at once.
	State bool `json:"state,omitempty"`
	// Resize sets the console's size to Height rows and Width columns.
	Resize bool   `json:"resize,omitempty"`
	Height uint16 `json:"height,omitempty"`
	Width  uint16 `json:"width,omitempty"`
}

// ResizeReply answers a Resize request.
type ResizeReply struct {
	Error string `json:"error,omitempty"`
}

// StateReply answers a State request: the container's init pid and, once
// it has exited, its exit record (then Running is false).
type StateReply struct {
	Pid     int   `json:"pid"`
	Running bool  `json:"running"`
	Exit    *Exit `json:"exit,omitempty"`
}

// exitState is the container's fate, shared by the supervising goroutine
// (the only writer) and the socket's clients.
type exitState struct {
	pid  atomic.Int64
	done chan struct{} // closed once exit is set
	exit Exit          // written once, before done is closed
}

func (x *exitState) reply() StateReply {
	r := StateReply{Pid: int(x.pid.Load())}
	select {
	case <-x.done:
		e := x.exit
		r.Exit = &e
	default:
		r.Running = r.Pid != 0
	}
	return r
}

// SocketPath is where the shim of a container listens.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, "shim.sock") }

// ExitPath is where the shim records the exit.
func ExitPath(stateDir string) string { return filepath.Join(stateDir, "exit.json") }

// Main is `shoal shim --state-root DIR`; it never returns. Its descriptor 3
// is a SOCK_SEQPACKET socket from the engine (see Serve). DIR holds the
// state directories of the containers it supervises: it takes no request
// for a container elsewhere, and it names the engine the shim belongs to in
// ps (and to whoever cleans up after a killed daemon).
func Main(args []string) {
	if len(args) != 2 || args[0] != "--state-root" || !filepath.IsAbs(args[1]) {
		fmt.Fprintln(os.Stderr, "shim: usage: shim --state-root DIR (absolute); the engine sends its requests on descriptor 3")
		os.Exit(2)
	}
	// FileConn holds a close-on-exec copy; descriptor 3 itself would pass
	// into every process this one starts.
	f := os.NewFile(3, "control")
	ctl, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shim: control socket:", err)
		os.Exit(2)
	}
	uc, ok := ctl.(*net.UnixConn)
	if !ok {
		fmt.Fprintln(os.Stderr, "shim: descriptor 3 is not a unix socket")
		os.Exit(2)
	}
	// Best effort: a shim whose monitor keeps its 50 µs slack works the same.
	_, _ = runtime.SlowMonitor()
	Serve(uc, args[1])
	os.Exit(0)
}

func report(w io.Writer, s Status) {
	if w != nil {
		_ = json.NewEncoder(w).Encode(s)
	}
}

// fanout sends output frames to the attached clients.
type fanout struct {
	mu      sync.Mutex // guards clients and closed
	clients map[net.Conn]struct{}
	closed  bool
}

func (f *fanout) add(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	// An empty stdout frame acknowledges the attach: the client knows that
	// every later byte of output reaches it (the engine starts the
	// container only then), and stdcopy readers skip it.
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := WriteFrame(c, Stdout, nil); err != nil {
		return false
	}
	f.clients[c] = struct{}{}
	return true
}

func (f *fanout) send(stream string, b []byte) {
	n := Stdout
	if stream == "stderr" {
		n = Stderr
	}
	frame := Frame(n, b)
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.clients {
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(frame); err != nil {
			// A slow or gone client must not stall the container's output.
			c.Close()
			delete(f.clients, c)
		}
	}
}

func (f *fanout) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for c := range f.clients {
		c.Close()
	}
	f.clients = nil
}

func run(o Options, status *os.File, clients []net.Conn) error {
	// Not a child subreaper: a shim lives as long as its last container, so
	// orphans adopted here (none come from inside a pid namespace) would
	// stay zombies; init reaps them instead.
	ctx := context.Background()
	// Before the start, a failure is the engine's to report: the clients
	// it handed over are closed, and the status says why.
	failWith := func(s Status, err error) error {
		report(status, s)
		for _, c := range clients {
			c.Close()
		}
		return err
	}
	fail := func(err error) error { return failWith(Status{Error: err.Error()}, err) }
	ln, err := listenUnix(SocketPath(o.StateDir))
	if err != nil {
		return fail(fmt.Errorf("shim listen: %v", err))
	}
	defer ln.Close()
	logw, err := logs.NewWriter(o.LogPath, o.Log)
	if err != nil {
		return fail(err)
	}
	defer logw.Close()

	rt := runtime.New(o.RuntimeRoot)
	if o.CgroupParent != "" {
		rt.CgroupParent = o.CgroupParent
	}
	std, err := create(ctx, rt, o)
	if err != nil {
		s := Status{Error: err.Error()}
		switch {
		case errors.Is(err, runtime.ErrExecNotFound):
			s.Kind = "notfound"
		case errors.Is(err, runtime.ErrExecPermission):
			s.Kind = "permission"
		}
		return failWith(s, err)
	}
	defer std.close()

	fan := &fanout{clients: map[net.Conn]struct{}{}}
	var copiers sync.WaitGroup
	for _, p := range std.outputs {
		copiers.Add(1)
		go func(stream string, r *os.File) {
			defer copiers.Done()
			if std.console != nil {
				copyConsole(logw, r, fan.send)
				return
			}
			_ = logs.Copy(logw, stream, r, fan.send)
		}(p.stream, p.r)
	}
	xs := &exitState{done: make(chan struct{})}
	srv := newServer(fan, std, o.StdinOnce, xs)
	served := make(chan struct{})
	go func() { srv.serve(ln); close(served) }()
	// The clients that came with the request, before the start: an attach
	// is registered once this returns.
	for _, c := range clients {
		srv.handOver(c)
	}

	// The pid is read before the start: a short-lived process (/bin/true)
	// may be gone, and its state "stopped", right after Start.
	created, err := rt.State(o.ID)
	if err != nil || created.Pid == 0 {
		report(status, Status{Error: fmt.Sprintf("state of created container: %v", err)})
		_ = rt.Delete(ctx, o.ID, true)
		srv.end(ln, served, Exit{ExitCode: 128, FinishedAt: time.Now().UTC(), Error: "not started"})
		return fmt.Errorf("state of created container: %v", err)
	}
	pid := created.Pid
	if err := rt.Start(ctx, o.ID); err != nil {
		report(status, Status{Error: err.Error()})
		_ = rt.Delete(ctx, o.ID, true)
		srv.end(ln, served, Exit{ExitCode: 128, FinishedAt: time.Now().UTC(), Error: err.Error()})
		return err
	}
	xs.pid.Store(int64(pid))
	report(status, Status{Pid: pid})
	status.Close()
	code, werr := rt.Wait(ctx, o.ID)
	DrainOutput(&copiers, std.console)
	exit := Exit{ExitCode: code, FinishedAt: time.Now().UTC()}
	if werr != nil {
		exit.Error = werr.Error()
	}
	if n, err := rt.OOMKillCount(o.ID); err == nil && n > 0 {
		exit.OOMKilled = true
	}
	_ = rt.Delete(ctx, o.ID, true)
	if err := writeExit(o.StateDir, exit); err != nil {
		return err
	}
	srv.end(ln, served, exit)
	return nil
}

func writeExit(dir string, e Exit) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := atomicfile.Replace(ExitPath(dir), b, 0o644); err != nil {
		return fmt.Errorf("record exit: %w", err)
	}
	return nil
}

// ReadExit reads the exit record a shim left.
func ReadExit(stateDir string) (Exit, error) {
	var e Exit
	b, err := os.ReadFile(ExitPath(stateDir))
	if err != nil {
		return e, err
	}
	return e, json.Unmarshal(b, &e)
}
