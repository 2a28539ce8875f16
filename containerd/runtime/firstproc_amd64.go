package runtime

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The container's first process without a Go runtime of its own (see
// firstproc.go for who prepares what). It is cloned with CLONE_VM: it
// shares the parent's memory, runs on a stack of its own, with no Go
// scheduler, heap or signal handlers (CLONE_CLEAR_SIGHAND), until its
// execve replaces the memory it borrowed. Everything here is nosplit (no
// stack growth: there is no goroutine to grow), norace (the race detector's
// hooks need a goroutine), makes raw system calls only, and writes only
// numbers and bytes (no pointer writes, which could call the garbage
// collector's write barrier).

const cloneVMSupported = true

// cloneArgs is struct clone_args (linux/sched.h), as far as cgroup.
type cloneArgs struct {
	flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls, setTID, setTIDSize, cgroup uint64
}

func clone3VM(args *cloneArgs, size uintptr, p *childProg) (pid uintptr, errno uintptr)

// childEntry is where the cloned process starts (clone_amd64.s). It never
// returns: it execs the container's process or records its failure and
// exits. Its frames are kept small: the linker checks a nosplit chain
// against the 800 bytes a goroutine's stack guarantees, though this one
// runs on a stack of its own.
//
//go:nosplit
//go:norace
func childEntry(p *childProg) {
	var b [1]byte
	if n := try(p, stepRelease, unix.SYS_READ, uintptr(p.goFd), uintptr(unsafe.Pointer(&b[0])), 1, 0); n != 1 || b[0] != goByte {
		childFail(p, stepRelease, 0)
	}
	if p.console != 0 {
		c := try(p, stepStdio, unix.SYS_OPEN, p.console, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0, 0)
		p.stdio[0], p.stdio[1], p.stdio[2] = int(c), int(c), int(c)
	}
	// stdio onto 0, 1 and 2; any of them below 3 first moves above, so
	// that placing one cannot close another.
	for i := 0; i < 3; i++ {
		if p.stdio[i] < 3 {
			p.stdio[i] = int(try(p, stepStdio, unix.SYS_FCNTL, uintptr(p.stdio[i]), unix.F_DUPFD_CLOEXEC, 3, 0))
		}
	}
	for i := 0; i < 3; i++ {
		try(p, stepStdio, unix.SYS_DUP3, uintptr(p.stdio[i]), uintptr(i), 0, 0)
	}
	try(p, stepSetsid, unix.SYS_SETSID, 0, 0, 0, 0)
	if p.terminal {
		try(p, stepSetsid, unix.SYS_IOCTL, 0, unix.TIOCSCTTY, 0, 0)
	}
	// After the parent has placed us in our cgroup: the namespace's root
	// is the container's cgroup.
	if p.cgroupNS {
		try(p, stepCgroupNS, unix.SYS_UNSHARE, unix.CLONE_NEWCGROUP, 0, 0, 0)
	}
	for i := 0; i < p.nRlimits && i < len(p.rlimits); i++ {
		try(p, stepRlimit, unix.SYS_PRLIMIT64, 0, uintptr(p.rlimits[i].resource), uintptr(unsafe.Pointer(&p.rlimits[i].lim)), 0)
	}
	// The kernel's default, whatever shim thread cloned us (timerslack.go).
	try(p, stepTimerSlack, unix.SYS_PRCTL, unix.PR_SET_TIMERSLACK, DefaultTimerSlack, 0, 0)
	if p.noNewPrivs {
		try(p, stepNoNewPrivs, unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0)
	}
	childCloseFds(p)
	// Without no_new_privs loading a filter needs CAP_SYS_ADMIN: before
	// the capability drop (the order of init.go).
	if p.seccomp != 0 && !p.noNewPrivs {
		try(p, stepSeccomp, unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, p.seccompFlags, p.seccomp, 0)
	}
	childCredentials(p)
	try(p, stepChdir, unix.SYS_CHDIR, p.cwd, 0, 0, 0)
	try(p, stepChdir, unix.SYS_UMASK, uintptr(p.umask), 0, 0, 0)
	if p.fifoFd >= 0 {
		try(p, stepReady, unix.SYS_WRITE, uintptr(p.syncFd), p.ready, uintptr(p.readyLen), 0)
		try(p, stepReady, unix.SYS_CLOSE, uintptr(p.syncFd), 0, 0, 0)
		p.syncClosed = true
		// Blocks until `start` writes a byte: held read-write, the fifo
		// never reports EOF. Every signal is blocked: no EINTR.
		try(p, stepFifo, unix.SYS_READ, uintptr(p.fifoFd), uintptr(unsafe.Pointer(&b[0])), 1, 0)
		try(p, stepFifo, unix.SYS_CLOSE, uintptr(p.fifoFd), 0, 0, 0)
	}
	if p.seccomp != 0 && p.noNewPrivs {
		try(p, stepSeccomp, unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, p.seccompFlags, p.seccomp, 0)
	}
	// Born with every signal blocked (the parent blocked them around the
	// clone) and every handler at its default (CLONE_CLEAR_SIGHAND): the
	// container's process starts with none blocked.
	p.sigmask = 0
	try(p, stepExec, unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&p.sigmask)), 0, 8)
	if p.trampFd >= 0 {
		_, _, e := syscall.RawSyscall6(unix.SYS_EXECVEAT, uintptr(p.trampFd), p.emptyPath, p.trampArgv, p.envp, unix.AT_EMPTY_PATH, 0)
		childFail(p, stepExec, e)
	}
	try(p, stepExec, unix.SYS_EXECVE, p.path, p.argv, p.envp, 0)
	childFail(p, stepExec, 0) // execve returned without an error: cannot happen
}

