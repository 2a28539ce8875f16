package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
)

// A container's first process without a second Go program. The Go init
// (init.go) is the runtime's binary executed again for every container: an
// execve, a Go runtime start, a configuration to decode and an exit, about
// 7 ms of CPU of its 13 on these machines (perf, session 14). Here the
// runtime's own process does the init's work instead:
//
//   - a dedicated, locked OS thread joins the container's network namespace,
//     unshares a mount, UTS and IPC namespace of its own, and clones the
//     container's first process into a new pid namespace;
//   - that process shares the runtime's memory (CLONE_VM) and mount, UTS and
//     IPC namespaces, runs no Go code that needs the runtime
//     (firstproc_amd64.go) and waits on a pipe;
//   - the thread, with the runtime's ordinary Go code (mount.go), builds the
//     rootfs in the shared mount namespace, mounts a proc of the new pid
//     namespace (procfs's pidns option, Linux 6.15), pivots, masks, sets the
//     hostname and finds the executable, while the process is moved into
//     its cgroup; pivot_root moves the process's root along with the
//     thread's;
//   - released, the process sets what is its own (stdio, session, rlimits,
//     no_new_privs, seccomp, user, capabilities, working directory, umask),
//     waits for `start` if asked, and execs.
//
// The thread dies with its goroutine (never unlocked), so no other
// goroutine ever runs in the container's namespaces or root. Where this
// path does not apply (an exec into a running container, user namespaces,
// a mount namespace to join, no pivot, an older kernel, another
// architecture, or SHOAL_INIT=go in the environment), the Go init runs as
// before.
//
// Until its execve the process's /proc/self/exe is our binary, and the
// container's program is what it executes: a script "#!/proc/self/exe"
// would run our binary as the container's process, which could then keep
// it open and write to it once no shoal process runs it (CVE-2019-5736).
// A shim runs from a sealed memfd, so it execs the program directly. `shoal
// runtime run` runs from the file on disk: its process first executes the
// trampoline, a program of a few instructions (trampoline_amd64.go) in a
// sealed memfd, which then execs the container's program, so that at that
// execve /proc/self/exe is the trampoline's sealed copy. The trampoline's
// execveat runs under the container's seccomp filter, so the path is taken
// only when the filter lets it through. An unsealed binary with a create and
// start apart (`shoal runtime create`) keeps the Go init: its process would
// wait for `start` with our binary as its /proc/PID/exe in a pid namespace
// that `exec` can join.

// childProg is everything the first process does between its clone and its
// execve, decided beforehand. Its fields are numbers, or addresses of
// memory that firstProc keeps alive until the process is gone.
type childProg struct {
	goFd, syncFd, fifoFd int // fifoFd < 0: no create/start split
	stdio                [3]int
	terminal             bool    // stdin becomes the controlling terminal (of its new session)
	console              uintptr // NUL-terminated: a terminal to open as stdio instead (CreateConsole)
	cgroupNS             bool
	noNewPrivs           bool
	rlimits              [16]rlimitSet // the first nRlimits (validateSpec refuses repeats)
	nRlimits             int
	seccomp              uintptr // *unix.SockFprog, 0 for none
	seccompFlags         uintptr
	keepBounding         uint64
	groups               uintptr // *uint32, nGroups of them
	nGroups              int
	uid, gid             int
	capHdr, capData      uintptr // *unix.CapUserHeader, *[2]unix.CapUserData
	ambient              uint64
	cwd                  uintptr // NUL-terminated
	umask                int
	path, argv, envp     uintptr // NUL-terminated; NULL-terminated arrays
	// trampFd >= 0: exec the trampoline from that descriptor (moved to a
	// fixed slot by childCloseFds), with trampArgv, instead of path.
	trampFd   int
	trampArgv uintptr
	emptyPath uintptr // "" for execveat's AT_EMPTY_PATH
	ready     uintptr // readyMsg
	readyLen  int

	failMsg    uintptr // what it says on stderr when it fails after its report
	failMsgLen int

	// Written by the process itself; the parent reads the failure once
	// the process has closed its end of the sync pipe.
	syncClosed          bool
	sigmask             uint64
	failStep, failErrno int
}

