package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// Lifecycle and observation (issue 10 item 4): pause/unpause, stats,
// events, rename, update, port, diff, export, system df/prune, through
// shoal, the docker CLI and docker-py.

// failsWith checks a refused command: non-zero exit, one line on stderr
// containing want.
func failsWith(t *testing.T, r harness.Result, want string) {
	t.Helper()
	line := strings.TrimSpace(r.Stderr)
	if r.Code == 0 || !strings.Contains(line, want) || strings.Contains(line, "\n") {
		t.Fatalf("want a one-line error with %q and a non-zero exit, got %s", want, r)
	}
}

func cgroupFile(t *testing.T, d *harness.Daemon, ctrl, id, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, d.CgroupParent, id, file))
	if err != nil {
		t.Fatalf("cgroup %s/%s: %v", ctrl, file, err)
	}
	return strings.TrimSpace(string(b))
}

// logLines counts the lines a container has logged.
func logLines(d *harness.Daemon, id string) int {
	return strings.Count(d.Must("logs", id), "\n")
}

func TestPauseUnpause(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--name", "ticker", "busybox", "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"))
	waitFor(t, "the counter to run", func() bool { return logLines(d, id) > 2 })

	d.Must("pause", "ticker")
	if st := cgroupFile(t, d, "freezer", id, "freezer.state"); st != "FROZEN" {
		t.Fatalf("freezer.state after pause = %q", st)
	}
	pid := strings.TrimSpace(d.Must("inspect", "--format", "{{.State.Pid}}", id))
	if b, _ := os.ReadFile("/proc/" + pid + "/status"); !strings.Contains(string(b), "State:\tD") && !strings.Contains(string(b), "State:\tS") {
		t.Fatalf("paused init's state: %s", b)
	}
	before := logLines(d, id)
	time.Sleep(500 * time.Millisecond)
	if after := logLines(d, id); after != before {
		t.Fatalf("the counter advanced while paused: %d -> %d lines", before, after)
	}
	if st := d.Must("inspect", "--format", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}", id); strings.TrimSpace(st) != "paused true true" {
		t.Fatalf("inspect of a paused container: %q", st)
	}
	if ps := d.Must("ps", "--format", "{{.Status}}", "--filter", "name=ticker"); !strings.Contains(ps, "(Paused)") {
		t.Fatalf("ps status %q, want (Paused)", ps)
	}
	failsWith(t, d.Run("pause", "ticker"), "is already paused")
	failsWith(t, d.Run("exec", "ticker", "true"), "is paused, unpause the container before exec")

	d.Must("unpause", id)
	if st := cgroupFile(t, d, "freezer", id, "freezer.state"); st != "THAWED" {
		t.Fatalf("freezer.state after unpause = %q", st)
	}
	waitFor(t, "the counter to resume", func() bool { return logLines(d, id) > before+2 })
	failsWith(t, d.Run("unpause", "ticker"), "is not paused")
	failsWith(t, d.Run("pause", "nosuch"), "No such container")
	d.Must("create", "--name", "idle", "busybox", "true")
	failsWith(t, d.Run("pause", "idle"), "is not running")

	// A pause outlives a daemon restart (the cgroup stays frozen) and is
	// undone by the next daemon.
	d.Must("pause", id)
	d.Kill9()
	d.Restart()
	if st := d.Must("inspect", "--format", "{{.State.Status}}", id); strings.TrimSpace(st) != "paused" {
		t.Fatalf("after a daemon restart: %q", st)
	}
	d.Must("unpause", id)
	if st := cgroupFile(t, d, "freezer", id, "freezer.state"); st != "THAWED" {
		t.Fatalf("freezer.state after unpause by the next daemon = %q", st)
	}

	// A paused container can still be stopped (SIGKILL after the grace
	// period, then thawed so it dies) and killed.
	d.Must("pause", id)
	start := time.Now()
	d.Must("stop", "-t", "1", id)
	if st := d.Must("inspect", "--format", "{{.State.Status}} {{.State.Paused}}", id); strings.TrimSpace(st) != "exited false" || time.Since(start) > 8*time.Second {
		t.Fatalf("stop of a paused container: %q after %v", st, time.Since(start))
	}
	// The next daemon adopted its network: the disconnect is published.
	if out := d.Must("events", "--since", "1m", "--until", fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9), "--filter", "event=disconnect", "--format", "{{.Actor.Attributes.container}}"); strings.TrimSpace(out) != id {
		t.Fatalf("disconnect of an adopted container: %q", out)
	}
	d.Must("start", id)
	d.Must("pause", id) // a restarted container freezes afresh
	if st := cgroupFile(t, d, "freezer", id, "freezer.state"); st != "FROZEN" {
		t.Fatalf("freezer.state after pause of the restarted container = %q", st)
	}
	d.Must("kill", id)
	d.Must("wait", id)
	d.Must("rm", id)

	t.Run("docker CLI", func(t *testing.T) {
		docker := dockerCLI(t, d)
		id := strings.TrimSpace(d.Must("run", "-d", "busybox", "sleep", "1000"))
		if r := docker("pause", id); r.Code != 0 {
			t.Fatalf("docker pause: %s", r)
		}
		if r := docker("inspect", "-f", "{{.State.Paused}}", id); strings.TrimSpace(r.Stdout) != "true" {
			t.Fatalf("docker inspect after pause: %s", r)
		}
		if r := docker("ps", "--filter", "status=paused", "-q"); !strings.HasPrefix(id, strings.TrimSpace(r.Stdout)) || strings.TrimSpace(r.Stdout) == "" {
			t.Fatalf("docker ps --filter status=paused: %s", r)
		}
		if r := docker("unpause", id); r.Code != 0 {
			t.Fatalf("docker unpause: %s", r)
		}
		if r := docker("unpause", id); r.Code == 0 || !strings.Contains(r.Stderr, "is not paused") {
			t.Fatalf("docker unpause of a running container: %s", r)
		}
	})
	t.Run("docker-py", func(t *testing.T) {
		out := dockerPyAt(t, d, "1.41", `k = c.containers.run('busybox', 'sleep 1000', detach=True)
k.pause(); k.reload(); print(k.status)
k.unpause(); k.reload(); print(k.status)
k.remove(force=True)`)
		if out != "paused\nrunning" {
			t.Fatalf("docker-py pause/unpause: %q", out)
		}
	})
}

