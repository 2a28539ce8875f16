package tests

// Helpers of the cluster benchmarks (cluster_bench_test.go): a swarm on test
// hosts, polling, parsing of CLI output, and the reports printed on failure.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// benchPoll calls cond every interval until it holds (true) or timeout
// passes (false).
func benchPoll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// benchMemAvailableMB is MemAvailable of /proc/meminfo in MiB.
func benchMemAvailableMB() int {
	return benchMeminfoKB("/proc/meminfo", "MemAvailable:") / 1024
}

// benchMeminfoKB reads a "Key:   N kB" line of a meminfo-style file.
func benchMeminfoKB(path, key string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// benchLine prints a result in bench/run.sh's style: label, figure, unit,
// then the target and reference.
func benchLine(label, value, unit, note string) {
	fmt.Printf("%-58s %9s %-2s   %s\n", label, value, unit, note)
}

func benchRatio(ours, ref float64) string { return fmt.Sprintf("%.2fx", ours/ref) }

// benchTaskSummary summarises `service ps` of svc on h for a failure report:
// tasks per node and state word, and the distinct errors.
func benchTaskSummary(h *harness.Host, svc string) string {
	r := h.Daemon.Run("service", "ps", "--no-trunc", "--format", "{{.Node}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}", svc)
	if r.Code != 0 {
		return fmt.Sprintf("shoal service ps %s: %s", svc, r)
	}
	count := map[string]int{}
	errs := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.SplitN(line, "|", 4)
		if len(f) != 4 {
			continue
		}
		state := strings.Fields(f[2] + " ?")[0]
		node := f[0]
		if node == "" {
			node = "(none)"
		}
		count[node+" desired="+f[1]+" current="+state]++
		if f[3] != "" {
			errs[f[3]]++
		}
	}
	var lines []string
	for k, n := range count {
		lines = append(lines, fmt.Sprintf("  %5d %s", n, k))
	}
	sort.Strings(lines)
	var errLines []string
	for e, n := range errs {
		errLines = append(errLines, fmt.Sprintf("  %5d x %q", n, e))
	}
	sort.Strings(errLines)
	if len(errLines) > 10 {
		errLines = errLines[:10]
	}
	return "tasks by node and state:\n" + strings.Join(lines, "\n") + "\nerrors:\n" + strings.Join(errLines, "\n")
}

// benchRemoveService removes svc at cleanup and waits (bounded) until no
// task container is left on the hosts, so that the harness then stops quiet
// daemons rather than racing the orchestrator container by container.
func benchRemoveService(b testing.TB, s *swarmCluster, via func() *harness.Host, svcs ...string) {
	b.Cleanup(func() {
		m := via()
		if m == nil {
			return
		}
		if r := m.Daemon.Run(append([]string{"service", "rm"}, svcs...)...); r.Code != 0 {
			b.Logf("cleanup: shoal service rm %v: %s", svcs, r)
			return
		}
		if !benchPoll(120*time.Second, time.Second, func() bool {
			for _, h := range s.Hosts {
				if h.Daemon.PID() == 0 {
					continue
				}
				if r := h.Daemon.Run("ps", "-aq"); r.Code == 0 && strings.TrimSpace(r.Stdout) != "" {
					return false
				}
			}
			return true
		}) {
			b.Logf("cleanup: task containers still present 120 s after service rm; the harness removes them")
		}
	})
}

// benchAPI reads a daemon's Engine API from the benchmark's own process:
// what the convergence benchmarks poll several times a second. They ran a
// CLI process per look until session 18: about 14 a second, each 20-27 ms
// of CPU, a seventh of the two CPUs that the convergence itself saturates,
// so the observer was a share of what it measured.
type benchAPI struct{ c *http.Client }

func newBenchAPI(d *harness.Daemon) *benchAPI {
	sock := d.Socket
	return &benchAPI{c: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}}
}

