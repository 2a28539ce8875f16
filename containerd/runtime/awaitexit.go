package runtime

import (
	"os"

	"golang.org/x/sys/unix"
)

// AwaitExit returns once our child pid has exited (it is not reaped: the
// caller's Wait does that, then without blocking). It waits in the
// netpoller, on a pidfd, which becomes readable at the exit, where Wait
// alone would sit in waitid(2) for the container's whole life: a thread
// and its P held in a system call, which keeps the runtime's sysmon
// polling and, in a process with one P (the shim runs on one), stalls
// every other goroutine until sysmon takes the P back; in the daemon, a
// thread per running container. If no pidfd can be had (kernels before
// 5.3), it returns at once and Wait blocks as before.
func AwaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		// Asked again after each wake-up: done once the child is a zombie.
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		return err != nil || info.Signo != 0
	})
}