// statsJSON is the part of the API's stats this test reads.
type statsJSON struct {
	CPUStats struct {
		CPUUsage struct {
			TotalUsage uint64 `json:"total_usage"`
		} `json:"cpu_usage"`
		SystemUsage uint64 `json:"system_cpu_usage"`
		OnlineCPUs  uint32 `json:"online_cpus"`
	} `json:"cpu_stats"`
	PreCPUStats struct {
		CPUUsage struct {
			TotalUsage uint64 `json:"total_usage"`
		} `json:"cpu_usage"`
		SystemUsage uint64 `json:"system_cpu_usage"`
	} `json:"precpu_stats"`
	MemoryStats struct {
		Usage    uint64            `json:"usage"`
		MaxUsage uint64            `json:"max_usage"`
		Limit    uint64            `json:"limit"`
		Stats    map[string]uint64 `json:"stats"`
	} `json:"memory_stats"`
	PidsStats struct {
		Current uint64 `json:"current"`
		Limit   uint64 `json:"limit"`
	} `json:"pids_stats"`
	Networks map[string]struct {
		RxBytes uint64 `json:"rx_bytes"`
	} `json:"networks"`
}

func parsePerc(s string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return -1
	}
	return v
}

func TestStats(t *testing.T) {
	d := engine(t)
	busy := strings.TrimSpace(d.Must("run", "-d", "--name", "busy", "-m", "64m", "--pids-limit", "20", "busybox", "sh", "-c", "while :; do :; done"))
	idle := strings.TrimSpace(d.Must("run", "-d", "--name", "idle", "busybox", "sleep", "1000"))

	// The busy loop uses what CPU it gets: on 2 cores shared by other test
	// runs that is not a whole one, but never nothing, and the idle one none.
	out := d.Must("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}", "busy", "idle")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("stats --no-stream:\n%s", out)
	}
	f := strings.Fields(lines[0])
	cpu := parsePerc(f[1])
	if f[0] != "busy" || cpu < 5 || f[4] != "64MiB" || f[5] != "1" {
		t.Fatalf("stats of the busy loop: %q (cpu %.1f)", lines[0], cpu)
	}
	// (The idle one may still count its own start in the first second.)
	if f := strings.Fields(lines[1]); f[0] != "idle" || parsePerc(f[1]) >= cpu || parsePerc(f[1]) > 5 {
		t.Fatalf("stats of the idle container: %q", lines[1])
	}
	if tbl := d.Must("stats", "--no-stream", "busy"); !strings.Contains(tbl, "CONTAINER ID   NAME      CPU %") || !strings.Contains(tbl, "MEM USAGE / LIMIT") {
		t.Fatalf("stats table:\n%s", tbl)
	}

	// The API's memory usage is the cgroup's.
	code, body := apiDo(t, d.Socket, "GET", "/containers/"+idle+"/stats?stream=false&one-shot=true", "")
	var s statsJSON
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("stats API: %d %s", code, body)
	}
	cg, _ := strconv.ParseUint(cgroupFile(t, d, "memory", idle, "memory.usage_in_bytes"), 10, 64)
	if diff := int64(cg) - int64(s.MemoryStats.Usage); diff > 1<<20 || diff < -(1<<20) || s.MemoryStats.Usage == 0 {
		t.Fatalf("memory usage %d, cgroup says %d", s.MemoryStats.Usage, cg)
	}
	// The peak, which dockerd shows on cgroup v1 (docker-py's max_usage).
	if s.MemoryStats.MaxUsage < s.MemoryStats.Usage {
		t.Fatalf("max_usage %d below usage %d", s.MemoryStats.MaxUsage, s.MemoryStats.Usage)
	}
	if _, ok := s.MemoryStats.Stats["total_inactive_file"]; !ok || s.PidsStats.Current != 1 || s.MemoryStats.Limit == 0 {
		t.Fatalf("stats API: %s", body)
	}
	if _, ok := s.Networks["eth0"]; !ok {
		t.Fatalf("stats API has no eth0: %s", body)
	}
	// A stream sends a sample a second, each with the previous as precpu.
	code, body = apiDo(t, d.Socket, "GET", "/containers/"+busy+"/stats?stream=false", "")
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil || s.PreCPUStats.SystemUsage == 0 || s.CPUStats.CPUUsage.TotalUsage <= s.PreCPUStats.CPUUsage.TotalUsage {
		t.Fatalf("stats with a previous sample: %d %s", code, body)
	}

	// Without --no-stream the table is redrawn every second until stopped,
	// with the containers that start meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream := exec.CommandContext(ctx, d.Bin, "-H", "unix://"+d.Socket, "stats", "--format", "{{.Name}} {{.PIDs}}")
	var streamed strings.Builder
	stream.Stdout = &streamed
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	d.Must("run", "-d", "--name", "late", "busybox", "sleep", "1000")
	_ = stream.Wait()
	if n := strings.Count(streamed.String(), "busy 1\n"); n < 2 || !strings.Contains(streamed.String(), "idle 1\n") || !strings.Contains(streamed.String(), "late 1\n") {
		t.Fatalf("stats stream (%d redraws of busy):\n%s", n, streamed.String())
	}

	failsWith(t, d.Run("stats", "--no-stream", "nosuch"), "No such container")
	failsWith(t, d.Run("stats", "--no-stream", "--format", "{{.Nope", "busy"), "template")

	t.Run("docker CLI", func(t *testing.T) {
		docker := dockerCLI(t, d)
		r := docker("stats", "--no-stream", "--format", "{{.Name}} {{.CPUPerc}} {{.MemUsage}}", "busy")
		f := strings.Fields(r.Stdout)
		if r.Code != 0 || len(f) < 5 || f[0] != "busy" || f[4] != "64MiB" {
			t.Fatalf("docker stats: %s", r)
		}
		if cpu := parsePerc(f[1]); cpu < 5 {
			t.Fatalf("docker stats CPU of a busy loop: %s", r)
		}
	})
	t.Run("docker-py", func(t *testing.T) {
		out := dockerPyAt(t, d, "1.41", `s = c.containers.get('busy').stats(stream=False)
print(s['memory_stats']['limit'], s['pids_stats']['current'], s['cpu_stats']['cpu_usage']['total_usage'] > 0)`)
		if out != "67108864 1 True" {
			t.Fatalf("docker-py stats: %q", out)
		}
	})
}

