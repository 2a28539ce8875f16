package runtime

import (
	"fmt"
	"os"
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
	fds, err := openNamespaces(join)
	if err != nil {
		return err
	}
	defer closeFds(fds)
	errc := make(chan error, 1)
	onDisposableThread(func() {
		for i, ns := range join {
			if err := unix.Setns(fds[i], ns.typ); err != nil {
				errc <- fmt.Errorf("join namespace %s: %w", ns.path, err)
				return
			}
		}
		errc <- cmd.Start()
	})
	return <-errc
}

// openNamespaces opens every path of join first, in our own namespaces, so
// that joining one (say the network namespace) cannot change what the next
// path means.
func openNamespaces(join []nsPath) ([]int, error) {
	fds := make([]int, 0, len(join))
	for _, ns := range join {
		fd, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			closeFds(fds)
			return nil, fmt.Errorf("open namespace %s: %w", ns.path, err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// onDisposableThread runs fn, and waits for it, on an OS thread that is
// locked to it and never unlocked: when fn returns the Go runtime destroys
// the thread, so whatever fn changed in it (namespaces joined, root) never
// reaches another goroutine. Never the main thread, which the runtime
// never destroys and whose namespaces /proc/self/ns shows.
func onDisposableThread(fn func()) {
	done := make(chan struct{})
	var run func()
	run = func() {
		goruntime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// A new goroutine cannot run on this locked thread: it gets
			// another one; this one is unlocked once it has finished.
			inner := make(chan struct{})
			go func() { run(); close(inner) }()
			<-inner
			goruntime.UnlockOSThread()
			return
		}
		fn()
	}
	go func() { run(); close(done) }()
	<-done
}

// initConfig is what the parent sends the init on fd 3 (in the binary
// form of initcodec.go).
type initConfig struct {
	Mode   string
	Spec   *specs.Spec
	Rootfs string
	Bundle string
	Fifo   bool // fd 6 is the exec fifo
	UserNS bool
	// AttachRootfs: the rootfs is a detached mount (fd 5 for a Go init,
	// rootfsMount in a first process) to attach at Rootfs.
	AttachRootfs bool
	Console      string // host path of the pty slave for /dev/console
	// NewConsole: allocate the terminal on the container's devpts
	// (newConsole), bind it on /dev/console and make it the process's.
	NewConsole  bool
	NoPivot     bool
	MountNS     string
	PidNS       string // exec: joined by the init's thread, for its child only
	NewCgroupNS bool
	CgroupMode  cgroups.Mode
	CgroupRoot  string
	CgroupPath  string
	Seccomp     *seccomp.Program

	// procPidNS, when > 0, is the pid namespace whose proc the rootfs
	// gets (a first process's, firstproc.go); not sent to a Go init.
	procPidNS int
	// rootfsMount, when > 0, is the detached rootfs mount of a first
	// process (firstproc.go); a Go init finds it at fd 5.
	rootfsMount int
	// console and consoleSlave are the terminal newConsole allocated, and
	// consoleName the slave's path in the container (/dev/pts/N). In the
	// parent, console is what a Go init sent back.
	console, consoleSlave *os.File
	consoleName           string
}