type rlimitSet struct {
	resource int
	lim      unix.Rlimit
}

// The steps a first process can fail at (childProg.failStep).
const (
	stepRelease = iota + 1
	stepStdio
	stepSetsid
	stepCgroupNS
	stepRlimit
	stepTimerSlack
	stepNoNewPrivs
	stepCloseRange
	stepSeccomp
	stepBounding
	stepKeepCaps
	stepSetgroups
	stepSetgid
	stepSetuid
	stepCapset
	stepAmbient
	stepChdir
	stepReady
	stepFifo
	stepExec
)

var stepNames = [...]string{
	stepRelease: "wait for release", stepStdio: "stdio", stepSetsid: "new session",
	stepCgroupNS: "unshare cgroup namespace", stepRlimit: "setrlimit", stepTimerSlack: "timer slack", stepNoNewPrivs: "no_new_privs",
	stepCloseRange: "close_range", stepSeccomp: "seccomp: load filter", stepBounding: "drop bounding capabilities",
	stepKeepCaps: "keepcaps", stepSetgroups: "setgroups", stepSetgid: "setresgid", stepSetuid: "setresuid",
	stepCapset: "capset", stepAmbient: "clear ambient capabilities", stepChdir: "chdir",
	stepReady: "report ready", stepFifo: "wait for start", stepExec: "exec",
}

// firstProc holds what a first process reads until it is gone.
type firstProc struct {
	prog  childProg
	stack []byte
	keep  []any
}

// firstProcUnsealed lets the package's tests, whose binary is not sealed,
// take the direct path where production would keep the Go init (a create
// and start apart); firstProcStarts counts the processes started on this
// path.
var (
	firstProcUnsealed bool
	firstProcStarts   atomic.Int64
)

// How a first process starts, if it is cloned (firstProcPath).
type firstProcExec int

const (
	viaGoInit      firstProcExec = iota // not cloned: the Go init
	execDirect                          // cloned; execs the program
	execTrampoline                      // cloned; execs the sealed trampoline, which execs the program
)

// firstProcPath tells whether the container of cfg starts through a first
// process cloned by this process rather than the Go init, and how that
// process execs the container's program.
func firstProcPath(cfg *initConfig, clone uintptr) firstProcExec {
	const handled = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET
	if !cloneVMSupported || raceBuild || os.Getenv("SHOAL_INIT") == "go" {
		return viaGoInit
	}
	if cfg.Mode == modeExec || cfg.UserNS || cfg.MountNS != "" || cfg.NoPivot ||
		clone&unix.CLONE_NEWNS == 0 || clone&unix.CLONE_NEWPID == 0 || clone&^handled != 0 {
		return viaGoInit
	}
	// Go raised this process's soft RLIMIT_NOFILE at start and gives its
	// children the original back on exec; the cloned process inherits the
	// raised one, so it needs the limit from the spec (as the daemon's
	// specs always have it).
	nofile := false
	for _, rl := range cfg.Spec.Process.Rlimits {
		nofile = nofile || rl.Type == "RLIMIT_NOFILE"
	}
	if !nofile {
		return viaGoInit
	}
	for _, m := range cfg.Spec.Mounts {
		if m.Type == "proc" {
			if flags, _, _ := parseMountOptions(m.Options); flags&^procMountFlags != 0 {
				return viaGoInit
			}
		}
	}
	if !procPidNSSupported() {
		return viaGoInit
	}
	if selfSealed() || (cfg.Fifo && firstProcUnsealed) {
		return execDirect
	}
	if cfg.Fifo {
		return viaGoInit
	}
	if cfg.Seccomp != nil && !cfg.Seccomp.Allows(unix.SYS_EXECVEAT, [6]uint64{trampolineSlot, 0, 0, 0, unix.AT_EMPTY_PATH}) {
		return viaGoInit
	}
	// childCloseFds moves the trampoline to trampolineSlot after the pipes
	// to 3 and 4: it must start above them (SealedCopy puts it at highFD,
	// unless the descriptor limit is lower than that).
	if f, err := sealedTrampoline(); err != nil || f.Fd() <= trampolineSlot {
		return viaGoInit
	}
	return execTrampoline
}