func TestEvents(t *testing.T) {
	d := engine(t)
	since := fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)
	id := strings.TrimSpace(d.Must("run", "-d", "--name", "ev", "busybox", "sh", "-c", "exit 3"))
	d.Must("wait", id)
	d.Must("rm", id)
	until := fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)

	out := d.Must("events", "--since", since, "--until", until, "--filter", "container=ev", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
	if strings.TrimSpace(out) != "container create ev\ncontainer start ev\ncontainer die ev\ncontainer destroy ev" {
		t.Fatalf("events --since --until --filter container=ev:\n%s", out)
	}
	out = d.Must("events", "--since", since, "--until", until, "--filter", "event=die")
	if !strings.Contains(out, " container die "+id+" (exitCode=3, image=busybox, name=ev)") || strings.Count(out, "\n") != 1 {
		t.Fatalf("events --filter event=die:\n%s", out)
	}
	out = d.Must("events", "--since", since, "--until", until, "--filter", "type=network", "--format", "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.type}} {{.Actor.Attributes.container}}")
	if strings.TrimSpace(out) != "connect bridge bridge "+id+"\ndisconnect bridge bridge "+id {
		t.Fatalf("network events:\n%s", out)
	}
	if out := d.Must("events", "--since", since, "--until", until, "--filter", "type=image"); out != "" {
		t.Fatalf("no image events in the window, got:\n%s", out)
	}
	// A run that is not detached attaches first, and says so, as dockerd.
	from := fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)
	d.Must("run", "--rm", "--name", "xatt", "busybox", "true")
	to := fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)
	out = d.Must("events", "--since", from, "--until", to, "--filter", "container=xatt", "--filter", "type=container", "--format", "{{.Action}}")
	if strings.Join(strings.Fields(out), " ") != "create attach start die destroy" {
		t.Fatalf("events of run --rm:\n%s", out)
	}
	// rm -f kills (no "stop", as dockerd); an exec's action is dockerd's,
	// the entrypoint then a space then the arguments.
	from = fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)
	d.Must("run", "-d", "--name", "xrm", "busybox", "sleep", "100")
	d.Must("exec", "xrm", "true")
	d.Must("rm", "-f", "xrm")
	to = fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)
	out = d.Must("events", "--since", from, "--until", to, "--filter", "container=xrm", "--filter", "type=container", "--format", "{{.Action}}|")
	if got := strings.ReplaceAll(out, "\n", ""); got != "create|start|exec_create: true |exec_start: true |exec_die|kill|die|destroy|" {
		t.Fatalf("events of exec and rm -f: %q", got)
	}

	// A live stream sees what happens after it starts, images included.
	cmd := exec.Command(d.Bin, "-H", "unix://"+d.Socket, "events", "--filter", "type=container", "--filter", "event=start", "--filter", "event=pause", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
	var live strings.Builder
	cmd.Stdout = &live
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(300 * time.Millisecond)
	d.Must("run", "-d", "--name", "live", "busybox", "sleep", "1000")
	d.Must("pause", "live")
	waitFor(t, "the live events", func() bool { return strings.Contains(live.String(), "start live\npause live\n") })
	d.Must("rm", "-f", "live")

	failsWith(t, d.Run("events", "--filter", "bogus=1", "--until", until), "invalid filter 'bogus'")
	failsWith(t, d.Run("events", "--since", "yesterday", "--until", until), "yesterday")
	failsWith(t, d.Run("events", "--since", until, "--until", since), "cannot be after")

	t.Run("docker CLI", func(t *testing.T) {
		docker := dockerCLI(t, d)
		r := docker("events", "--since", since, "--until", until, "--filter", "container=ev", "--filter", "event=start", "--format", "{{.Status}} {{.ID}} {{.From}}")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "start "+id+" busybox" {
			t.Fatalf("docker events: %s", r)
		}
	})
	t.Run("docker-py", func(t *testing.T) {
		out := dockerPyAt(t, d, "1.41", fmt.Sprintf(`for e in c.events(since=%s, until=%s, decode=True, filters={'container': 'ev'}):
    print(e['Action'], e['Actor']['Attributes'].get('exitCode', '-'))`, since, until))
		if out != "create -\nstart -\ndie 3\ndestroy -" {
			t.Fatalf("docker-py events: %q", out)
		}
	})
}

