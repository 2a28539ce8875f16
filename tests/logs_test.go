package tests

import (
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

// countLines is a busybox script printing "line 1" to "line N".
func countLines(n int, pause string) string {
	return fmt.Sprintf("i=1; while [ $i -le %d ]; do echo line $i; %s i=$((i+1)); done", n, pause)
}

// logFiles lists a container's log files by name.
func logFiles(t *testing.T, d *harness.Daemon, id string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(d.Root, "containers", id))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), id+"-json.log") {
			names = append(names, strings.TrimPrefix(e.Name(), id+"-json.log"))
		}
	}
	return names
}

// assertLastLines checks that out is "line K" ... "line last", in order,
// and has at least min lines.
func assertLastLines(t *testing.T, what, out string, last, min int) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < min {
		t.Fatalf("%s: %d lines, want at least %d:\n%s", what, len(lines), min, out)
	}
	for i, l := range lines {
		if want := fmt.Sprintf("line %d", last-len(lines)+1+i); l != want {
			t.Fatalf("%s: line %d is %q, want %q:\n%s", what, i, l, want, out)
		}
	}
}

// Rotation as dockerd's json-file: max-size=1k max-file=3 keeps three files
// (x.log, x.log.1, x.log.2), logs reads across them in order and --tail
// counts across them; with compress the rotated files are x.log.N.gz.
func TestLogRotation(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=3", "busybox", "sh", "-c", countLines(200, "")))
	d.Must("wait", id)
	if got := strings.Join(logFiles(t, d, id), " "); got != " .1 .2" {
		t.Fatalf("log files %q, want the log, .1 and .2", got)
	}
	// Each record is about 70 bytes: three 1k files hold more than 20.
	assertLastLines(t, "logs", d.Must("logs", id), 200, 20)
	assertLastLines(t, "logs --tail 25", d.Must("logs", "--tail", "25", id), 200, 25)
	if n := strings.Count(d.Must("logs", "--tail", "25", id), "\n"); n != 25 {
		t.Fatalf("logs --tail 25 printed %d lines", n)
	}
	var lc struct {
		Type   string
		Config map[string]string
	}
	if err := json.Unmarshal([]byte(d.Must("inspect", "-f", "{{json .HostConfig.LogConfig}}", id)), &lc); err != nil ||
		lc.Type != "json-file" || lc.Config["max-size"] != "1k" || lc.Config["max-file"] != "3" {
		t.Fatalf("inspect LogConfig %+v (%v)", lc, err)
	}

	id = strings.TrimSpace(d.Must("run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=3", "--log-opt", "compress=true", "busybox", "sh", "-c", countLines(200, "")))
	d.Must("wait", id)
	if got := strings.Join(logFiles(t, d, id), " "); got != " .1.gz .2.gz" {
		t.Fatalf("log files %q, want the log, .1.gz and .2.gz", got)
	}
	out, err := exec.Command("gzip", "-dc", filepath.Join(d.Root, "containers", id, id+"-json.log.1.gz")).Output()
	if err != nil || !strings.HasPrefix(string(out), `{"log":"line `) {
		t.Fatalf("x.log.1.gz is not gzipped json-file records: %v %.80q", err, out)
	}
	assertLastLines(t, "logs (compressed)", d.Must("logs", id), 200, 20)
}

