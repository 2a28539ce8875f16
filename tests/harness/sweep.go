package harness

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Sweep removes whatever an earlier, crashed run of the tests left behind:
// processes started from BaseDir, mounts under it, cgroups and links whose names
// start with the harness prefix, the directories themselves, and test hosts'
// network namespaces (with what still runs in them).
//
// Another live test process's daemons and hosts look just like leftovers, so
// Sweep does nothing while one runs: every process that uses the harness holds
// runLockPath shared, and Sweep sweeps only when it can hold it alone. A
// crashed process's lock goes with it, so its leftovers are swept by the next
// run that is alone.
func Sweep() {
	if f := holdRunLock(); f != nil {
		fd := int(f.Fd())
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			_ = unix.Flock(fd, unix.LOCK_SH) // converting may have dropped it
			fmt.Fprintln(os.Stderr, "harness: another test process uses the test hosts: not sweeping")
			return
		}
		defer unix.Flock(fd, unix.LOCK_SH)
	}
	sweepMatching(BaseDir, Prefix, "br"+Prefix[:5])
	sweepHosts()
}

// runLockPath is outside BaseDir, which Sweep removes.
const runLockPath = "/run/" + Prefix + ".lock"

var runLock struct {
	once sync.Once
	f    *os.File
}

// holdRunLock takes, once per process, the shared lock that marks it as a
// live user of the harness; nil if the lock cannot be had (then Sweep
// sweeps unconditionally, as before).
func holdRunLock() *os.File {
	runLock.once.Do(func() {
		f, err := os.OpenFile(runLockPath, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_SH) != nil {
			f.Close()
			return
		}
		runLock.f = f
	})
	return runLock.f
}

// sweepMatching removes processes whose command line mentions dir, mounts under
// dir, cgroups whose name starts with cgroupPrefix in every hierarchy, links and
// nftables tables whose name starts with linkPrefix, then dir itself.
func sweepMatching(dir, cgroupPrefix, linkPrefix string) {
	killProcesses(dir)
	unmountUnder(dir)
	removeCgroups(cgroupPrefix)
	removeLinks(linkPrefix)
	removeFirewall(linkPrefix)
	// Mounts may pin files for a moment after a lazy unmount.
	for i := 0; i < 20; i++ {
		if err := os.RemoveAll(dir); err == nil {
			break
		}
		unmountUnder(dir)
		time.Sleep(50 * time.Millisecond)
	}
}

func killProcesses(dir string) {
	for round := 0; round < 50; round++ {
		found := false
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil || !strings.Contains(string(cmdline), dir) {
				continue
			}
			found = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !found {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var targets []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			mp := unescape(fields[4])
			if mp == dir || strings.HasPrefix(mp, dir+"/") {
				targets = append(targets, mp)
			}
		}
	}
	f.Close()
	// Deepest first, so that children go before their parents.
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	for _, m := range targets {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

func removeCgroups(prefix string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				removeCgroupTree(filepath.Join(root, e.Name()))
			}
		}
	}
}

// removeCgroupTree removes a cgroup and its children, killing what is left in them.
func removeCgroupTree(path string) {
	ents, _ := os.ReadDir(path)
	for _, e := range ents {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(path, e.Name()))
		}
	}
	for i := 0; i < 50; i++ {
		if b, err := os.ReadFile(filepath.Join(path, "cgroup.procs")); err == nil {
			for _, p := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := syscall.Rmdir(path); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func removeLinks(prefix string) {
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if i := strings.IndexByte(name, '@'); i >= 0 {
			name = name[:i]
		}
		if strings.HasPrefix(name, prefix) {
			_ = exec.Command("ip", "link", "del", name).Run()
		}
	}
}

// removeFirewall deletes nftables tables and iptables FORWARD rules that name a
// link with the prefix.
func removeFirewall(prefix string) {
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line) // "table inet NAME"
			if len(f) == 3 && strings.Contains(f[2], prefix) {
				_ = exec.Command("nft", "delete", "table", f[1], f[2]).Run()
			}
		}
	}
	// The daemon puts its FORWARD rules in the legacy x_tables backend too
	// when that has a filter table (bridge.AllowForward): a killed daemon
	// leaves them in both.
	for _, ipt := range []string{"iptables", "iptables-legacy"} {
		for _, chain := range []string{"FORWARD", "DOCKER-USER"} {
			out, err := exec.Command(ipt, "-S", chain).Output()
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "-A ") && strings.Contains(line, prefix) {
					deleteRule(ipt+"-restore", "-D"+line[2:])
				}
			}
		}
	}
}

// deleteRule deletes a filter rule given as iptables -S prints it, with -D
// for -A. iptables-restore parses the line as -S wrote it: a comment is a
// double-quoted string ("shoal bridge NAME"), which split on spaces never
// matched its rule, so such rules piled up in FORWARD over test runs. One
// rule per call: a rule gone meanwhile fails only its own deletion.
func deleteRule(restore, rule string) {
	cmd := exec.Command(restore, "--noflush")
	cmd.Stdin = strings.NewReader("*filter\n" + rule + "\nCOMMIT\n")
	_ = cmd.Run()
}

// scanProcs returns the live (not zombie) processes, other than this one,
// that match.
func scanProcs(match func(pid int, netns uint64, cmdline string) bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		p := "/proc/" + e.Name()
		if st, err := os.ReadFile(p + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
			continue
		}
		cmdline, _ := os.ReadFile(p + "/cmdline")
		ns, _ := nsID(p + "/ns/net")
		if match(pid, ns, string(cmdline)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killProcs sends SIGKILL to what list returns until it returns nothing (new
// children may appear between rounds) or five seconds pass; it returns what
// is left.
func killProcs(list func() []int) []int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := list()
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killNetns kills every process in the named network namespace: while one
// runs there, deleting the name leaves the namespace and its links alive.
func killNetns(path string) {
	ns, err := nsID(path)
	if err != nil || ns == 0 {
		return
	}
	killProcs(func() []int {
		return scanProcs(func(_ int, netns uint64, _ string) bool { return netns == ns })
	})
}

// nsID identifies the namespace a name or /proc/PID/ns/net stands for by its
// nsfs inode; it is 0 for a name whose mount is gone (a plain empty file).
func nsID(path string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, err
	}
	if fs.Type != unix.NSFS_MAGIC {
		return 0, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// deleteNetns removes a namespace's name, as `ip netns del` does.
func deleteNetns(path string) error {
	_ = unix.Unmount(path, unix.MNT_DETACH)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// sweepHosts removes the namespaces of test hosts and switches a crashed run
// left (their links go with them) and any link of ours in the root namespace.
func sweepHosts() {
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), Prefix) {
			killNetns(netnsDir + e.Name())
			_ = deleteNetns(netnsDir + e.Name())
		}
	}
	removeLinks(Prefix)
}
