package containers

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/initsig"
)

// --init: a small init as the container's PID 1, as Docker's tini. It is
// this binary in a mode (InitArg): a copy made once per engine in
// <ExecRoot>/init and bind-mounted read-only at /dev/init (on the
// container's /dev, so nothing is added to its rootfs), as dockerd mounts
// tini. The runtime execs it once the container is set up, so the user,
// capabilities, seccomp and no_new_privs apply to it, and it holds no
// descriptor of the host's. It starts the command, forwards the signals it
// gets to it, reaps every orphan the kernel reparents to it, and exits with
// the command's status (128+N when signal N killed it).
//
// The copy, not the daemon's binary: a container given CAP_SYS_ADMIN can
// remount its /dev/init writable, and must then reach only that copy (used
// by other --init containers), never the binary the daemon and shims run.

// InitArg is the first argument that makes the engine's binary the
// container's --init; the binary's main must call InitMain for it.
const InitArg = initsig.Arg

// InitMinPids is the lowest pids limit a --init container may have: the
// init is this (Go) binary, whose runtime's threads count against the
// limit (7-9 seen with one processor's worth of work), beside the command
// and what it starts. Docker's tini is one thread; a lower limit would
// fail the start with a Go runtime crash, so it is refused instead.
const InitMinPids = 16

// CheckInitPids refuses a --init container whose pids limit (0: none) is
// under InitMinPids.
func CheckInitPids(init bool, pids int64) error {
	if init && pids > 0 && pids < InitMinPids {
		return fmt.Errorf("%w: --init needs a pids limit of at least %d (shoal's init is a Go program whose threads count against it), got %d", ErrInvalidArgument, InitMinPids, pids)
	}
	return nil
}

// initPath is where a --init container sees its init.
const initPath = "/dev/init"

// initCopy is the engine's copy of its binary for --init containers.
type initCopy struct {
	once sync.Once
	path string
	err  error
}

// withInit makes the --init binary PID 1 of s, running the command.
func (e *Engine) withInit(s *specs.Spec) error {
	e.init.once.Do(func() {
		dir := filepath.Join(e.opts.ExecRoot, "init")
		e.init.path = filepath.Join(dir, "shoal-init")
		b, err := os.ReadFile(e.opts.Binary)
		if err == nil {
			err = checkStatic(b)
		}
		if err == nil {
			err = os.MkdirAll(dir, 0o700)
		}
		if err == nil {
			err = atomicfile.WriteFile(e.init.path, b, 0o555)
		}
		if err != nil {
			e.init.err = fmt.Errorf("copy the --init binary: %w", err)
		}
	})
	if e.init.err != nil {
		return e.init.err
	}
	s.Process.Args = append([]string{initPath, InitArg, "--"}, s.Process.Args...)
	s.Mounts = append(s.Mounts, specs.Mount{Destination: initPath, Type: "bind", Source: e.init.path, Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}})
	return nil
}

// checkStatic refuses a dynamically linked binary: a container has not the
// host's loader and libraries, and its exec would fail as "not found".
func checkStatic(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return err
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("the binary is dynamically linked: build it static (CGO_ENABLED=0, as make build does)")
		}
	}
	return nil
}

// InitMain runs the --init: args are "--" and the command. It does not
// return.
func InitMain(args []string) {
	code, err := runInit(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shoal-init:", err)
	}
	os.Exit(code)
}

func runInit(args []string) (int, error) {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return 127, errors.New("no command given")
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return 127, fmt.Errorf("exec %s: %w", args[0], err)
	}
	// Caught since the program's start (package initsig), so a signal sent
	// before the command runs is passed on once it does, and an exit at
	// once is still seen.
	sigs := initsig.C
	if sigs == nil {
		sigs = make(chan os.Signal, 64)
		signal.Notify(sigs, append([]os.Signal{syscall.SIGCHLD}, initsig.Forwarded...)...)
	}
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}})
	if err != nil {
		code := 126
		if errors.Is(err, syscall.ENOENT) {
			code = 127
		}
		return code, fmt.Errorf("exec %s: %w", args[0], err)
	}
	for s := range sigs {
		if s != syscall.SIGCHLD {
			_ = syscall.Kill(pid, s.(syscall.Signal))
			continue
		}
		if code, done := reapAll(pid); done {
			return code, nil
		}
	}
	return 0, nil // not reached: the channel is never closed
}

// reapAll collects every child that has exited; done when one was the
// command, with its exit status.
func reapAll(cmd int) (code int, done bool) {
	for {
		var ws syscall.WaitStatus
		p, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if p <= 0 || err != nil {
			return code, done
		}
		if p != cmd {
			continue
		}
		done = true
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
}