func (a *benchAPI) get(path string, v any) error {
	resp, err := a.c.Get("http://shoal" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// replicas is `service ls`'s REPLICAS of service name: its running and
// desired tasks (the ServiceStatus of a status=true listing).
func (a *benchAPI) replicas(name string) (running, desired int, err error) {
	var ss []struct {
		Spec          struct{ Name string }
		ServiceStatus *struct{ RunningTasks, DesiredTasks uint64 }
	}
	q := url.Values{"status": {"true"}, "filters": {`{"name":{"` + name + `":true}}`}}
	if err := a.get("/services?"+q.Encode(), &ss); err != nil {
		return 0, 0, err
	}
	for _, s := range ss {
		if s.Spec.Name == name && s.ServiceStatus != nil {
			return int(s.ServiceStatus.RunningTasks), int(s.ServiceStatus.DesiredTasks), nil
		}
	}
	return 0, 0, fmt.Errorf("service %s: not listed", name)
}

// nodeStates is `node ls`'s STATUS by hostname ("Ready", "Down", ...).
func (a *benchAPI) nodeStates() (map[string]string, error) {
	var ns []struct {
		Description struct{ Hostname string }
		Status      struct{ State string }
	}
	if err := a.get("/nodes", &ns); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, n := range ns {
		st := n.Status.State
		if st != "" {
			st = strings.ToUpper(st[:1]) + st[1:]
		}
		out[n.Description.Hostname] = st
	}
	return out, nil
}

// benchEngineCounts sums, over the hosts' engines, the running containers
// and all containers (`ps -q` and `ps -aq`).
func benchEngineCounts(hosts []*harness.Host) (running, all int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range hosts {
		if h.Daemon.PID() == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cs []struct{ State string }
			api := newBenchAPI(h.Daemon)
			defer api.c.CloseIdleConnections()
			if err := api.get("/containers/json?all=1", &cs); err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, c := range cs {
				if c.State == "running" {
					running++
				}
			}
			all += len(cs)
		}()
	}
	wg.Wait()
	return running, all
}

// benchLogDigest counts the WARN and ERROR lines of the hosts' daemon logs
// by message (slog's msg=..., or hclog's text), with the hosts that printed
// each, the time and text of its first line; the 15 most frequent.
func benchLogDigest(hosts []*harness.Host) string {
	type entry struct {
		n       int
		first   string
		example string
		hosts   map[string]int
	}
	byMsg := map[string]*entry{}
	for _, h := range hosts {
		for _, line := range strings.Split(h.Daemon.Log(), "\n") {
			if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") &&
				!strings.Contains(line, "[WARN]") && !strings.Contains(line, "[ERROR]") {
				continue
			}
			at, key := "", line
			if _, rest, ok := strings.Cut(line, "time="); ok {
				at = strings.Fields(rest + " ")[0]
			} else if f := strings.Fields(line); len(f) > 0 {
				at = f[0]
				key = strings.TrimSpace(strings.TrimPrefix(line, f[0]))
			}
			if _, rest, ok := strings.Cut(line, "msg="); ok {
				key = rest
				if strings.HasPrefix(rest, `"`) {
					if end := strings.Index(rest[1:], `"`); end >= 0 {
						key = rest[:end+2]
					}
				}
			} else if i := strings.Index(key, ":"); i > 0 && len(key) > 60 {
				key = key[:60] // hclog: level, subsystem and the message's start
			}
			e := byMsg[key]
			if e == nil {
				e = &entry{first: at, example: line, hosts: map[string]int{}}
				if len(e.example) > 300 {
					e.example = e.example[:300] + "..."
				}
				byMsg[key] = e
			}
			e.n++
			e.hosts[h.Name]++
		}
	}
	keys := make([]string, 0, len(byMsg))
	for k := range byMsg {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return byMsg[keys[i]].n > byMsg[keys[j]].n })
	if len(keys) > 15 {
		keys = keys[:15]
	}
	var out []string
	for _, k := range keys {
		e := byMsg[k]
		var hs []string
		for h, n := range e.hosts {
			hs = append(hs, fmt.Sprintf("%s:%d", h, n))
		}
		sort.Strings(hs)
		out = append(out, fmt.Sprintf("  %5d x %s (first %s; %s)\n          e.g. %s", e.n, k, e.first, strings.Join(hs, " "), e.example))
	}
	if len(out) == 0 {
		return "  (none)"
	}
	return strings.Join(out, "\n")
}

