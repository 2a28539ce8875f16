package tests

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// inspectState is what these tests read of `inspect`.
type inspectState struct {
	RestartCount int
	State        struct {
		Status     string
		Running    bool
		Restarting bool
		Pid        int
		ExitCode   int
		StartedAt  time.Time
		FinishedAt time.Time
		Health     *struct {
			Status        string
			FailingStreak int
			Log           []struct {
				Start    time.Time
				End      time.Time
				ExitCode int
				Output   string
			}
		}
	}
	Config struct {
		Healthcheck *struct {
			Test     []string
			Interval time.Duration
			Retries  int
		}
	}
}

// waitSlow is waitFor with a minute's patience: each restart is a full
// container start, and a loaded machine takes seconds for one.
func waitSlow(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func inspectOf(t *testing.T, d *harness.Daemon, id string) inspectState {
	t.Helper()
	out := d.Must("inspect", id)
	var got []inspectState
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		t.Fatalf("inspect %s: %v\n%s", id, err, out)
	}
	return got[0]
}

// on-failure:2 restarts a failing container exactly twice, with the back-off
// growing (100 ms, then 200 ms) between the runs; always restarts an exit 0.
func TestRestartOnFailure(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--restart", "on-failure:2", "busybox", "sh", "-c", "cut -d' ' -f1 /proc/uptime >> /tmp/runs; cat /tmp/runs; exit 3"))
	defer d.Run("rm", "-f", id)
	var st inspectState
	waitSlow(t, "two restarts, then exited", func() bool {
		st = inspectOf(t, d, id)
		return st.RestartCount == 2 && st.State.Status == "exited"
	})
	time.Sleep(time.Second) // no third run comes
	st = inspectOf(t, d, id)
	if st.RestartCount != 2 || st.State.Status != "exited" || st.State.ExitCode != 3 {
		t.Fatalf("after on-failure:2: %+v", st)
	}
	// The rootfs is kept across restarts: the last run saw all three.
	var runs []float64
	for _, l := range strings.Fields(d.Must("logs", "--tail", "3", id)) {
		f, err := strconv.ParseFloat(l, 64)
		if err != nil {
			t.Fatalf("log line %q", l)
		}
		runs = append(runs, f)
	}
	if len(runs) != 3 {
		t.Fatalf("runs logged: %v", runs)
	}
	// Each gap is a back-off plus a start (seconds on a loaded machine):
	// at least 100 ms, then 200 ms; the daemon logs each back-off.
	gap1, gap2 := runs[1]-runs[0], runs[2]-runs[1]
	if gap1 < 0.1 || gap2 < 0.2 {
		t.Fatalf("back-off not visible: gaps %.3fs then %.3fs, want >= 0.1 s then >= 0.2 s", gap1, gap2)
	}
	var delays []string
	for _, l := range strings.Split(d.Log(), "\n") {
		if strings.Contains(l, "restarting after back-off") && strings.Contains(l, id) {
			delays = append(delays, l[strings.Index(l, "delay="):])
		}
	}
	if strings.Join(delays, " ") != "delay=100ms delay=200ms" {
		t.Fatalf("back-offs logged: %q, want 100ms then 200ms", delays)
	}
	t.Logf("gaps between runs: %.3fs, %.3fs", gap1, gap2)

	// A start by the user resets the count.
	d.Must("start", id)
	waitSlow(t, "restarted by user, two more policy restarts", func() bool {
		st = inspectOf(t, d, id)
		return st.RestartCount == 2 && st.State.Status == "exited"
	})
	d.Must("rm", "-f", id)
	assertNoTrace(t, d, id)

	ok := strings.TrimSpace(d.Must("run", "-d", "--restart", "always", "busybox", "true"))
	defer d.Run("rm", "-f", ok)
	waitSlow(t, "always restarts an exit 0", func() bool { return inspectOf(t, d, ok).RestartCount >= 2 })
	// Between two starts (the back-off is 400 ms by now) the container is
	// restarting, which dockerd's State shows as running without a pid.
	waitSlow(t, "a restarting state", func() bool { return inspectOf(t, d, ok).State.Status == "restarting" })
	if st := inspectOf(t, d, ok).State; st.Status == "restarting" && (!st.Running || !st.Restarting || st.Pid != 0) {
		t.Fatalf("restarting container's state: %+v, want Running and Restarting, Pid 0", st)
	}
	d.Must("stop", ok)
	st = inspectOf(t, d, ok)
	if st.State.Status != "exited" || st.State.Restarting {
		t.Fatalf("stop of a restarting container: %+v", st.State)
	}
	n := st.RestartCount
	time.Sleep(500 * time.Millisecond)
	if st = inspectOf(t, d, ok); st.RestartCount != n || st.State.Status != "exited" {
		t.Fatalf("restarted after stop: %+v", st)
	}
	d.Must("rm", "-f", ok)
	assertNoTrace(t, d, ok)

	// update --restart changes the policy that the next exit follows, as
	// dockerd's (it was refused); an --rm container's stays refused.
	up := strings.TrimSpace(d.Must("run", "-d", "busybox", "sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 4"))
	defer d.Run("rm", "-f", up)
	d.Must("update", "--restart", "on-failure:1", up)
	if got := strings.TrimSpace(d.Must("inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", up)); got != "on-failure:1" {
		t.Fatalf("restart policy after update: %s", got)
	}
	d.Must("exec", up, "touch", "/tmp/go")
	waitSlow(t, "the updated policy's one restart", func() bool {
		st = inspectOf(t, d, up)
		return st.RestartCount == 1 && st.State.Status == "exited"
	})
	rm := strings.TrimSpace(d.Must("run", "-d", "--rm", "busybox", "sleep", "100"))
	defer d.Run("rm", "-f", rm)
	failsWith(t, d.Run("update", "--restart", "always", rm), "AutoRemove")
	failsWith(t, d.Run("update", "--restart", "sometimes", up), "unknown policy")
}

