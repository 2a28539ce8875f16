package runtime

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Timer slack. While a Go process is busy, the runtime's monitor thread
// (sysmon) wakes every 20 µs to look for goroutines to preempt and
// processors to retake from system calls. On a virtual machine each of
// those wake-ups is a context switch through the hypervisor: measured while
// 1,000 replicas converged on ten daemons here, sysmon's nanosleeps were 4 %
// of the machine's CPU (2.3 % in the daemons, 1.7 % in the shims), about 200
// of them per `run --rm`, every one of them from sysmon. A 1 ms slack on
// that thread alone lets the kernel stretch those sleeps: sysmon preempts a
// goroutine that ran 10 ms and retakes a processor held by a system call up
// to 1 ms later than it would, which the daemon and the shims, that block
// in system calls rather than spin, do not notice.
const (
	monitorTimerSlack = 1_000_000 // ns
	// DefaultTimerSlack is the kernel's default timer slack of a thread
	// (50 µs), which every container process starts with: it may be forked
	// from a thread that inherited the monitor's slack (the runtime starts
	// some of its threads from the monitor).
	DefaultTimerSlack = 50_000 // ns
)

// SlowMonitor gives this process's Go monitor thread a 1 ms timer slack
// and returns its thread id. The monitor is the first thread the runtime
// starts, before any package is initialized: the lowest thread id above
// the process id. When thread ids wrapped around since the process
// started, none is above it and nothing is changed (0, nil).
func SlowMonitor() (int, error) {
	tid, err := monitorThread()
	if err != nil || tid == 0 {
		return 0, err
	}
	// Writing another thread's needs CAP_SYS_NICE, which the daemon and
	// shims have.
	if err := os.WriteFile(slackFile(tid), []byte(strconv.Itoa(monitorTimerSlack)), 0); err != nil {
		return 0, fmt.Errorf("timer slack of the runtime's monitor thread: %w", err)
	}
	return tid, nil
}

// slackFile holds thread tid's timer slack: its own /proc/TID, since
// /proc/self/task/TID has no timerslack_ns.
func slackFile(tid int) string { return "/proc/" + strconv.Itoa(tid) + "/timerslack_ns" }

// monitorThread finds the Go runtime's monitor thread (see SlowMonitor).
func monitorThread() (int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("list threads: %w", err)
	}
	pid, first := os.Getpid(), 0
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err == nil && tid > pid && (first == 0 || tid < first) {
			first = tid
		}
	}
	return first, nil
}

// ThreadSlackFromMain gives the calling thread, which the caller has
// locked, the timer slack of the process's main thread (which SlowMonitor
// leaves alone): for an execve that must not pass on the monitor's slack,
// which a thread the monitor started inherited.
func ThreadSlackFromMain() error {
	b, err := os.ReadFile(slackFile(os.Getpid()))
	if err != nil {
		return fmt.Errorf("timer slack of the main thread: %w", err)
	}
	ns, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("timer slack of the main thread: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0); err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	return nil
}