// trampolineSlot is the descriptor the trampoline is executed from.
const trampolineSlot = 5

// emptyPath is the "" of execveat's AT_EMPTY_PATH (a global: it never moves).
var emptyPath = [1]byte{}

// selfSealed tells whether this process runs from a view of its binary
// that nobody can write (seal.go): a shim's sealed memfd, say.
var selfSealed = sync.OnceValue(func() bool { return isSealed("/proc/self/exe") })

// The trampoline in a sealed memfd, made on first use.
var sealedTrampoline = sync.OnceValues(func() (*os.File, error) {
	return SealedCopy("shoal-exec", bytes.NewReader(trampolineELF()))
})

var procPidNS struct {
	once sync.Once
	ok   bool
}

// procPidNSSupported tells whether a proc filesystem can be made for a pid
// namespace its mounter is not in (Linux 6.15).
func procPidNSSupported() bool {
	procPidNS.once.Do(func() {
		fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
		if err != nil {
			return
		}
		defer unix.Close(fs)
		ns, err := unix.Open("/proc/self/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		defer unix.Close(ns)
		procPidNS.ok = unix.FsconfigSetFd(fs, "pidns", ns) == nil
	})
	return procPidNS.ok
}

// startFirstProc starts the container of cfg as described above and
// returns its first process, as startInit does for the Go init.
func (r *Runtime) startFirstProc(cfg *initConfig, join []nsPath, clone uintptr, how firstProcExec, extra *extraFiles, stdio Stdio, cg cgroups.Manager, t *timer) (*os.Process, *child, error) {
	f, files, err := newFirstProc(cfg, extra, stdio)
	if extra != nil && extra.rootfs != nil {
		cfg.rootfsMount = int(extra.rootfs.Fd())
	}
	defer files.close()
	if err != nil {
		return nil, nil, err
	}
	if how == execTrampoline {
		tf, err := sealedTrampoline()
		if err != nil {
			return nil, nil, fmt.Errorf("start init: %w", err)
		}
		f.prog.trampFd = int(tf.Fd())
		f.prog.emptyPath = uintptr(unsafe.Pointer(&emptyPath[0]))
	}
	fds, err := openNamespaces(join)
	if err != nil {
		return nil, nil, err
	}
	defer closeFds(fds)
	type result struct {
		pid   int
		start uint64
		err   error
	}
	resc := make(chan result, 1)
	onDisposableThread(func() {
		pid, start, err := f.prepare(cfg, join, fds, clone, files, cg, t)
		resc <- result{pid, start, err}
	})
	res := <-resc
	if cfg.consoleSlave != nil {
		cfg.consoleSlave.Close() // the process opens its own
		cfg.consoleSlave = nil
	}
	if res.err != nil {
		return nil, nil, asParentError(res.err)
	}
	firstProcStarts.Add(1)
	proc, err := os.FindProcess(res.pid)
	if err != nil {
		_ = unix.Kill(res.pid, unix.SIGKILL)
		reapPid(res.pid)
		return nil, nil, fmt.Errorf("start init: %w", err)
	}
	c := &child{done: make(chan struct{}), startTime: res.start}
	go func() {
		AwaitExit(proc.Pid)
		ps, err := proc.Wait()
		c.status = exitCode(ps, err)
		goruntime.KeepAlive(f) // the process may read it until it is gone
		close(c.done)
	}()
	var msg syncMsg
	err = json.NewDecoder(files.syncR).Decode(&msg)
	t.mark("init")
	fail := func(err error) (*os.Process, *child, error) {
		_ = proc.Kill()
		<-c.done
		return nil, nil, err
	}
	// EOF: the process exec'd or exited, and its failure, if any, is in
	// the memory we shared.
	if step := f.prog.failStep; errors.Is(err, io.EOF) && step != 0 {
		return fail(stepError(step, f.prog.failErrno, cfg.Spec.Process.Args[0]))
	}
	switch {
	case errors.Is(err, io.EOF):
		if cfg.Mode != modeRun {
			return fail(errors.New("init exited during setup"))
		}
		return proc, c, nil // exec'd: its end of the sync pipe closed on exec
	case err != nil:
		return fail(fmt.Errorf("read from init: %w", err))
	}
	return proc, c, nil
}

// stepError is the failure a first process left (its step and errno),
// worded as the Go init words it.
func stepError(step, errno int, arg0 string) error {
	e := syscall.Errno(errno)
	name := "step " + strconv.Itoa(step)
	if step > 0 && step < len(stepNames) && stepNames[step] != "" {
		name = stepNames[step]
	}
	if step == stepExec {
		return asParentError(execError(arg0, e))
	}
	return fmt.Errorf("%s: %w", name, e)
}

// asParentError turns an error the Go init would have reported on its sync
// pipe into the error its parent makes of that report (syncMsg.err).
func asParentError(err error) error {
	var ie *initError
	if errors.As(err, &ie) {
		return syncMsg{Error: ie.Error(), Kind: ie.kind}.err()
	}
	return err
}

// firstProcFiles are the parent's descriptors for one first process.
type firstProcFiles struct {
	goR, goW, syncR, syncW, devNull *os.File
}

func (fs *firstProcFiles) close() {
	for _, f := range []*os.File{fs.goR, fs.goW, fs.syncR, fs.syncW, fs.devNull} {
		if f != nil {
			f.Close()
		}
	}
}

// newFirstProc decides everything the first process does that does not
// depend on the rootfs.
func newFirstProc(cfg *initConfig, extra *extraFiles, stdio Stdio) (*firstProc, *firstProcFiles, error) {
	files := &firstProcFiles{}
	var err error
	if files.goR, files.goW, err = os.Pipe(); err != nil {
		return nil, files, err
	}
	if files.syncR, files.syncW, err = os.Pipe(); err != nil {
		return nil, files, err
	}
	spec := cfg.Spec
	proc := spec.Process
	f := &firstProc{stack: make([]byte, 64<<10)}
	p := &f.prog
	p.goFd, p.syncFd, p.fifoFd, p.trampFd = int(files.goR.Fd()), int(files.syncW.Fd()), -1, -1
	if extra != nil && extra.fifo != nil {
		p.fifoFd = int(extra.fifo.Fd())
	}
	for i, sf := range []*os.File{stdio.Stdin, stdio.Stdout, stdio.Stderr} {
		if sf == nil {
			if files.devNull == nil {
				if files.devNull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
					return nil, files, err
				}
			}
			sf = files.devNull
		}
		p.stdio[i] = int(sf.Fd())
	}
	p.terminal = cfg.Console != "" || cfg.NewConsole
	p.cgroupNS = cfg.NewCgroupNS
	p.noNewPrivs = proc.NoNewPrivileges
	if len(proc.Rlimits) > len(p.rlimits) {
		return nil, files, fmt.Errorf("%w: %d rlimits", ErrInvalid, len(proc.Rlimits))
	}
	for i, rl := range proc.Rlimits {
		p.rlimits[i] = rlimitSet{resource: rlimitByName[rl.Type], lim: unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}}
	}
	p.nRlimits = len(proc.Rlimits)
	if s := cfg.Seccomp; s != nil {
		if len(s.Filter) == 0 {
			return nil, files, errors.New("seccomp: empty program")
		}
		fprog := &unix.SockFprog{Len: uint16(len(s.Filter)), Filter: &s.Filter[0]}
		p.seccomp, p.seccompFlags = uintptr(unsafe.Pointer(fprog)), uintptr(s.Flags)
		f.keep = append(f.keep, fprog, s)
	}
	// Capabilities as setUserAndCaps sets them; a warning goes where the
	// Go init writes it, to the container's stderr.
	w := os.Stderr
	if stdio.Stderr != nil {
		w = stdio.Stderr
	}
	caps := grantableCaps(proc, w)
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := new([2]unix.CapUserData)
	*data = capsetData(caps)
	p.capHdr, p.capData = uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(data))
	p.keepBounding, p.ambient = caps.bounding, caps.amb
	groups := make([]uint32, len(proc.User.AdditionalGids)+1) // never empty: &groups[0] is valid
	copy(groups, proc.User.AdditionalGids)
	p.groups, p.nGroups = uintptr(unsafe.Pointer(&groups[0])), len(proc.User.AdditionalGids)
	p.uid, p.gid = int(proc.User.UID), int(proc.User.GID)
	cwd, err := syscall.BytePtrFromString(proc.Cwd)
	if err != nil {
		return nil, files, fmt.Errorf("%w: process.cwd: %v", ErrInvalid, err)
	}
	p.cwd = uintptr(unsafe.Pointer(cwd))
	p.umask = 0o022
	if proc.User.Umask != nil {
		p.umask = int(*proc.User.Umask)
	}
	argv, err := syscall.SlicePtrFromStrings(proc.Args)
	if err != nil {
		return nil, files, fmt.Errorf("%w: process.args: %v", ErrInvalid, err)
	}
	envp, err := syscall.SlicePtrFromStrings(proc.Env)
	if err != nil {
		return nil, files, fmt.Errorf("%w: process.env: %v", ErrInvalid, err)
	}
	p.argv, p.envp = uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envp[0]))
	ready := []byte(readyMsg)
	p.ready, p.readyLen = uintptr(unsafe.Pointer(&ready[0])), len(ready)
	failMsg := []byte("shoal-init: " + proc.Args[0] + ": could not start the process after its start was requested\n")
	p.failMsg, p.failMsgLen = uintptr(unsafe.Pointer(&failMsg[0])), len(failMsg)
	f.keep = append(f.keep, hdr, data, groups, cwd, argv, envp, ready, failMsg)
	return f, files, nil
}