// always survives the daemon's kill -9 and the loss of its process meanwhile;
// unless-stopped stopped by the user stays down across a daemon restart;
// always stopped by the user comes back then (Docker's rule).
func TestRestartAcrossDaemonRestart(t *testing.T) {
	d := engine(t)
	always := strings.TrimSpace(d.Must("run", "-d", "--restart", "always", "busybox", "sleep", "1000"))
	defer d.Run("rm", "-f", always)
	unless := strings.TrimSpace(d.Must("run", "-d", "--restart", "unless-stopped", "busybox", "sleep", "1000"))
	defer d.Run("rm", "-f", unless)
	stoppedAlways := strings.TrimSpace(d.Must("run", "-d", "--restart", "always", "busybox", "sleep", "1000"))
	defer d.Run("rm", "-f", stoppedAlways)
	d.Must("stop", "-t", "0", unless)
	d.Must("stop", "-t", "0", stoppedAlways)

	pid := inspectOf(t, d, always).State.Pid
	d.Kill9()
	// The container dies while no daemon watches it.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	waitSlow(t, "always back after the daemon's restart", func() bool {
		st := inspectOf(t, d, always)
		return st.State.Status == "running" && st.State.Pid != pid
	})
	waitSlow(t, "stopped always back after the daemon's restart", func() bool { return inspectOf(t, d, stoppedAlways).State.Status == "running" })
	time.Sleep(time.Second)
	if st := inspectOf(t, d, unless); st.State.Running || st.State.Status != "exited" {
		t.Fatalf("unless-stopped came back after stop + daemon restart: %+v", st.State)
	}
	// A daemon restart while they run keeps them running (adopted, not restarted).
	before := inspectOf(t, d, always).State.Pid
	d.Restart()
	if st := inspectOf(t, d, always); st.State.Status != "running" || st.State.Pid != before {
		t.Fatalf("always after a plain daemon restart: %+v", st.State)
	}
	for _, id := range []string{always, unless, stoppedAlways} {
		d.Must("rm", "-f", id)
		assertNoTrace(t, d, id)
	}
}

