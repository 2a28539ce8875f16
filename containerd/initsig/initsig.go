// Package initsig catches the signals of the --init process (mode
// "container-init") from the start of the program: its init function runs
// as soon as os/signal is ready, long before the rest of the binary's
// packages are initialised. Without it a signal that arrives meanwhile (a
// `stop` right after `run -d`) reaches the Go runtime's default handler,
// which, as PID 1 of a pid namespace, cannot die from it and exits 2.
package initsig

import (
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"unsafe"
)

// Arg is the first argument of the --init mode.
const Arg = "container-init"

// Forwarded are the signals the init passes on to its command: every one a
// user or `stop` sends, not those the Go runtime uses itself (SIGURG,
// SIGPIPE) nor SIGCHLD, which is the init's own.
var Forwarded = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR1,
	syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP,
	syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPWR, syscall.SIGXCPU, syscall.SIGVTALRM, syscall.SIGPROF,
}

// C receives the forwarded signals and SIGCHLD when this process is the
// --init, from program start; nil otherwise.
var C chan os.Signal

// ReadyName is the init's name (/proc/PID/comm) once it catches signals:
// until then a signal ends it with exit code 2 (the Go runtime's, above),
// so the engine waits for this name before it signals a container that was
// started a moment ago (containers.Engine.Kill and Stop).
const ReadyName = "shoal-init"

func init() {
	if len(os.Args) < 2 || os.Args[1] != Arg {
		return
	}
	// One P from here on: every thread of the init counts against the
	// container's pids limit, and the Go runtime adds threads with its Ps
	// (containers.InitMinPids).
	runtime.GOMAXPROCS(1)
	C = make(chan os.Signal, 64)
	signal.Notify(C, append([]os.Signal{syscall.SIGCHLD}, Forwarded...)...)
	name := []byte(ReadyName + "\x00")
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0)
}