// prepare runs on the dedicated thread: it enters the container's
// namespaces, clones the first process, places it in its cgroup, builds the
// rootfs and releases the process. It returns the process's pid and start
// time; on an error there is no process.
func (f *firstProc) prepare(cfg *initConfig, join []nsPath, fds []int, clone uintptr, files *firstProcFiles, cg cgroups.Manager, t *timer) (int, uint64, error) {
	for i, ns := range join {
		if err := unix.Setns(fds[i], ns.typ); err != nil {
			return 0, 0, fmt.Errorf("join namespace %s: %w", ns.path, err)
		}
	}
	// The mount namespace, root and cwd become this thread's alone.
	if err := unix.Unshare(unix.CLONE_FS | int(clone&(unix.CLONE_NEWNS|unix.CLONE_NEWUTS|unix.CLONE_NEWIPC|unix.CLONE_NEWNET))); err != nil {
		return 0, 0, fmt.Errorf("unshare namespaces: %w", err)
	}
	args := cloneArgs{
		flags:      unix.CLONE_VM | unix.CLONE_CLEAR_SIGHAND | unix.CLONE_NEWPID,
		exitSignal: uint64(unix.SIGCHLD),
		stack:      uint64(uintptr(unsafe.Pointer(&f.stack[0]))),
		stackSize:  uint64(len(f.stack)),
	}
	// On cgroup v2 the process is cloned straight into its cgroup.
	cgfd := openCgroupDir(cg)
	cloned := cgfd >= 0
	if cloned {
		defer unix.Close(cgfd)
		args.flags |= unix.CLONE_INTO_CGROUP
		args.cgroup = uint64(cgfd)
	}
	// The process shares our memory until its execve: nothing in the
	// container may ptrace it or read its memory through /proc, which
	// takes a dumpable process (CVE-2016-9962). Ours stays non-dumpable.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 0, 0, fmt.Errorf("set non-dumpable: %w", err)
	}
	// Blocked around the clone, so that the process is born with every
	// signal blocked; it unblocks them just before its execve. The fork
	// lock keeps other goroutines' descriptors from leaking into it
	// half-made (those it inherits are closed on its execve).
	syscall.ForkLock.Lock()
	all, old := ^uint64(0), uint64(0)
	syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0)
	r1, errno := clone3VM(&args, unsafe.Sizeof(args), &f.prog)
	syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	syscall.ForkLock.Unlock()
	if errno != 0 {
		return 0, 0, fmt.Errorf("start init: clone3: %w", syscall.Errno(errno))
	}
	pid := int(r1)
	t.mark("fork")
	// The process has its own copies of these.
	files.goR.Close()
	files.syncW.Close()
	files.goR, files.syncW = nil, nil
	fail := func(err error) (int, uint64, error) {
		_ = unix.Kill(pid, unix.SIGKILL)
		reapPid(pid)
		return 0, 0, err
	}
	if cg != nil && !cloned {
		if err := cg.Apply(pid); err != nil {
			return fail(err)
		}
	}
	t.mark("apply")
	_, start, ok := procStat(pid)
	if !ok {
		return fail(errors.New("init exited at start"))
	}
	if adj := cfg.Spec.Process.OOMScoreAdj; adj != nil {
		if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(strconv.Itoa(*adj)), 0); err != nil {
			return fail(fmt.Errorf("oom_score_adj: %w", err))
		}
	}
	pidns, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("open pid namespace: %w", err))
	}
	defer unix.Close(pidns)
	cfg.procPidNS = pidns
	if err := setupRootfs(cfg); err != nil {
		return fail(err)
	}
	spec := cfg.Spec
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fail(fmt.Errorf("sethostname: %w", err))
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return fail(fmt.Errorf("setdomainname: %w", err))
		}
	}
	if cfg.NewConsole {
		// The process opens it by its name in the container, where its
		// root now is: it has its own table of descriptors.
		name, err := syscall.BytePtrFromString(cfg.consoleName)
		if err != nil {
			return fail(err)
		}
		f.prog.console = uintptr(unsafe.Pointer(name))
		f.keep = append(f.keep, name)
	}
	// Found from this thread, whose root is now the container's.
	path, err := lookPath(spec.Process)
	if err != nil {
		return fail(err)
	}
	cpath, err := syscall.BytePtrFromString(path)
	if err != nil {
		return fail(err)
	}
	f.prog.path = uintptr(unsafe.Pointer(cpath))
	f.keep = append(f.keep, cpath)
	if f.prog.trampFd >= 0 {
		msg := "shoal-init: exec " + path + " failed (exit status 127: not found, 126: not permitted)\n"
		targv, err := syscall.SlicePtrFromStrings(append([]string{path, msg}, spec.Process.Args...))
		if err != nil {
			return fail(err)
		}
		f.prog.trampArgv = uintptr(unsafe.Pointer(&targv[0]))
		f.keep = append(f.keep, targv)
	}
	t.mark("rootfs")
	if _, err := files.goW.Write([]byte{goByte}); err != nil {
		return fail(fmt.Errorf("release init: %w", err))
	}
	return pid, start, nil
}