// A healthcheck goes starting -> healthy -> unhealthy when its probe starts
// failing; ps and inspect show it as Docker does.
func TestHealthcheck(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--health-cmd", "test -f /tmp/ready && test ! -f /tmp/sick && echo fine",
		"--health-interval", "300ms", "--health-retries", "2", "--health-timeout", "2s", "--health-start-period", "1m",
		"busybox", "sleep", "1000"))
	defer d.Run("rm", "-f", id)
	st := inspectOf(t, d, id)
	if st.State.Health == nil || st.State.Health.Status != "starting" {
		t.Fatalf("health at start: %+v", st.State.Health)
	}
	// Failures within the start period do not count.
	waitSlow(t, "three failed probes", func() bool { st = inspectOf(t, d, id); return len(st.State.Health.Log) >= 3 })
	if st.State.Health.Status != "starting" || st.State.Health.FailingStreak != 0 || st.State.Health.Log[0].ExitCode != 1 {
		t.Fatalf("failures in the start period: %+v", st.State.Health)
	}
	if out := d.Must("ps", "--format", "{{.Status}}", "--filter", "id="+id); !strings.Contains(out, "(health: starting)") {
		t.Fatalf("ps while starting: %q", out)
	}
	d.Must("exec", id, "touch", "/tmp/ready")
	waitSlow(t, "healthy", func() bool { st = inspectOf(t, d, id); return st.State.Health.Status == "healthy" })
	if out := d.Must("ps", "--format", "{{.Status}}", "--filter", "id="+id); !strings.Contains(out, "(healthy)") {
		t.Fatalf("ps when healthy: %q", out)
	}
	if out := d.Must("ps", "-q", "--no-trunc", "--filter", "health=healthy"); strings.TrimSpace(out) != id {
		t.Fatalf("ps --filter health=healthy: %q", out)
	}
	if out := d.Must("ps", "-q", "--filter", "health=unhealthy"); strings.TrimSpace(out) != "" {
		t.Fatalf("ps --filter health=unhealthy: %q", out)
	}
	if r := d.Run("ps", "--filter", "health=fine"); r.Code == 0 || !strings.Contains(r.Stderr, "invalid filter 'health=fine'") {
		t.Fatalf("ps --filter health=fine: %s", r)
	}
	if l := st.State.Health.Log; len(l) == 0 || l[len(l)-1].ExitCode != 0 || l[len(l)-1].Output != "fine\n" || l[len(l)-1].End.Before(l[len(l)-1].Start) {
		t.Fatalf("health log: %+v", st.State.Health.Log)
	}
	d.Must("exec", id, "touch", "/tmp/sick")
	waitSlow(t, "unhealthy", func() bool { st = inspectOf(t, d, id); return st.State.Health.Status == "unhealthy" })
	if st.State.Health.FailingStreak < 2 || len(st.State.Health.Log) > 5 {
		t.Fatalf("unhealthy: %+v", st.State.Health)
	}
	if out := d.Must("ps", "--format", "{{.Status}}", "--filter", "id="+id); !strings.Contains(out, "(unhealthy)") {
		t.Fatalf("ps when unhealthy: %q", out)
	}
	waitSlow(t, "log of 5", func() bool { return len(inspectOf(t, d, id).State.Health.Log) == 5 })
	d.Must("exec", id, "rm", "/tmp/sick")
	waitSlow(t, "healthy again", func() bool { return inspectOf(t, d, id).State.Health.Status == "healthy" })
	// Each change of health is an event, as dockerd's health_status.
	until := fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)
	var changes []string
	for _, a := range strings.Split(d.Must("events", "--since", "10m", "--until", until, "--filter", "container="+id, "--format", "{{.Action}}"), "\n") {
		if strings.HasPrefix(a, "health_status") {
			changes = append(changes, a)
		}
	}
	if want := []string{"health_status: healthy", "health_status: unhealthy", "health_status: healthy"}; !slices.Equal(changes, want) {
		t.Fatalf("health_status events %q, want %q", changes, want)
	}
	// Probes are execs that leave nothing behind: only the three execs of
	// this test keep a record, and one probe may be under way.
	ents, _ := os.ReadDir(d.ExecRoot + "/execs/" + id)
	probes := 0
	for _, e := range ents {
		if _, err := os.Stat(d.ExecRoot + "/execs/" + id + "/" + e.Name() + "/record.json"); err != nil {
			probes++
		}
	}
	if probes > 1 || len(ents)-probes != 3 {
		t.Fatalf("exec dirs: %d, of probes %d", len(ents), probes)
	}
	d.Must("rm", "-f", id)
	assertNoTrace(t, d, id)

	// A probe that outlives its timeout fails with Docker's words.
	slow := strings.TrimSpace(d.Must("run", "-d", "--health-cmd", "sleep 5", "--health-interval", "200ms", "--health-timeout", "300ms", "busybox", "sleep", "1000"))
	defer d.Run("rm", "-f", slow)
	waitSlow(t, "a timed-out probe", func() bool {
		h := inspectOf(t, d, slow).State.Health
		return len(h.Log) > 0 && h.Log[0].ExitCode == -1 && strings.Contains(h.Log[0].Output, "Health check exceeded timeout (300ms)")
	})
	d.Must("rm", "-f", slow)
	assertNoTrace(t, d, slow)
}

