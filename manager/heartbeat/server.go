package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// ServerArg is the argument the answering process is executed with
// (`shoal heartbeat-server`, hidden; Main).
const ServerArg = "heartbeat-server"

// The answering process's descriptors.
const (
	fdConn  = 3 // the UDP socket
	fdTable = 4 // the table's memfd
	fdLife  = 5 // read end of a pipe whose write end the manager holds
)

// Serve answers the beats that arrive on conn from t until conn is closed.
func Serve(conn *net.UDPConn, t *Table) error {
	buf := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// An ICMP error of an earlier answer (an agent gone): not the
			// socket's end.
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
				continue
			}
			return fmt.Errorf("heartbeat: read: %w", err)
		}
		if reply := t.Accept(buf[:n], time.Now()); reply != nil {
			_, _ = conn.WriteToUDPAddrPort(reply, from)
		}
	}
}

// Main is the answering process (ServerArg): it serves the socket and the
// table its manager passed it until the manager closes its end of the
// lifeline or exits. It does not return.
func Main() {
	// One thread of Go code is all it needs; fewer threads to wake.
	runtime.GOMAXPROCS(1)
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "heartbeat-server:", err)
		os.Exit(1)
	}
	pc, err := net.FilePacketConn(os.NewFile(fdConn, "heartbeat-socket"))
	if err != nil {
		fail(err)
	}
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		fail(fmt.Errorf("descriptor %d is not a UDP socket", fdConn))
	}
	t, err := OpenTable(os.NewFile(fdTable, "heartbeat-table"))
	if err != nil {
		fail(err)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.NewFile(fdLife, "heartbeat-lifeline"))
		os.Exit(0)
	}()
	if err := Serve(conn, t); err != nil {
		fail(err)
	}
	os.Exit(0)
}

// Run serves t's beats on conn until ctx ends, in a process of its own that
// command starts (with ServerArg; Run adds the descriptors) and starts
// again, after restartDelay, whenever it exits; with command nil, in this
// process. Run closes conn when it returns, and nothing of Run's uses t
// any more then.
func Run(ctx context.Context, conn *net.UDPConn, t *Table, command func() *exec.Cmd, log *slog.Logger) {
	defer conn.Close()
	vouched := make(chan struct{})
	go func() { defer close(vouched); vouch(ctx, t) }()
	defer func() { <-vouched }()
	if command == nil {
		// Serve has returned before Run does: the caller may unmap t then.
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := Serve(conn, t); err != nil {
				log.Warn("heartbeat: fast path stopped", "err", err)
			}
		}()
		<-ctx.Done()
		conn.Close()
		<-served
		return
	}
	for {
		err := runProcess(ctx, conn, t, command)
		if ctx.Err() != nil {
			return
		}
		log.Warn("heartbeat: answering process ended; starting it again", "err", err, "in", restartDelay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(restartDelay):
		}
	}
}

// Vouching: every vouchEvery the manager's Run says it runs for vouchFor
// more. A stopped manager's agents beat over gRPC within vouchFor, well
// inside a node's grace (3 s at the default period); a manager starved of
// CPU would have to miss its timer for seconds.
const (
	vouchEvery = 500 * time.Millisecond
	vouchFor   = 2 * time.Second
)

// vouch keeps t answering while ctx lasts, and stops it when ctx ends.
func vouch(ctx context.Context, t *Table) {
	tick := time.NewTicker(vouchEvery)
	defer tick.Stop()
	for {
		t.Vouch(time.Now().Add(vouchFor))
		select {
		case <-ctx.Done():
			t.Vouch(time.Time{})
			return
		case <-tick.C:
		}
	}
}

// restartDelay keeps a process that cannot start from being started in a
// tight loop; meanwhile the agents beat over gRPC.
const restartDelay = time.Second

// runProcess runs the answering process once, until it exits or ctx ends.
func runProcess(ctx context.Context, conn *net.UDPConn, t *Table, command func() *exec.Cmd) error {
	sock, err := conn.File() // a duplicate: conn keeps its own
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer sock.Close()
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer lifeW.Close()
	cmd := command()
	cmd.ExtraFiles = []*os.File{sock, t.File(), lifeR}
	err = cmd.Start()
	lifeR.Close()
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
		// Closing the lifeline ends it; the kill is for one that hangs.
		lifeW.Close()
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		return ctx.Err()
	}
}