// The local driver, as the daemon's default (shoal daemon --log-driver
// local): its records round-trip with their streams, /info and inspect name
// it, rotation and compression are on by default; since/until select by
// time (RFC3339, unix and relative forms, as docker's); none keeps nothing.
func TestLogLocalDriverSinceUntil(t *testing.T) {
	d := harness.StartDaemon(t, harness.Options{Args: []string{"--log-driver", "local", "--log-opt", "max-size=2k"}})
	d.Must("import", harness.BusyboxTar(t), "busybox:latest")
	if got := strings.TrimSpace(d.Must("info", "-f", "{{.LoggingDriver}}")); got != "local" {
		t.Fatalf("info LoggingDriver %q", got)
	}
	id := strings.TrimSpace(d.Must("run", "-d", "busybox", "sh", "-c", "echo early; echo warn >&2; sleep 1.5; echo late; "+countLines(600, "")))
	d.Must("wait", id)
	if lc := d.Must("inspect", "-f", "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}}", id); strings.TrimSpace(lc) != "local 2k" {
		t.Fatalf("inspect LogConfig: %q", lc)
	}
	files := logFiles(t, d, id)
	if len(files) != 5 || files[1] != ".1.gz" {
		t.Fatalf("local log files %q: want 5 (max-file 5), compressed", files)
	}
	raw, err := os.ReadFile(filepath.Join(d.Root, "containers", id, id+"-json.log"))
	if err != nil || strings.Contains(string(raw), `"log"`) {
		t.Fatalf("the local log is not the binary framing: %v %.60q", err, raw)
	}
	assertLastLines(t, "local logs", d.Must("logs", "--tail", "40", id), 600, 40)

	id = strings.TrimSpace(d.Must("run", "-d", "busybox", "sh", "-c", "echo early; echo warn >&2; sleep 1.5; echo late"))
	d.Must("wait", id)
	r := d.Run("logs", id)
	if r.Code != 0 || r.Stdout != "early\nlate\n" || r.Stderr != "warn\n" {
		t.Fatalf("local round trip: %s", r)
	}
	ts := d.Must("logs", "-t", id)
	var times []time.Time
	for _, l := range strings.Split(strings.TrimSpace(ts), "\n") {
		tm, err := time.Parse(time.RFC3339Nano, strings.Fields(l)[0])
		if err != nil {
			t.Fatalf("logs -t line %q: %v", l, err)
		}
		times = append(times, tm)
	}
	mid := times[0].Add(700 * time.Millisecond)
	for _, c := range []struct{ flag, value, want string }{
		{"--since", mid.Format(time.RFC3339Nano), "late\n"},
		{"--since", strconv.FormatInt(mid.Unix()+1, 10), "late\n"},
		{"--until", mid.Format(time.RFC3339Nano), "early\n"},
		{"--since", "10m", "early\nlate\n"},
		{"--until", "10m", ""},
	} {
		if got := d.Must("logs", c.flag, c.value, id); got != c.want && !(c.value == strconv.FormatInt(mid.Unix()+1, 10) && got == "") {
			t.Fatalf("logs %s %s: %q, want %q", c.flag, c.value, got, c.want)
		}
	}

	id = strings.TrimSpace(d.Must("run", "-d", "--log-driver", "none", "busybox", "echo", "hi"))
	d.Must("wait", id)
	if r := d.Run("logs", id); r.Code == 0 || !strings.Contains(r.Stderr, "configured logging driver does not support reading") {
		t.Fatalf("logs of a none container: %s", r)
	}
}

// logs -f goes on in the new file after a rotation, without losing or
// repeating a line.
func TestLogsFollowAcrossRotation(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "busybox", "sh", "-c", "sleep 1; "+countLines(150, "usleep 10000;")))
	r := d.Run("logs", "-f", id)
	if r.Code != 0 {
		t.Fatalf("logs -f: %s", r)
	}
	assertLastLines(t, "logs -f", r.Stdout, 150, 150)
	if n := len(logFiles(t, d, id)); n != 2 {
		t.Fatalf("%d log files, want 2 (the test must rotate)", n)
	}
}

// --details shows the labels and env that json-file's labels/env options
// pick, as dockerd ("k=v,k2=v2 line"); without them a bare space.
func TestLogsDetails(t *testing.T) {
	d := engine(t)
	id := strings.TrimSpace(d.Must("run", "-d", "--label", "team=blue", "--label", "other=x", "-e", "STAGE=prod",
		"--log-opt", "labels=team", "--log-opt", "env=STAGE", "busybox", "echo", "hi"))
	d.Must("wait", id)
	if got := d.Must("logs", "--details", id); got != "STAGE=prod,team=blue hi\n" {
		t.Fatalf("logs --details: %q", got)
	}
	id = strings.TrimSpace(d.Must("run", "-d", "busybox", "echo", "hi"))
	d.Must("wait", id)
	if got := d.Must("logs", "--details", id); got != " hi\n" {
		t.Fatalf("logs --details without attributes: %q", got)
	}
}