// Bad input for every new flag: a one-line error, exit 125, nothing created.
func TestRestartHealthBadInput(t *testing.T) {
	d := engine(t)
	for _, args := range [][]string{
		{"--restart", "foo"},
		{"--restart", "on-failure:-1"},
		{"--restart", "always:3"},
		{"--restart", "always", "--rm"},
		{"--health-interval", "-1s"},
		{"--health-timeout", "-1s"},
		{"--health-retries", "-2"},
		{"--health-start-period", "-5s"},
		{"--health-interval", "soon"},
		{"--no-healthcheck", "--health-cmd", "true"},
	} {
		r := d.Run(append(append([]string{"run", "-d"}, args...), "busybox", "true")...)
		if r.Code == 0 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 || r.Stderr == "" {
			t.Errorf("run %v: %s", args, r)
		}
	}
	// Through the API too (a client that skips the CLI's checks).
	for _, body := range []string{
		`{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":-1}}}`,
		`{"Image":"busybox","HostConfig":{"RestartPolicy":{"Name":"foo"}}}`,
		`{"Image":"busybox","Healthcheck":{"Test":["CMD","true"],"Interval":-1000000000}}`,
		`{"Image":"busybox","Healthcheck":{"Test":["SHELL","true"]}}`,
	} {
		if code, resp := apiPost(t, d.Socket, "/containers/create", body); code != 400 {
			t.Errorf("create %s: %d %s", body, code, resp)
		}
	}
	if out := d.Must("ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers made by bad input: %q", out)
	}
}

// The docker CLI drives restart policies and reads health in Docker's format.
func TestRestartHealthDockerCLI(t *testing.T) {
	docker := "/usr/local/bin/docker"
	if _, err := os.Stat(docker); err != nil {
		t.Fatalf("no docker CLI at %s: the compatibility tests need it", docker)
	}
	d := engine(t)
	run := (&harness.Daemon{Bin: docker, Socket: d.Socket}).Run
	// runD is `docker run -d ARGS`: the container's ID, removed at the end.
	runD := func(args ...string) string {
		r := run(append([]string{"run", "-d"}, args...)...)
		if r.Code != 0 {
			t.Fatalf("docker run %v: %s", args, r)
		}
		id := strings.TrimSpace(r.Stdout)
		t.Cleanup(func() { d.Run("rm", "-f", id) })
		return id
	}
	id := runD("--restart", "on-failure:1", "busybox", "sh", "-c", "exit 4")
	waitSlow(t, "one restart", func() bool {
		r := run("inspect", "--format", "{{.RestartCount}} {{.State.Status}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", id)
		return strings.TrimSpace(r.Stdout) == "1 exited on-failure:1"
	})
	hid := runD("--health-cmd", "true", "--health-interval", "200ms", "busybox", "sleep", "1000")
	waitSlow(t, "healthy through docker inspect", func() bool {
		r := run("inspect", "--format", "{{.State.Health.Status}} {{.State.Health.FailingStreak}} {{(index .State.Health.Log 0).ExitCode}} {{json .Config.Healthcheck.Test}}", hid)
		return strings.TrimSpace(r.Stdout) == `healthy 0 0 ["CMD-SHELL","true"]`
	})
	if r := run("ps", "--filter", "id="+hid, "--format", "{{.Status}}"); !strings.Contains(r.Stdout, "(healthy)") {
		t.Fatalf("docker ps: %s", r)
	}
	if r := run("run", "-d", "--restart", "sometimes", "busybox", "true"); r.Code == 0 {
		t.Fatalf("docker run --restart sometimes: %s", r)
	}
	for _, c := range []string{id, hid} {
		d.Must("rm", "-f", c)
		assertNoTrace(t, d, c)
	}
}

