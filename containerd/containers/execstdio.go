package containers

import (
	"os"

	"github.com/shoal-project/shoal/containerd/runtime"
)

// execStdio is an exec's stdio: a pipe per stream, or (Tty) a pty whose
// slave is all three and whose master the engine keeps while it runs.
type execStdio struct {
	childIn, childOut, childErr *os.File // the process's ends
	in                          *os.File // where the client's input goes; nil without it
	outputs                     []execOutput
	console                     *os.File // the pty master (Tty), else nil
}

// execOutput is a read end of the output with its stdcopy stream number.
type execOutput struct {
	n byte
	r *os.File
}

// openExecStdio makes the stdio of an exec in the container whose init is
// pid; attach says whether a client sends input (with AttachStdin).
func openExecStdio(cfg ExecConfig, pid int, attach bool) (*execStdio, error) {
	s := &execStdio{}
	if cfg.Tty {
		// The container's own devpts, where the process can name its
		// terminal; failing that (no devpts there), one of the host's.
		master, slave, err := runtime.OpenPtyIn(pid)
		if err != nil {
			master, slave, err = runtime.OpenPty()
		}
		if err != nil {
			return nil, err
		}
		if h, w := cfg.ConsoleSize[0], cfg.ConsoleSize[1]; h > 0 && w > 0 {
			// A size that does not take leaves the default; it is not
			// worth failing the exec for.
			_ = runtime.Resize(master, h, w)
		}
		// The terminal is the process's stdin even without input: it
		// becomes its controlling terminal.
		s.childIn, s.childOut, s.childErr = slave, slave, slave
		s.console = master
		s.outputs = []execOutput{{1, master}}
		if cfg.AttachStdin && attach {
			s.in = master
		}
		return s, nil
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	s.childOut, s.outputs = outW, append(s.outputs, execOutput{1, outR})
	errR, errW, err := os.Pipe()
	if err != nil {
		s.closeChildEnds()
		s.closeParentEnds()
		return nil, err
	}
	s.childErr, s.outputs = errW, append(s.outputs, execOutput{2, errR})
	if cfg.AttachStdin && attach {
		if s.childIn, s.in, err = os.Pipe(); err != nil {
			s.closeChildEnds()
			s.closeParentEnds()
			return nil, err
		}
	}
	return s, nil
}

// closeChildEnds closes the engine's copies of the process's ends once the
// supervisor has them: the output ends when the process's does.
func (s *execStdio) closeChildEnds() {
	for _, f := range []*os.File{s.childIn, s.childOut, s.childErr} {
		if f != nil {
			_ = f.Close() // the slave is all three: closed once, then ErrClosed
		}
	}
}

// closeParentEnds closes the engine's ends (readers, stdin writer, console).
func (s *execStdio) closeParentEnds() {
	for _, o := range s.outputs {
		_ = o.r.Close()
	}
	if s.in != nil {
		_ = s.in.Close()
	}
}