// benchLoadavg is the first three fields of /proc/loadavg.
func benchLoadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// benchGone names the hosts whose daemon should run but does not, for a
// failure report. A daemon gone with its directory is the mark of another
// `go test ./tests/` process starting: its TestMain's harness.Sweep kills
// every daemon under harness.BaseDir and removes their roots, ours too.
func benchGone(hosts []*harness.Host) string {
	var out []string
	for _, h := range hosts {
		pid := h.Daemon.PID()
		if pid == 0 {
			continue // killed on purpose (KillAll)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		alive := err == nil && !strings.Contains(string(b), ") Z ")
		_, lerr := os.Stat(filepath.Join(filepath.Dir(h.Daemon.Root), "daemon.log"))
		switch {
		case !alive && lerr != nil:
			out = append(out, fmt.Sprintf("%s: daemon (pid %d) gone and its directory removed: another `go test ./tests/` process's harness.Sweep (TestMain) most likely ran", h.Name, pid))
		case !alive:
			out = append(out, fmt.Sprintf("%s: daemon (pid %d) exited; its log is above", h.Name, pid))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "\n" + strings.Join(out, "\n")
}

// benchLeader is the hostname marked Leader in `node ls --format
// '{{.Hostname}} {{.ManagerStatus}}'` output, "" if none.
func benchLeader(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == "Leader" {
			return f[0]
		}
	}
	return ""
}

// benchLogTime is the time= stamp of the first line of log after byte from
// that contains what.
func benchLogTime(log string, from int, what string) (time.Time, bool) {
	if from > len(log) {
		from = len(log)
	}
	for _, line := range strings.Split(log[from:], "\n") {
		if !strings.Contains(line, what) {
			continue
		}
		if _, rest, ok := strings.Cut(line, "time="); ok {
			if at, err := time.Parse(time.RFC3339Nano, strings.Fields(rest)[0]); err == nil {
				return at, true
			}
		}
	}
	return time.Time{}, false
}

// benchLogLines returns the lines of log after byte from that contain one of
// words (case-insensitive), at most 20.
func benchLogLines(log string, from int, words ...string) string {
	if from > len(log) {
		from = len(log)
	}
	var out []string
	for _, line := range strings.Split(log[from:], "\n") {
		low := strings.ToLower(line)
		for _, w := range words {
			if strings.Contains(low, w) {
				out = append(out, "  "+line)
				break
			}
		}
	}
	if len(out) > 20 {
		out = out[:20]
	}
	return strings.Join(out, "\n")
}

// benchWatcher polls a CLI command on a host every 100 ms in the background
// and notes when its output first satisfies cond.
type benchWatcher struct {
	h    *harness.Host
	args []string
	cond func(string) bool
	quit chan struct{}
	done chan time.Duration // -1: not seen
}

func benchWatch(h *harness.Host, args []string, cond func(string) bool) *benchWatcher {
	return &benchWatcher{h: h, args: args, cond: cond, quit: make(chan struct{}), done: make(chan time.Duration, 1)}
}

// start starts polling; times are from t0.
func (w *benchWatcher) start(t0 time.Time) {
	go func() {
		for {
			select {
			case <-w.quit:
				w.done <- -1
				return
			default:
			}
			if r := w.h.Daemon.Run(w.args...); r.Code == 0 && w.cond(r.Stdout) {
				w.done <- time.Since(t0)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
}

// stop gives the poll up to 3 s more to see cond, then ends it (waiting for
// a call in flight) and says when cond held.
func (w *benchWatcher) stop() string {
	var d time.Duration
	select {
	case d = <-w.done:
	case <-time.After(3 * time.Second):
		close(w.quit)
		d = <-w.done
	}
	if d >= 0 {
		return d.Round(time.Millisecond).String()
	}
	return "(not seen within 3 s of the end)"
}

// benchProfileDaemons starts a CPU profile of span on every host's daemon
// (GET /debug/pprof/profile) when dir is set, written to dir/HOST.pprof:
// where the daemons' time goes while a benchmark runs. The returned function
// waits for the profiles and says which failed.
func benchProfileDaemons(hosts []*harness.Host, dir string, span time.Duration) func() error {
	if dir == "" {
		return func() error { return nil }
	}
	errs := make(chan error, len(hosts))
	for _, h := range hosts {
		go func() {
			errs <- func() error {
				a := newBenchAPI(h.Daemon)
				a.c.Timeout = span + 30*time.Second
				resp, err := a.c.Get(fmt.Sprintf("http://shoal/debug/pprof/profile?seconds=%d", int(span.Seconds())))
				if err != nil {
					return fmt.Errorf("%s: %w", h.Name, err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s: %s", h.Name, resp.Status)
				}
				f, err := os.Create(filepath.Join(dir, h.Name+".pprof"))
				if err != nil {
					return err
				}
				if _, err := io.Copy(f, resp.Body); err != nil {
					f.Close()
					return fmt.Errorf("%s: %w", h.Name, err)
				}
				return f.Close()
			}()
		}()
	}
	return func() error {
		var failed []error
		for range hosts {
			if err := <-errs; err != nil {
				failed = append(failed, err)
			}
		}
		return errors.Join(failed...)
	}
}