// A service's tasks use their container's health: a task is running only
// once its container is healthy, and one that turns unhealthy fails and is
// replaced by the orchestrator (single-node swarm).
func TestServiceTaskHealth(t *testing.T) {
	c := newSwarm(t, 1, 0)
	h := c.Hosts[0]
	must(t, h, "service", "create", "--detach", "--name", "hc",
		"--health-cmd", "test -f /tmp/ready && test ! -f /tmp/sick", "--health-interval", "300ms",
		"--health-retries", "2", "--health-start-period", "1m", "busybox", "sleep", "1000")
	// runningContainer is the task container that runs, once there is one.
	runningContainer := func(exclude string) string {
		for _, v := range taskContainers(h) {
			name, state, _ := strings.Cut(v, " ")
			if state == "running" && name != exclude {
				return name
			}
		}
		return ""
	}
	var ctr string
	waitSlow(t, "a task container", func() bool { ctr = runningContainer(""); return ctr != "" })
	// Its container runs, but the task waits for health.
	time.Sleep(2 * time.Second)
	if ts, r := taskList(h, "hc"); len(ts) != 1 || !strings.HasPrefix(ts[0].Current, "Starting") {
		t.Fatalf("task of a container that is not yet healthy: %v\n%s", ts, r)
	}
	must(t, h, "exec", ctr, "touch", "/tmp/ready")
	waitSlow(t, "the task running once healthy", func() bool {
		ts, _ := taskList(h, "hc")
		return len(ts) == 1 && ts[0].running()
	})
	// Unhealthy: the task fails and a new one replaces it.
	must(t, h, "exec", ctr, "touch", "/tmp/sick")
	var next string
	waitSlow(t, "a replacement container", func() bool { next = runningContainer(ctr); return next != "" })
	must(t, h, "exec", next, "touch", "/tmp/ready")
	waitSlow(t, "the replacement running, the unhealthy task failed", func() bool {
		r := h.Daemon.Run("service", "ps", "--no-trunc", "--format", "{{.DesiredState}}|{{.CurrentState}}|{{.Error}}", "hc")
		return strings.Count(r.Stdout, "Running|Running") == 1 && strings.Contains(r.Stdout, "|Failed") && strings.Contains(r.Stdout, "unhealthy container")
	})
	must(t, h, "service", "rm", "hc")
	waitSlow(t, "the task containers gone", func() bool { return len(taskContainers(h)) == 0 })
}

