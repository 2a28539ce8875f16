package runtime

import (
	"fmt"
	"os/exec"
	goruntime "runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/seccomp"
)

// nsPath is a namespace to join before the fork.
type nsPath struct {
	typ  int // CLONE_NEW*
	path string
}

// startJoined starts cmd so that the child is born inside the namespaces
// listed in join. The setns calls are made on a dedicated OS thread, locked
// and never unlocked: when the goroutine returns the Go runtime destroys the
// thread, so no other goroutine ever runs in those namespaces. For the pid
// namespace this is the only way to get a child into it (setns(pid) only
// changes where the caller's children go). The Go runtime does not clone new
// threads from a locked thread, which matters because a thread whose
// pid_for_children differs may not create threads.
func startJoined(cmd *exec.Cmd, join []nsPath) error {
	if len(join) == 0 {
		return cmd.Start()
	}
	// Open every path first, in our own namespaces, so that joining one
	// (say the network namespace) cannot change what the next path means.
	fds := make([]int, len(join))
	for i, ns := range join {
		fd, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			for _, f := range fds[:i] {
				unix.Close(f)
			}
			return fmt.Errorf("open namespace %s: %w", ns.path, err)
		}
		fds[i] = fd
	}
	defer func() {
		for _, f := range fds {
			unix.Close(f)
		}
	}()
	errc := make(chan error, 1)
	var run func()
	run = func() {
		goruntime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is never destroyed (the runtime parks it),
			// and /proc/self/ns shows its namespaces: use another thread.
			// A new goroutine cannot run on this locked one; keep it
			// locked until the other has finished.
			done := make(chan struct{})
			go func() { run(); close(done) }()
			<-done
			goruntime.UnlockOSThread()
			return
		}
		// Deliberately no UnlockOSThread: the thread dies with this goroutine.
		for i, ns := range join {
			if err := unix.Setns(fds[i], ns.typ); err != nil {
				errc <- fmt.Errorf("join namespace %s: %w", ns.path, err)
				return
			}
		}
		errc <- cmd.Start()
	}
	go run()
	return <-errc
}

// initConfig is what the parent sends the init on fd 3 (in the binary
// form of initcodec.go).
type initConfig struct {
	Mode        string
	Spec        *specs.Spec
	Rootfs      string
	Bundle      string
	Fifo        bool // fd 6 is the exec fifo
	UserNS      bool
	Console     string // host path of the pty slave for /dev/console
	NoPivot     bool
	MountNS     string
	PidNS       string // exec: joined by the init's thread, for its child only
	NewCgroupNS bool
	CgroupMode  cgroups.Mode
	CgroupRoot  string
	CgroupPath  string
	Seccomp     *seccomp.Program
}