func TestRenameUpdate(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--name", "old", "busybox", "sleep", "1000"))
	d.Must("run", "-d", "--name", "other", "busybox", "sleep", "1000")
	d.Must("rename", "old", "new")
	if out := d.Must("exec", "new", "echo", "still here"); strings.TrimSpace(out) != "still here" {
		t.Fatalf("exec after rename: %q", out)
	}
	if n := d.Must("inspect", "--format", "{{.Name}}", id); strings.TrimSpace(n) != "/new" {
		t.Fatalf("name after rename: %q", n)
	}
	failsWith(t, d.Run("rename", "new", "other"), "is already in use")
	failsWith(t, d.Run("rename", "new", "bad/name"), "Invalid container name")
	failsWith(t, d.Run("rename", "nosuch", "x"), "No such container")
	failsWith(t, d.Run("rename", "new", "new"), "same name")
	if n := d.Must("inspect", "--format", "{{.Name}}", id); strings.TrimSpace(n) != "/new" {
		t.Fatalf("name after refused renames: %q", n)
	}
	d.Must("run", "--rm", "--name", "old", "busybox", "true") // the old name is free

	d.Must("update", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", "new")
	if got := cgroupFile(t, d, "memory", id, "memory.limit_in_bytes"); got != "67108864" {
		t.Fatalf("memory.limit_in_bytes = %s", got)
	}
	if got := cgroupFile(t, d, "pids", id, "pids.max"); got != "50" {
		t.Fatalf("pids.max = %s", got)
	}
	if got := cgroupFile(t, d, "cpu", id, "cpu.cfs_quota_us"); got != "50000" {
		t.Fatalf("cpu.cfs_quota_us = %s", got)
	}
	if hc := d.Must("inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}", id); strings.TrimSpace(hc) != "67108864 50 500000000" {
		t.Fatalf("inspect after update: %q", hc)
	}
	// Refused updates change nothing.
	failsWith(t, d.Run("update", "--memory", "1k", "new"), "Minimum memory limit")
	failsWith(t, d.Run("update", "--cpu-quota", "1000", "new"), "--cpu-quota cannot be updated")
	failsWith(t, d.Run("update", "--cpus", "99", "new"), "Range of CPUs")
	failsWith(t, d.Run("update", "new"), "you must provide one or more flags")
	failsWith(t, d.Run("update", "--memory", "64m", "nosuch"), "No such container")
	if got := cgroupFile(t, d, "memory", id, "memory.limit_in_bytes"); got != "67108864" {
		t.Fatalf("memory.limit_in_bytes after refused updates = %s", got)
	}
	d.Must("update", "--pids-limit", "-1", "new")
	if got := cgroupFile(t, d, "pids", id, "pids.max"); got != "max" {
		t.Fatalf("pids.max after --pids-limit -1 = %s", got)
	}

	t.Run("docker CLI", func(t *testing.T) {
		docker := dockerCLI(t, d)
		if r := docker("update", "--memory", "96m", "--memory-swap", "-1", "new"); r.Code != 0 {
			t.Fatalf("docker update: %s", r)
		}
		if got := cgroupFile(t, d, "memory", id, "memory.limit_in_bytes"); got != "100663296" {
			t.Fatalf("memory.limit_in_bytes after docker update = %s", got)
		}
		if r := docker("rename", "new", "newer"); r.Code != 0 {
			t.Fatalf("docker rename: %s", r)
		}
		if r := docker("update", "--blkio-weight", "500", "newer"); r.Code == 0 || !strings.Contains(r.Stderr, "--blkio-weight cannot be updated") {
			t.Fatalf("docker update --blkio-weight: %s", r)
		}
	})
}

func TestDiffPortExportPrune(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--name", "web", "-p", "127.0.0.1:18931:80", "busybox", "sh", "-c",
		"echo hi > /newfile; rm /etc/group; mkdir -p /tmp/made; sleep 1000"))
	waitFor(t, "the changes", func() bool { return strings.Contains(d.Must("diff", "web"), "A /tmp/made") })
	diff := d.Must("diff", "web")
	for _, want := range []string{"A /newfile", "D /etc/group", "C /etc", "C /tmp", "A /tmp/made"} {
		if !strings.Contains(diff, want+"\n") {
			t.Fatalf("diff lacks %q:\n%s", want, diff)
		}
	}
	failsWith(t, d.Run("diff", "nosuch"), "No such container")

	if out := d.Must("port", "web"); strings.TrimSpace(out) != "80/tcp -> 127.0.0.1:18931" {
		t.Fatalf("port: %q", out)
	}
	if out := d.Must("port", "web", "80"); strings.TrimSpace(out) != "127.0.0.1:18931" {
		t.Fatalf("port web 80: %q", out)
	}
	failsWith(t, d.Run("port", "web", "81"), "No public port '81/tcp' published for web")
	failsWith(t, d.Run("port", "web", "http"), "invalid port")

	tarPath := filepath.Join(t.TempDir(), "web.tar")
	d.Must("export", "-o", tarPath, "web")
	if out, err := exec.Command("tar", "-tf", tarPath).Output(); err != nil || !strings.Contains(string(out), "newfile") || strings.Contains(string(out), "etc/group") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	failsWith(t, d.Run("export", "-o", filepath.Join(t.TempDir(), "x.tar"), "nosuch"), "No such container")

	df := d.Must("system", "df")
	if !strings.Contains(df, "TYPE") || !strings.Contains(df, "RECLAIMABLE") || !strings.Contains(df, "Containers") {
		t.Fatalf("system df:\n%s", df)
	}
	if out := d.Must("system", "df", "--format", "{{.Type}}={{.TotalCount}}/{{.Active}}"); !strings.Contains(out, "Images=1/1") || !strings.Contains(out, "Containers=1/1") {
		t.Fatalf("system df --format:\n%s", out)
	}

	stopped := strings.TrimSpace(d.Must("create", "busybox", "true"))
	r := d.RunStdin([]byte("n\n"), "container", "prune")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Are you sure you want to continue? [y/N]") {
		t.Fatalf("container prune answered no: %s", r)
	}
	d.Must("inspect", stopped) // still there
	if out := d.Must("container", "prune", "-f"); !strings.Contains(out, "Deleted Containers:\n"+stopped) {
		t.Fatalf("container prune -f:\n%s", out)
	}
	if out := d.Must("system", "prune", "-f"); !strings.Contains(out, "Total reclaimed space:") {
		t.Fatalf("system prune -f:\n%s", out)
	}
	// --volumes: anonymous volumes only, as docker.
	d.Must("system", "prune", "-f", "--volumes")
	d.Must("inspect", id) // running: never pruned

	t.Run("docker CLI", func(t *testing.T) {
		docker := dockerCLI(t, d)
		if r := docker("diff", "web"); r.Code != 0 || !strings.Contains(r.Stdout, "A /newfile") {
			t.Fatalf("docker diff: %s", r)
		}
		if r := docker("port", "web"); r.Code != 0 || !strings.Contains(r.Stdout, "80/tcp -> 127.0.0.1:18931") {
			t.Fatalf("docker port: %s", r)
		}
		if r := docker("system", "df"); r.Code != 0 || !strings.Contains(r.Stdout, "Containers") {
			t.Fatalf("docker system df: %s", r)
		}
		if r := docker("system", "prune", "-f"); r.Code != 0 {
			t.Fatalf("docker system prune: %s", r)
		}
	})
}