// imageWithHealthcheck saves busybox and loads it back as ref with a
// HEALTHCHECK in its config (what a Dockerfile's HEALTHCHECK leaves).
func imageWithHealthcheck(t *testing.T, d *harness.Daemon, ref string, hc map[string]any) {
	t.Helper()
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "in.tar"), filepath.Join(dir, "out.tar")
	d.Must("save", "-o", src, "busybox:latest")
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	var order []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
		order = append(order, h.Name)
	}
	var mf []map[string]any
	if err := json.Unmarshal(files["manifest.json"], &mf); err != nil || len(mf) != 1 {
		t.Fatalf("manifest.json: %v", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(files[mf[0]["Config"].(string)], &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["config"].(map[string]any)["Healthcheck"] = hc
	raw, _ := json.Marshal(cfg)
	name := fmt.Sprintf("blobs/sha256/%x", sha256.Sum256(raw))
	files[name] = raw
	order = append(order, name)
	mf[0]["Config"], mf[0]["RepoTags"] = name, []string{ref}
	files["manifest.json"], _ = json.Marshal(mf)
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(out)
	for _, n := range order {
		if n == "index.json" {
			continue // manifest.json names the new config
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(files[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	d.Must("load", "-i", dst)
}

// The image's HEALTHCHECK runs when the container gives none; --no-healthcheck
// turns it off; --health-* timings merge over it.
func TestImageHealthcheck(t *testing.T) {
	d := engine(t)
	imageWithHealthcheck(t, d, "hcimg:latest", map[string]any{"Test": []string{"CMD-SHELL", "test -f /tmp/ok"}, "Interval": int64(200 * time.Millisecond), "Retries": 1})
	if out := d.Must("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", "hcimg"); strings.TrimSpace(out) != `["CMD-SHELL","test -f /tmp/ok"]` {
		t.Fatalf("image inspect Config.Healthcheck: %q", out)
	}
	id := strings.TrimSpace(d.Must("run", "-d", "hcimg", "sleep", "1000"))
	defer d.Run("rm", "-f", id)
	waitSlow(t, "unhealthy from the image's probe", func() bool { return inspectOf(t, d, id).State.Health.Status == "unhealthy" })
	d.Must("exec", id, "touch", "/tmp/ok")
	waitSlow(t, "healthy from the image's probe", func() bool { return inspectOf(t, d, id).State.Health.Status == "healthy" })
	if hc := inspectOf(t, d, id).Config.Healthcheck; hc == nil || strings.Join(hc.Test, " ") != "CMD-SHELL test -f /tmp/ok" || hc.Interval != 200*time.Millisecond {
		t.Fatalf("inspect Config.Healthcheck: %+v", hc)
	}
	// A restarted daemon goes on probing the containers it re-adopts.
	d.Kill9()
	d.Restart()
	last := inspectOf(t, d, id).State.Health.Log
	waitSlow(t, "probes after the daemon's restart", func() bool {
		h := inspectOf(t, d, id).State.Health
		return h.Status == "healthy" && h.Log[len(h.Log)-1].Start.After(last[len(last)-1].Start)
	})
	off := strings.TrimSpace(d.Must("run", "-d", "--no-healthcheck", "hcimg", "sleep", "1000"))
	defer d.Run("rm", "-f", off)
	if st := inspectOf(t, d, off); st.State.Health != nil || !st.State.Running {
		t.Fatalf("--no-healthcheck: %+v", st.State)
	}
	merged := strings.TrimSpace(d.Must("run", "-d", "--health-interval", "250ms", "--health-retries", "4", "hcimg", "sleep", "1000"))
	defer d.Run("rm", "-f", merged)
	if hc := inspectOf(t, d, merged).Config.Healthcheck; hc == nil || hc.Test[1] != "test -f /tmp/ok" || hc.Interval != 250*time.Millisecond || hc.Retries != 4 {
		t.Fatalf("--health-interval over the image's test: %+v", hc)
	}
	for _, c := range []string{id, off, merged} {
		d.Must("rm", "-f", c)
		assertNoTrace(t, d, c)
	}
}

// docker-py (a real client of the Engine API) creates a container with a
// restart policy and a healthcheck and reads its health back.
func TestRestartHealthDockerPy(t *testing.T) {
	py := dockerPyPython(t)
	d := engine(t)
	script := `
import sys, time, docker
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
ct = c.containers.run("busybox", ["sleep", "1000"], detach=True,
    restart_policy={"Name": "on-failure", "MaximumRetryCount": 2},
    healthcheck={"test": ["CMD-SHELL", "true"], "interval": 200000000, "retries": 2})
print(ct.id)
sys.stdout.flush()
for _ in range(600):
    ct.reload()
    if (ct.attrs["State"].get("Health") or {}).get("Status") == "healthy":
        break
    time.sleep(0.1)
else:
    sys.exit("not healthy: %r" % ct.attrs["State"])
assert ct.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}, ct.attrs["HostConfig"]
assert ct.attrs["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "true"], ct.attrs["Config"]
assert ct.attrs["State"]["Health"]["Log"][0]["ExitCode"] == 0, ct.attrs["State"]
assert ct.attrs["RestartCount"] == 0, ct.attrs
print(ct.attrs["State"]["Health"]["Status"])
`
	// The container is removed from here: docker-py's remove sends
	// link=False, which this daemon still reads as a link removal (issue 10,
	// item 8, outside this change).
	out, err := exec.Command(py, "-c", script, d.Socket).CombinedOutput()
	lines := strings.Fields(string(out))
	if len(lines) > 0 && len(lines[0]) == 64 {
		defer func() { d.Must("rm", "-f", lines[0]); assertNoTrace(t, d, lines[0]) }()
	}
	if err != nil || len(lines) != 2 || lines[1] != "healthy" {
		t.Fatalf("docker-py: %v\n%s", err, out)
	}
}