// try makes a system call and fails the step on an error.
//
//go:nosplit
//go:norace
func try(p *childProg, step int, trap, a1, a2, a3, a4 uintptr) uintptr {
	r, _, e := syscall.RawSyscall6(trap, a1, a2, a3, a4, 0, 0)
	if e != 0 {
		childFail(p, step, e)
	}
	return r
}

// childCloseFds keeps 0-2, the sync pipe (moved to 3), the exec fifo
// (moved to 4) and the trampoline (moved to trampolineSlot), all
// close-on-exec, and closes every other descriptor the process got with
// its copy of ours: no descriptor but 0-2 may reach the container
// (CVE-2024-21626), and none of ours stays open in a process that may wait
// for `start` a long time.
//
//go:nosplit
//go:norace
func childCloseFds(p *childProg) {
	// Above 4 first, so that placing one cannot close the other.
	sync := try(p, stepCloseRange, unix.SYS_FCNTL, uintptr(p.syncFd), unix.F_DUPFD_CLOEXEC, 5, 0)
	if p.fifoFd >= 0 {
		fifo := try(p, stepCloseRange, unix.SYS_FCNTL, uintptr(p.fifoFd), unix.F_DUPFD_CLOEXEC, 5, 0)
		try(p, stepCloseRange, unix.SYS_DUP3, fifo, 4, unix.O_CLOEXEC, 0)
		p.fifoFd = 4
	}
	try(p, stepCloseRange, unix.SYS_DUP3, sync, 3, unix.O_CLOEXEC, 0)
	p.syncFd = 3
	next := uintptr(4)
	if p.fifoFd >= 0 {
		next = 5
	}
	if p.trampFd >= 0 {
		// Above trampolineSlot (firstProcPath sees to it): the moves of
		// the pipes to 3 and 4 above could not have closed it.
		try(p, stepCloseRange, unix.SYS_DUP3, uintptr(p.trampFd), trampolineSlot, unix.O_CLOEXEC, 0)
		p.trampFd = trampolineSlot
		next = trampolineSlot + 1
	}
	try(p, stepCloseRange, unix.SYS_CLOSE_RANGE, next, ^uintptr(0), 0, 0)
}

// childCredentials switches to the process's user and capabilities in the
// order of setUserAndCaps (caps.go): bounding set, keepcaps, groups, gid,
// uid, capset, ambient.
//
//go:nosplit
//go:norace
func childCredentials(p *childProg) {
	for c := uintptr(0); c < 64; c++ {
		if p.keepBounding&(1<<c) != 0 {
			continue
		}
		if _, _, e := syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0, 0, 0, 0); e != 0 {
			if e == unix.EINVAL {
				break // past the kernel's last capability
			}
			childFail(p, stepBounding, e)
		}
	}
	try(p, stepKeepCaps, unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0, 0)
	try(p, stepSetgroups, unix.SYS_SETGROUPS, uintptr(p.nGroups), p.groups, 0, 0)
	try(p, stepSetgid, unix.SYS_SETRESGID, uintptr(p.gid), uintptr(p.gid), uintptr(p.gid), 0)
	try(p, stepSetuid, unix.SYS_SETRESUID, uintptr(p.uid), uintptr(p.uid), uintptr(p.uid), 0)
	try(p, stepKeepCaps, unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0, 0)
	try(p, stepCapset, unix.SYS_CAPSET, p.capHdr, p.capData, 0, 0)
	if _, _, e := syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 && e != unix.EINVAL {
		childFail(p, stepAmbient, e)
	}
	for c := uintptr(0); c < 64; c++ {
		if p.ambient&(1<<c) != 0 {
			// One that cannot be raised is not a failure (the Go init
			// warns): it needs the capability permitted and inheritable.
			syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, c, 0, 0, 0)
		}
	}
}

// childFail records which step failed with which errno in the memory it
// shares with the parent, which reads them once the process is gone, says
// so on stderr when the parent no longer listens, and exits: 127 or 126
// for an exec that found nothing or nothing executable, as a shell does, 1
// otherwise.
//
//go:nosplit
//go:norace
func childFail(p *childProg, step int, e syscall.Errno) {
	p.failStep, p.failErrno = step, int(e)
	if p.syncClosed {
		syscall.RawSyscall(unix.SYS_WRITE, 2, p.failMsg, uintptr(p.failMsgLen))
	}
	code := uintptr(1)
	if step == stepExec {
		switch e {
		case unix.ENOENT:
			code = 127
		case unix.EACCES, unix.EPERM:
			code = 126
		}
	}
	for {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, code, 0, 0)
	}
}
