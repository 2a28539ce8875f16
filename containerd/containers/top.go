package containers

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TopList is what Top shows: ps's columns and the container's rows.
type TopList struct {
	Titles    []string
	Processes [][]string
}

// Top lists the processes of a running container as dockerd does: the rows
// of `ps ARGS` on the host (ARGS empty: -ef) whose PID is one of the
// container's. Without ps on the host only the default columns can be
// shown, read from /proc.
func (e *Engine) Top(idOrName, psArgs string) (TopList, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return TopList{}, err
	}
	if !c.State.Running {
		return TopList{}, fmt.Errorf("%w: Container %s is not running", ErrConflict, c.ID)
	}
	if err := validatePSArgs(psArgs); err != nil {
		return TopList{}, err
	}
	cg, err := e.rt.Cgroup(c.ID)
	if err != nil {
		return TopList{}, fmt.Errorf("top %s: %w", c.ID[:12], err)
	}
	pids, err := cg.Pids()
	if err != nil {
		return TopList{}, fmt.Errorf("top %s: %w", c.ID[:12], err)
	}
	ps, err := exec.LookPath("ps")
	if err != nil {
		if strings.TrimSpace(psArgs) != "" {
			return TopList{}, fmt.Errorf("%w: top with ps options needs ps(1) on the host: %v", ErrInvalidArgument, err)
		}
		return procTop(pids), nil
	}
	args := strings.Fields(psArgs)
	if len(args) == 0 {
		args = []string{"-ef"}
	}
	out, err := runPS(ps, append(slices.Clone(args), "-q", joinPids(pids)))
	if err != nil {
		// Some options (f, for one) refuse -q: all processes, filtered below.
		out, err = runPS(ps, args)
	}
	if err != nil {
		return TopList{}, err
	}
	return parsePS(out, pids)
}

func runPS(ps string, args []string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(ps, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		return nil, fmt.Errorf("%w: ps %s: %v: %s", ErrInvalidArgument, strings.Join(args, " "), err, msg)
	}
	return out, nil
}

func joinPids(pids []int) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// validatePSArgs refuses a column renamed to look like the PID column
// (-o user=PID), which would make other processes' rows pass the filter,
// as dockerd does.
func validatePSArgs(psArgs string) error {
	for _, a := range strings.Fields(psArgs) {
		for _, col := range strings.Split(a, ",") {
			k, v, ok := strings.Cut(col, "=")
			if ok && strings.HasPrefix(v, "PID") && strings.TrimPrefix(k, "-o") != "pid" {
				return fmt.Errorf("%w: specifying %q is not allowed", ErrInvalidArgument, col)
			}
		}
	}
	return nil
}

// parsePS keeps the rows of ps's output whose PID column is one of pids,
// and the thread rows (PID "-", with ps's m option) that follow them. The
// last column (the command) may hold spaces.
func parsePS(out []byte, pids []int) (TopList, error) {
	lines := strings.Split(string(out), "\n")
	l := TopList{Titles: strings.Fields(lines[0]), Processes: [][]string{}}
	pidCol := slices.Index(l.Titles, "PID")
	if pidCol < 0 {
		return TopList{}, fmt.Errorf("%w: no PID column in the output of ps", ErrInvalidArgument)
	}
	n := len(l.Titles)
	keep := false
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) <= pidCol {
			continue
		}
		if f[pidCol] != "-" {
			p, err := strconv.Atoi(f[pidCol])
			if err != nil {
				return TopList{}, fmt.Errorf("unexpected pid %q in the output of ps", f[pidCol])
			}
			keep = slices.Contains(pids, p)
		}
		if !keep {
			continue
		}
		if len(f) > n {
			f = append(f[:n-1], strings.Join(f[n-1:], " "))
		}
		l.Processes = append(l.Processes, f)
	}
	return l, nil
}

// procTop is ps -ef's view of pids read from /proc, for a host without ps.
func procTop(pids []int) TopList {
	l := TopList{Titles: []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}, Processes: [][]string{}}
	for _, pid := range pids {
		if row, ok := procRow(pid); ok {
			l.Processes = append(l.Processes, row)
		}
	}
	return l
}

func procRow(pid int) ([]string, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(stat)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return nil, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 20 {
		return nil, false
	}
	ppid := f[1]
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	secs := (utime + stime) / 100
	uid := "?"
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(line, "Uid:") {
				if u := strings.Fields(line); len(u) > 1 {
					uid = u[1]
				}
			}
		}
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	cmdline := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	if cmdline == "" {
		cmdline = "[" + s[strings.IndexByte(s, '(')+1:end] + "]"
	}
	// STIME and C as ps computes them: the start is field 22 (clock ticks
	// since boot, USER_HZ = 100 on Linux), C the CPU share of its lifetime.
	start, cpu := "?", "0"
	if ticks, err := strconv.ParseInt(f[19], 10, 64); err == nil {
		if boot, ok := bootTime(); ok {
			started := boot.Add(time.Duration(ticks) * 10 * time.Millisecond)
			start = started.Local().Format("15:04")
			if life := time.Since(started); life > 0 {
				cpu = strconv.Itoa(int(time.Duration(utime+stime) * 10 * time.Millisecond * 100 / life))
			}
		}
	}
	return []string{uid, strconv.Itoa(pid), ppid, cpu, start, "?", fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60), cmdline}, true
}

// bootTime reads btime from /proc/stat.
func bootTime() (time.Time, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(n, 0), err == nil
		}
	}
	return time.Time{}, false
}
