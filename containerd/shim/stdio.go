package shim

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/containerd/runtime"
)

// stdio is the container's side of the shim: pipes, or a console.
type stdio struct {
	create  runtime.CreateOptions // the child's ends, for Create
	outputs []output              // the shim's read ends
	stdin   *os.File              // where attached input goes; nil without -i
	console *os.File              // the pty master (Tty), else nil
}

// output is a read end of the container's output and its stream's name.
type output struct {
	stream string
	r      *os.File
}

// create creates the container with the stdio o asks for: with Tty a
// terminal that the runtime allocates in the container (CreateConsole),
// else a pipe per stream (stdin only with Stdin).
func create(ctx context.Context, rt *runtime.Runtime, o Options) (*stdio, error) {
	if o.Tty {
		master, err := rt.CreateConsole(ctx, o.ID, o.Bundle, runtime.CreateOptions{})
		if err != nil {
			return nil, err
		}
		s := &stdio{console: master, outputs: []output{{"stdout", master}}}
		if o.Stdin {
			s.stdin = master
		}
		if o.ConsoleHeight > 0 && o.ConsoleWidth > 0 {
			if err := runtime.Resize(master, o.ConsoleHeight, o.ConsoleWidth); err != nil {
				_ = rt.Delete(ctx, o.ID, true)
				s.close()
				return nil, err
			}
		}
		return s, nil
	}
	s, err := openPipes(o)
	if err != nil {
		return nil, err
	}
	if err := rt.Create(ctx, o.ID, o.Bundle, s.create); err != nil {
		s.close()
		return nil, err
	}
	s.closeChildEnds()
	return s, nil
}

// openPipes makes the container's stdio as pipes, one per stream.
func openPipes(o Options) (*stdio, error) {
	s := &stdio{}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	s.create = runtime.CreateOptions{Stdout: outW, Stderr: errW}
	s.outputs = []output{{"stdout", outR}, {"stderr", errR}}
	if o.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			s.close()
			return nil, err
		}
		s.create.Stdin, s.stdin = r, w
	}
	return s, nil
}

// closeChildEnds closes the shim's copies of the container's ends once the
// container has them, so that the output ends when the container's does.
func (s *stdio) closeChildEnds() {
	seen := map[*os.File]bool{}
	for _, f := range []*os.File{s.create.Stdin, s.create.Stdout, s.create.Stderr} {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

// close closes every end the shim holds, once the container is gone: a shim
// outlives its containers, and each would leave two to five descriptors.
func (s *stdio) close() {
	s.closeChildEnds()
	seen := map[*os.File]bool{}
	for _, f := range []*os.File{s.stdin, s.console} {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
	for _, o := range s.outputs {
		if !seen[o.r] {
			seen[o.r] = true
			o.r.Close()
		}
	}
}

// ConsoleDrain bounds how long a console's output may keep coming after the
// process on it has exited: a process that outlives it (a background child
// of an exec, or one outside the container's pid namespace with --pid host)
// may still hold the slave open, and the master would then never report
// the end.
const ConsoleDrain = 2 * time.Second

// DrainOutput waits for the output readers after the process's exit; with a
// console (a pty master, else nil) at most ConsoleDrain, then it closes the
// console, which ends them.
func DrainOutput(readers *sync.WaitGroup, console *os.File) {
	if console == nil {
		readers.Wait()
		return
	}
	done := make(chan struct{})
	go func() { readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(ConsoleDrain):
		console.Close()
		<-done
	}
}

// errNoConsole answers a resize of a container without a terminal.
var errNoConsole = errors.New("the container has no terminal (-t)")

func (s *stdio) resize(height, width uint16) error {
	if s.console == nil {
		return errNoConsole
	}
	return runtime.Resize(s.console, height, width)
}

// copyConsole copies the console's output to the log and to tee as it
// comes, one record per read: waiting for a newline would hold back a
// prompt. It ends when the terminal is hung up (EIO once every slave
// descriptor is closed).
func copyConsole(w *logs.Writer, r *os.File, tee func(stream string, b []byte)) {
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			// A failed log write loses the record, not the console.
			_ = w.Write("stdout", buf[:n], time.Now())
			tee("stdout", buf[:n])
		}
		if err != nil {
			return
		}
	}
}
