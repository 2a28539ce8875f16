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
// returns: it execs the container's process or reports and exits.
//
//go:nosplit
//go:norace
func childEntry(p *childProg) {
	var b [1]byte
	if n, _, e := syscall.RawSyscall(unix.SYS_READ, uintptr(p.goFd), uintptr(unsafe.Pointer(&b[0])), 1); n != 1 || b[0] != goByte {
		childFail(p, stepRelease, e)
	}
	// stdio onto 0, 1 and 2; any of them below 3 first moves above, so
	// that placing one cannot close another.
	var fds [3]int
	for i := 0; i < 3; i++ {
		fds[i] = p.stdio[i]
		if fds[i] < 3 {
			r, _, e := syscall.RawSyscall(unix.SYS_FCNTL, uintptr(fds[i]), unix.F_DUPFD_CLOEXEC, 3)
			if e != 0 {
				childFail(p, stepStdio, e)
			}
			fds[i] = int(r)
		}
	}
	for i := 0; i < 3; i++ {
		if _, _, e := syscall.RawSyscall(unix.SYS_DUP3, uintptr(fds[i]), uintptr(i), 0); e != 0 {
			childFail(p, stepStdio, e)
		}
	}
	if p.terminal {
		if _, _, e := syscall.RawSyscall(unix.SYS_SETSID, 0, 0, 0); e != 0 {
			childFail(p, stepSetsid, e)
		}
		if _, _, e := syscall.RawSyscall(unix.SYS_IOCTL, 0, unix.TIOCSCTTY, 0); e != 0 {
			childFail(p, stepSetsid, e)
		}
	}
	// After the parent has placed us in our cgroup: the namespace's root
	// is the container's cgroup.
	if p.cgroupNS {
		if _, _, e := syscall.RawSyscall(unix.SYS_UNSHARE, unix.CLONE_NEWCGROUP, 0, 0); e != 0 {
			childFail(p, stepCgroupNS, e)
		}
	}
	for i := 0; i < p.nRlimits; i++ {
		rl := &p.rlimits[i]
		if _, _, e := syscall.RawSyscall6(unix.SYS_PRLIMIT64, 0, uintptr(rl.resource), uintptr(unsafe.Pointer(&rl.lim)), 0, 0, 0); e != 0 {
			childFail(p, stepRlimit, e)
		}
	}
	if p.noNewPrivs {
		if _, _, e := syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0); e != 0 {
			childFail(p, stepNoNewPrivs, e)
		}
	}
	childCloseFds(p)
	// Without no_new_privs loading a filter needs CAP_SYS_ADMIN: before
	// the capability drop (the order of init.go).
	if p.seccomp != 0 && !p.noNewPrivs {
		if _, _, e := syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, p.seccompFlags, p.seccomp); e != 0 {
			childFail(p, stepSeccomp, e)
		}
	}
	childCredentials(p)
	if _, _, e := syscall.RawSyscall(unix.SYS_CHDIR, p.cwd, 0, 0); e != 0 {
		childFail(p, stepChdir, e)
	}
	syscall.RawSyscall(unix.SYS_UMASK, uintptr(p.umask), 0, 0)
	if p.fifoFd >= 0 {
		if _, _, e := syscall.RawSyscall(unix.SYS_WRITE, uintptr(p.syncFd), p.ready, uintptr(p.readyLen)); e != 0 {
			childFail(p, stepReady, e)
		}
		syscall.RawSyscall(unix.SYS_CLOSE, uintptr(p.syncFd), 0, 0)
		p.syncClosed = true
		// Blocks until `start` writes a byte: held read-write, the fifo
		// never reports EOF.
		for {
			_, _, e := syscall.RawSyscall(unix.SYS_READ, uintptr(p.fifoFd), uintptr(unsafe.Pointer(&b[0])), 1)
			if e == unix.EINTR {
				continue
			}
			if e != 0 {
				childFail(p, stepFifo, e)
			}
			break
		}
		syscall.RawSyscall(unix.SYS_CLOSE, uintptr(p.fifoFd), 0, 0)
	}
	if p.seccomp != 0 && p.noNewPrivs {
		if _, _, e := syscall.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, p.seccompFlags, p.seccomp); e != 0 {
			childFail(p, stepSeccomp, e)
		}
	}
	// Born with every signal blocked (the parent blocked them around the
	// clone) and every handler at its default (CLONE_CLEAR_SIGHAND): the
	// container's process starts with none blocked.
	var none uint64
	syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&none)), 0, 8, 0, 0)
	_, _, e := syscall.RawSyscall(unix.SYS_EXECVE, p.path, p.argv, p.envp)
	childFail(p, stepExec, e)
}