// A container writing as fast as it can does not block the daemon: API
// calls keep answering and another container's log keeps growing while it
// runs. It asserts progress, not durations.
func TestLogFloodDoesNotBlock(t *testing.T) {
	d := engine(t)
	flood := strings.TrimSpace(d.Must("run", "-d", "--log-opt", "max-size=1m", "--log-opt", "max-file=2", "busybox", "sh", "-c", "while :; do echo flooding the log with a line; done"))
	defer d.Run("rm", "-f", flood)
	ticker := strings.TrimSpace(d.Must("run", "-d", "busybox", "sh", "-c", countLines(1000, "usleep 100000;")))
	defer d.Run("rm", "-f", ticker)
	last := 0
	for round := 0; round < 3; round++ {
		if out := d.Must("ps", "-q"); !strings.Contains(out, flood[:12]) {
			t.Fatalf("ps during the flood: %q", out)
		}
		waitFor(t, "the other container's log to grow", func() bool {
			lines := strings.Split(strings.TrimSpace(d.Must("logs", "--tail", "1", ticker)), " ")
			n, _ := strconv.Atoi(lines[len(lines)-1])
			if n > last {
				last = n
				return true
			}
			return false
		})
	}
	if n := strings.Count(d.Must("logs", "--tail", "3", flood), "flooding"); n != 3 {
		t.Fatalf("the flooding container's log: %d lines", n)
	}
}

