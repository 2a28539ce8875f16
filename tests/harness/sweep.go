package harness

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sweep removes whatever an earlier, crashed run of the tests left behind:
// processes started from BaseDir, mounts under it, cgroups and links whose names
// start with the harness prefix, and the directories themselves.
func Sweep() {
	sweepMatching(BaseDir, Prefix, "br"+Prefix[:5])
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
	for _, chain := range []string{"FORWARD", "DOCKER-USER"} {
		out, err := exec.Command("iptables", "-S", chain).Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") && strings.Contains(line, prefix) {
				args := strings.Fields("-D" + line[2:])
				_ = exec.Command("iptables", args...).Run()
			}
		}
	}
}
