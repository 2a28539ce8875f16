package runtime

import (
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/oci"
)

// slack is thread tid's timer slack, as /proc shows it ("" if unreadable).
func slack(tid int) string {
	b, _ := os.ReadFile(slackFile(tid))
	return strings.TrimSpace(string(b))
}

// switches is a thread's voluntary context switches (/proc/PID/task/TID/status).
func switches(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no voluntary_ctxt_switches")
	return 0
}

// busy keeps the runtime's monitor awake for d, as a daemon's mkdirs and
// fsyncs do: it wakes every 20 µs while it keeps finding processors held in
// system calls longer than that to retake; a goroutine spins beside them,
// so that there is other work for the processor. The blocking call is
// ppoll, not nanosleep, so that the monitor is the only thread found in
// nanosleep. Meanwhile, every millisecond, it notes which threads are in
// nanosleep (/proc/self/task/TID/syscall) and returns the count per thread.
func busy(d time.Duration) map[int]int {
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for n := 0; !stop.Load(); n++ {
		}
	}()
	go func() {
		defer wg.Done()
		ts := unix.Timespec{Nsec: 100_000}
		for !stop.Load() {
			_, _ = unix.Ppoll(nil, &ts, nil)
		}
	}()
	seen := map[int]int{}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Millisecond) {
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/syscall")
			if f := strings.Fields(string(b)); err == nil && len(f) > 0 && f[0] == strconv.Itoa(unix.SYS_NANOSLEEP) {
				tid, _ := strconv.Atoi(task.Name())
				seen[tid]++
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	return seen
}

// TestSlowMonitor: the thread SlowMonitor picks is the one found sleeping
// in nanosleep while the process is busy (the monitor: no other thread of
// this test does), and it gets the 1 ms slack, no other thread. How many
// fewer wake-ups that makes depends on the machine's other timers; it is
// logged, and measured in docs/engine.md.
func TestSlowMonitor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_SYS_NICE to set another thread's timer slack")
	}
	tid, err := monitorThread()
	if err != nil || tid == 0 {
		t.Fatalf("monitor thread: %d, %v", tid, err)
	}
	if slack(tid) != strconv.Itoa(DefaultTimerSlack) {
		t.Skipf("monitor's timer slack is %s before the test, not the default: set by an earlier test or by whoever started this one", slack(tid))
	}
	const span = 300 * time.Millisecond
	s0 := switches(t, tid)
	seen := busy(span)
	before := switches(t, tid) - s0
	most := 0
	for other, n := range seen {
		if other != tid && n > most {
			most = n
		}
	}
	if seen[tid] == 0 || seen[tid] <= 2*most {
		t.Fatalf("threads found in nanosleep while busy: %v; the one picked, %d, is not the runtime's monitor", seen, tid)
	}
	got, err := SlowMonitor()
	if err != nil || got != tid {
		t.Fatalf("SlowMonitor: %d, %v; want %d", got, err, tid)
	}
	if slack(tid) != strconv.Itoa(monitorTimerSlack) {
		t.Fatalf("monitor's timer slack %s after SlowMonitor", slack(tid))
	}
	// The threads there are now: one the monitor starts from here on
	// inherits its slack (docs/engine.md, session 21), which is not
	// SlowMonitor setting it.
	tasks, _ := os.ReadDir("/proc/self/task")
	s0 = switches(t, tid)
	busy(span)
	after := switches(t, tid) - s0
	t.Logf("monitor thread %d: %d wake-ups in %v of a busy process before the slack, %d after", tid, before, span, after)
	for _, task := range tasks {
		if other, _ := strconv.Atoi(task.Name()); other != tid && slack(other) == strconv.Itoa(monitorTimerSlack) {
			t.Errorf("thread %d got the monitor's slack too", other)
		}
	}
}

// setAllSlack gives every thread of this process the timer slack ns; the
// threads the runtime starts later inherit it from theirs.
func setAllSlack(t *testing.T, ns int) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if err := os.WriteFile("/proc/"+task.Name()+"/timerslack_ns", []byte(strconv.Itoa(ns)), 0); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// TestContainerTimerSlack: a container's process, and an exec'd one, get
// the kernel's default timer slack even when every thread of the process
// that starts them has the monitor's (as a shim's threads started by its
// monitor do).
func TestContainerTimerSlack(t *testing.T) {
	requireRoot(t)
	setAllSlack(t, monitorTimerSlack)
	t.Cleanup(func() { setAllSlack(t, DefaultTimerSlack) })
	r := newRuntime(t)
	want := strconv.Itoa(DefaultTimerSlack)

	bundle := newBundle(t, nil, "cat", "/proc/self/timerslack_ns")
	o := newOutput(t)
	code, err := r.Run(ctx(t), "slack", bundle, o.opts())
	stdout, stderr := o.String()
	if err != nil || code != 0 {
		t.Fatalf("run: code %d, err %v, stderr %q", code, err, stderr)
	}
	if got := strings.TrimSpace(stdout); got != want {
		t.Errorf("container's timer slack %s ns, want %s", got, want)
	}

	c := ctx(t)
	bundle = newBundle(t, nil, "sleep", "60")
	if err := r.Create(c, "slackx", bundle, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer r.Delete(c, "slackx", true)
	if err := r.Start(c, "slackx"); err != nil {
		t.Fatal(err)
	}
	p := *oci.DefaultSpec().Process
	p.Args = []string{"cat", "/proc/self/timerslack_ns"}
	o = newOutput(t)
	proc, err := r.Exec(c, "slackx", p, Stdio{Stdout: o.out, Stderr: o.err})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := proc.Wait()
	stdout, stderr = o.String()
	if err != nil || ps.ExitCode() != 0 {
		t.Fatalf("exec: %v %v %q", ps, err, stderr)
	}
	if got := strings.TrimSpace(stdout); got != want {
		t.Errorf("exec'd process's timer slack %s ns, want %s", got, want)
	}
}

// TestThreadSlackFromMain: a thread with the monitor's slack gets the main
// thread's back.
func TestThreadSlackFromMain(t *testing.T) {
	var check func()
	check = func() {
		goruntime.LockOSThread() // never unlocked: the thread goes with the goroutine
		if unix.Gettid() == os.Getpid() {
			// The main thread itself: try again from another, which it
			// cannot be while this goroutine holds it.
			done := make(chan struct{})
			go func() { defer close(done); check() }()
			<-done
			return
		}
		self := func() string { return slack(unix.Gettid()) }
		if err := unix.Prctl(unix.PR_SET_TIMERSLACK, monitorTimerSlack, 0, 0, 0); err != nil || self() != strconv.Itoa(monitorTimerSlack) {
			t.Errorf("set slack: %v (%s)", err, self())
			return
		}
		if err := ThreadSlackFromMain(); err != nil {
			t.Error(err)
			return
		}
		if main := slack(os.Getpid()); self() != main || main == strconv.Itoa(monitorTimerSlack) {
			t.Errorf("thread's slack %s after ThreadSlackFromMain, main thread's %s", self(), main)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); check() }()
	<-done
}
