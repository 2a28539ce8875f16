package shim

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"sync"
	"time"
)

// handOverTimeout bounds the read of a handed-over client's request line,
// which the engine writes before it sends the socket.
const handOverTimeout = 5 * time.Second

// server answers one container's clients: those that connect to its socket
// and those that came with the start request.
type server struct {
	fan *fanout
	std *stdio
	xs  *exitState
	// stdinOnce: the end of a client's input closes the container's stdin.
	stdinOnce bool
	stdinMu   sync.Mutex // guards the close of std.stdin
	// replies counts the connections not yet answered (attach connections:
	// until their request is read), so that the shim does not exit under a
	// waiter.
	replies sync.WaitGroup
}

func newServer(fan *fanout, std *stdio, stdinOnce bool, xs *exitState) *server {
	// A console's input is its master, which also carries the output: the
	// end of one client's input must not close it.
	return &server{fan: fan, std: std, xs: xs, stdinOnce: stdinOnce && std.console == nil}
}

// serve answers clients of the socket until it is closed.
func (s *server) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			if rest := s.begin(c); rest != nil {
				rest()
			}
		}()
	}
}

// handOver takes a client that came with the start request: its request is
// read, and an attach registered, before handOver returns.
func (s *server) handOver(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(handOverTimeout))
	rest := s.begin(c)
	_ = c.SetReadDeadline(time.Time{})
	if rest != nil {
		go rest()
	}
}

// begin reads a client's request and registers an attach; what remains to
// be done (an answer to wait for, stdin to copy) it returns, nil if nothing.
func (s *server) begin(c net.Conn) func() {
	s.replies.Add(1)
	var once sync.Once
	answer := func() { once.Do(s.replies.Done) }
	var req Request
	// One request line; what follows it on an attach is stdin.
	br := bufio.NewReader(c)
	line, err := br.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &req) != nil {
		c.Close()
		answer()
		return nil
	}
	if req.Attach {
		answer()
		if !s.fan.add(c) {
			c.Close()
			return nil
		}
		if !req.Stdin || s.std.stdin == nil {
			return nil
		}
		return func() { s.copyStdin(br) }
	}
	return func() {
		defer answer()
		s.reply(c, req)
	}
}

// reply answers a request other than an attach, and closes the connection.
func (s *server) reply(c net.Conn, req Request) {
	defer c.Close()
	switch {
	case req.Wait:
		<-s.xs.done
		_ = json.NewEncoder(c).Encode(s.xs.exit)
	case req.State:
		_ = json.NewEncoder(c).Encode(s.xs.reply())
	case req.Resize:
		var r ResizeReply
		if err := s.std.resize(req.Height, req.Width); err != nil {
			r.Error = err.Error()
		}
		_ = json.NewEncoder(c).Encode(r)
	}
}

func (s *server) copyStdin(br *bufio.Reader) {
	stdin := s.std.stdin
	_, _ = io.Copy(stdin, br)
	if s.stdinOnce {
		s.stdinMu.Lock()
		stdin.Close()
		s.stdinMu.Unlock()
	}
}

// end records the container's exit for its clients: the attached ones are
// closed, no new ones are taken, and the ones waiting for the exit get
// their answer (for at most 2 s) before end returns; later ones read
// exit.json instead.
func (s *server) end(ln net.Listener, served <-chan struct{}, exit Exit) {
	s.fan.closeAll()
	s.xs.exit = exit
	close(s.xs.done)
	ln.Close()
	<-served
	answered := make(chan struct{})
	go func() { s.replies.Wait(); close(answered) }()
	select {
	case <-answered:
	case <-time.After(2 * time.Second):
	}
}