// Bad input for every new flag: a one-line error, a non-zero exit and no
// container left behind; a daemon with a bad default does not start.
func TestLogBadInput(t *testing.T) {
	d := engine(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-driver", "syslogx"}, "logger: no log driver named 'syslogx' is registered"},
		{[]string{"--log-opt", "bogus=1"}, "unknown log opt 'bogus' for json-file log driver"},
		{[]string{"--log-driver", "local", "--log-opt", "labels=a"}, "unknown log opt 'labels' for log driver local"},
		{[]string{"--log-driver", "none", "--log-opt", "max-size=1k"}, "unknown log opt 'max-size' for log driver none"},
		{[]string{"--log-opt", "max-size=lots"}, "max-size"},
		{[]string{"--log-opt", "max-size=-1"}, "max-size"},
		{[]string{"--log-opt", "max-size=1k", "--log-opt", "max-file=0"}, "max-file cannot be less than 1"},
		{[]string{"--log-opt", "max-file=x"}, "max-file"},
		{[]string{"--log-opt", "compress=true"}, "compress cannot be true when max-file is less than 2 or max-size is not set"},
		{[]string{"--log-opt", "compress=maybe"}, "compress"},
		{[]string{"--log-driver", "local", "--log-opt", "max-file=1"}, "compression cannot be enabled when max file count is 1"},
		{[]string{"--log-opt", "labels-regex=("}, "labels-regex"},
		{[]string{"--log-opt", "max-size"}, "invalid log opt \"max-size\": want KEY=VALUE"},
	} {
		for _, verb := range []string{"run", "create"} {
			args := append(append([]string{verb}, c.args...), "busybox", "true")
			r := d.Run(args...)
			if r.Code == 0 || !strings.Contains(r.Stderr, c.want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
				t.Fatalf("shoal %s: %s (want one line with %q)", strings.Join(args, " "), r, c.want)
			}
		}
	}
	if out := d.Must("ps", "-aq"); out != "" {
		t.Fatalf("bad log options left containers: %q", out)
	}
	id := strings.TrimSpace(d.Must("create", "busybox", "true"))
	for _, args := range [][]string{{"--since", "yesterday"}, {"--until", "soon"}, {"--tail", "some"}} {
		r := d.Run(append(append([]string{"logs"}, args...), id)...)
		if r.Code == 0 || r.Stderr == "" || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Fatalf("logs %v: %s", args, r)
		}
	}
	dir := t.TempDir()
	for _, args := range [][]string{{"--log-driver", "bogus"}, {"--log-opt", "max-file=0"}, {"--log-opt", "nokey"}} {
		cmd := exec.Command(d.Bin, append([]string{"daemon", "-H", "unix://" + dir + "/s.sock", "--data-root", dir + "/d", "--exec-root", dir + "/e"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "log") {
			t.Fatalf("daemon %v: %v %s", args, err, out)
		}
	}
}

// The docker CLI and docker-py drive the same: rotation options, the local
// driver, tail/since/until/details, inspect's LogConfig and refusals.
func TestLogsDockerClients(t *testing.T) {
	d := engine(t)
	docker := dockerCLI(t, d)
	r := docker("run", "-d", "--log-opt", "max-size=1k", "--log-opt", "max-file=3", "busybox", "sh", "-c", countLines(200, ""))
	if r.Code != 0 {
		t.Fatalf("docker run: %s", r)
	}
	id := strings.TrimSpace(r.Stdout)
	docker("wait", id)
	if r := docker("logs", "--tail", "5", id); r.Code != 0 || r.Stdout != "line 196\nline 197\nline 198\nline 199\nline 200\n" {
		t.Fatalf("docker logs --tail 5: %s", r)
	}
	if r := docker("logs", "--since", "10m", id); r.Code != 0 {
		t.Fatalf("docker logs --since: %s", r)
	} else {
		assertLastLines(t, "docker logs --since 10m", r.Stdout, 200, 20)
	}
	if r := docker("logs", "--until", "10m", id); r.Code != 0 || r.Stdout != "" {
		t.Fatalf("docker logs --until 10m: %s", r)
	}
	if r := docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-file\"}}", id); strings.TrimSpace(r.Stdout) != "json-file 3" {
		t.Fatalf("docker inspect LogConfig: %s", r)
	}
	r = docker("run", "--log-driver", "local", "--label", "app=web", "busybox", "echo", "hello")
	if r.Code != 0 || r.Stdout != "hello\n" {
		t.Fatalf("docker run --log-driver local: %s", r)
	}
	r = docker("run", "-d", "--label", "app=web", "--log-opt", "labels=app", "busybox", "echo", "hi")
	id = strings.TrimSpace(r.Stdout)
	docker("wait", id)
	if r := docker("logs", "--details", id); r.Stdout != "app=web hi\n" {
		t.Fatalf("docker logs --details: %s", r)
	}
	before := docker("ps", "-aq").Stdout
	if r := docker("run", "--log-opt", "max-file=two", "busybox", "true"); r.Code != 125 || !strings.Contains(r.Stderr, "max-file") {
		t.Fatalf("docker run bad --log-opt: %s", r)
	}
	if after := docker("ps", "-aq").Stdout; after != before {
		t.Fatalf("a refused run left a container: %q -> %q", before, after)
	}

	out := dockerPy(t, d, `
from docker.types import LogConfig
k = c.containers.run('busybox', ['sh', '-c', 'echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three'], detach=True,
    log_config=LogConfig(type='local', config={'max-size': '1k', 'max-file': '2'}))
k.wait()
k.reload()
print(k.attrs['HostConfig']['LogConfig']['Type'], k.attrs['HostConfig']['LogConfig']['Config']['max-size'])
print(repr(k.logs(tail=2)))
print(repr(k.logs(stderr=False)))
print(repr(k.logs(since=int(time.time()) - 600, until=int(time.time()) + 5)))
print(repr(k.logs(until=1)))
try:
    c.containers.run('busybox', 'true', log_config=LogConfig(type='syslogx'))
except docker.errors.APIError as e:
    print(e.explanation)
print(c.info()['LoggingDriver'])
`)
	want := "local 1k\nb'two\\nthree\\n'\nb'one\\nthree\\n'\nb'one\\ntwo\\nthree\\n'\nb''\nlogger: no log driver named 'syslogx' is registered\njson-file"
	if out != want {
		t.Fatalf("docker-py:\n%s\nwant:\n%s", out, want)
	}
}