// TestSwarmEvents: a manager's stream has the nodes and services changed
// through it (scope swarm), beside the task containers the node runs.
func TestSwarmEvents(t *testing.T) {
	c := newSwarm(t, 1, 0)
	mgr := c.managers[0]
	since := fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)
	must(t, mgr, "service", "create", "-d", "--name", "evsvc", "--replicas", "1", "busybox:latest", "sleep", "1000")
	must(t, mgr, "node", "update", "--label-add", "tier=a", mgr.Name)
	must(t, mgr, "service", "rm", "evsvc")
	until := fmt.Sprintf("%.3f", float64(time.Now().UnixNano())/1e9)
	out := must(t, mgr, "events", "--since", since, "--until", until, "--filter", "scope=swarm", "--format", "{{.Type}} {{.Action}} {{.Scope}}")
	if strings.TrimSpace(out) != "service create swarm\nnode update swarm\nservice remove swarm" {
		t.Fatalf("swarm events:\n%s", out)
	}
	out = must(t, mgr, "events", "--since", since, "--until", until, "--filter", "node="+mgr.Name, "--format", "{{.Action}} {{.Actor.Attributes.name}}")
	if strings.TrimSpace(out) != "update "+mgr.Name {
		t.Fatalf("events --filter node=%s:\n%s", mgr.Name, out)
	}
	out = must(t, mgr, "events", "--since", since, "--until", until, "--filter", "service=evsvc", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
	if strings.TrimSpace(out) != "create evsvc\nremove evsvc" {
		t.Fatalf("events --filter service=evsvc:\n%s", out)
	}
}