// childCloseFds keeps 0-2, the sync pipe (moved to 3) and the exec fifo
// (moved to 4), both close-on-exec, and closes every other descriptor the
// process got with its copy of ours: no descriptor but 0-2 may reach the
// container (CVE-2024-21626), and none of ours stays open in a process that
// may wait for `start` a long time.
//
//go:nosplit
//go:norace
func childCloseFds(p *childProg) {
	// Above 4 first, so that placing one cannot close the other.
	sync, _, e := syscall.RawSyscall(unix.SYS_FCNTL, uintptr(p.syncFd), unix.F_DUPFD_CLOEXEC, 5)
	if e != 0 {
		childFail(p, stepCloseRange, e)
	}
	fifo := uintptr(0)
	if p.fifoFd >= 0 {
		if fifo, _, e = syscall.RawSyscall(unix.SYS_FCNTL, uintptr(p.fifoFd), unix.F_DUPFD_CLOEXEC, 5); e != 0 {
			childFail(p, stepCloseRange, e)
		}
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_DUP3, sync, 3, unix.O_CLOEXEC); e != 0 {
		childFail(p, stepCloseRange, e)
	}
	p.syncFd = 3
	next := uintptr(4)
	if p.fifoFd >= 0 {
		if _, _, e := syscall.RawSyscall(unix.SYS_DUP3, fifo, 4, unix.O_CLOEXEC); e != 0 {
			childFail(p, stepCloseRange, e)
		}
		p.fifoFd = 4
		next = 5
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_CLOSE_RANGE, next, ^uintptr(0), 0); e != 0 {
		childFail(p, stepCloseRange, e)
	}
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
	if _, _, e := syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1, 0, 0, 0, 0); e != 0 {
		childFail(p, stepKeepCaps, e)
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_SETGROUPS, uintptr(p.nGroups), p.groups, 0); e != 0 {
		childFail(p, stepSetgroups, e)
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_SETRESGID, uintptr(p.gid), uintptr(p.gid), uintptr(p.gid)); e != 0 {
		childFail(p, stepSetgid, e)
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_SETRESUID, uintptr(p.uid), uintptr(p.uid), uintptr(p.uid)); e != 0 {
		childFail(p, stepSetuid, e)
	}
	if _, _, e := syscall.RawSyscall6(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 0, 0, 0, 0, 0); e != 0 {
		childFail(p, stepKeepCaps, e)
	}
	if _, _, e := syscall.RawSyscall(unix.SYS_CAPSET, p.capHdr, p.capData, 0); e != 0 {
		childFail(p, stepCapset, e)
	}
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

// childFail reports which step failed with which errno, on the sync pipe
// while the parent reads it (a JSON line that syncMsg decodes), on stderr
// once it is closed, and exits: 127 or 126 for an exec that found nothing
// or nothing executable, as a shell does, 1 otherwise.
//
//go:nosplit
//go:norace
func childFail(p *childProg, step int, e syscall.Errno) {
	buf := &p.report
	n := 0
	fd := uintptr(p.syncFd)
	if p.syncClosed {
		fd = 2
		n = putString(buf, n, "shoal-init: failed step ")
		n = putNum(buf, n, uint64(step))
		n = putString(buf, n, ", errno ")
		n = putNum(buf, n, uint64(e))
		n = putString(buf, n, "\n")
	} else {
		n = putString(buf, n, `{"cstep":`)
		n = putNum(buf, n, uint64(step))
		n = putString(buf, n, `,"errno":`)
		n = putNum(buf, n, uint64(e))
		n = putString(buf, n, "}\n")
	}
	syscall.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(n))
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

//go:nosplit
//go:norace
func putString(buf *[64]byte, n int, s string) int {
	for i := 0; i < len(s) && n < len(buf); i++ {
		buf[n] = s[i]
		n++
	}
	return n
}

//go:nosplit
//go:norace
func putNum(buf *[64]byte, n int, v uint64) int {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 || i == 0 {
			break
		}
	}
	for ; i < len(d) && n < len(buf); i++ {
		buf[n] = d[i]
		n++
	}
	return n
}
