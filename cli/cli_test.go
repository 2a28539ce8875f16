package cli

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// result is what one CLI invocation did.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI in-process against host with stdin.
func runCLI(t *testing.T, host, stdin string, args ...string) result {
	t.Helper()
	root := NewRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"-H", host}, args...))
	code := Execute(root)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// fakeDaemon is a tiny Engine API server on a unix socket: only the
// endpoints a test registers exist. It records the requests it saw.
type fakeDaemon struct {
	host string
	mux  *http.ServeMux
	mu   sync.Mutex
	log  []string // "METHOD /path" without the version prefix
}

var versionPrefix = regexp.MustCompile(`^/v[0-9.]+/`)

func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoalcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDaemon{host: "unix://" + sock, mux: http.NewServeMux()}
	d.mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK"))
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = "/" + versionPrefix.ReplaceAllString(r.URL.Path, "")
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "//")
		if r.URL.Path != "/_ping" {
			d.mu.Lock()
			d.log = append(d.log, r.Method+" "+r.URL.Path)
			d.mu.Unlock()
		}
		d.mux.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return d
}

func (d *fakeDaemon) requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.log...)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func apiErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"message": msg})
}

// frame is one stdcopy frame: stream 1 = stdout, 2 = stderr.
func frame(stream byte, s string) []byte {
	h := make([]byte, 8)
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
	return append(h, s...)
}

// hijack answers an attach or exec start the way dockerd does: 101, then
// the raw connection.
func hijack(t *testing.T, w http.ResponseWriter, r *http.Request) (net.Conn, *bufio.ReadWriter) {
	// Read the request body first: closing the connection while the client
	// still writes it would fail the client with EPIPE.
	io.Copy(io.Discard, r.Body)
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return nil, nil
	}
	fmt.Fprint(rw, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	rw.Flush()
	return conn, rw
}

func TestNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	host := "unix://" + sock
	want := "Cannot connect to the shoal daemon at " + host + ". Is the daemon running?\n"
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"ps"}, 1},
		{[]string{"images"}, 1},
		{[]string{"logs", "x"}, 1},
		{[]string{"exec", "x", "true"}, 1},
		{[]string{"run", "busybox", "true"}, 125},
		{[]string{"create", "busybox"}, 1},
		{[]string{"inspect", "x"}, 1},
		{[]string{"rm", "x", "y"}, 1},
	} {
		r := runCLI(t, host, "", c.args...)
		if r.code != c.code || r.stderr != want {
			t.Errorf("%v without a daemon: code %d stderr %q; want %d %q", c.args, r.code, r.stderr, c.code, want)
		}
	}
}

func TestHostFromEnvironment(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "env.sock")
	t.Setenv(HostEnv, "unix://"+sock)
	root := NewRootCommand()
	var errb bytes.Buffer
	root.SetErr(&errb)
	root.SetOut(io.Discard)
	root.SetArgs([]string{"ps"})
	if code := Execute(root); code != 1 || !strings.Contains(errb.String(), "unix://"+sock) {
		t.Fatalf("SHOAL_HOST not used: %d %q", code, errb.String())
	}
	root = NewRootCommand()
	ps, _, _ := root.Find([]string{"ps"})
	if got := DaemonHost(ps); got != "unix://"+sock {
		t.Fatalf("DaemonHost = %q", got)
	}
	t.Setenv(HostEnv, "")
	if got := DaemonHost(ps); got != DefaultHost {
		t.Fatalf("DaemonHost default = %q", got)
	}
}

func TestFlagErrors(t *testing.T) {
	host := "unix:///nonexistent/x.sock"
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"run", "-m", "64x", "busybox"}, 125, `invalid argument "64x" for "-m, --memory" flag: invalid size: '64x'`},
		{[]string{"run", "--cpus", "abc", "busybox"}, 125, `invalid argument "abc" for "--cpus" flag: failed to parse abc as a rational number`},
		{[]string{"run", "-p", "80:80/icmp", "busybox"}, 125, "invalid proto: icmp"},
		{[]string{"run", "-v", "/a:rel", "busybox"}, 125, "container path must be absolute"},
		{[]string{"run", "Bad:Ref!!", "true"}, 125, "invalid reference format"},
		{[]string{"run", "--restart", "always", "--rm", "busybox"}, 125, "conflicting options"},
		{[]string{"run", "--nosuchflag", "busybox"}, 125, "unknown flag: --nosuchflag"},
		{[]string{"ps", "--nosuchflag"}, 125, "unknown flag: --nosuchflag"},
		{[]string{"logs"}, 1, `"shoal logs" requires exactly 1 argument.`},
		{[]string{"cp", "a", "b"}, 1, "must specify at least one container source"},
		{[]string{"cp", "x:/a", "y:/b"}, 1, "copying between containers is not supported"},
	}
	for _, c := range cases {
		r := runCLI(t, host, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.msg) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: code %d stderr %q; want %d and one line containing %q", c.args, r.code, r.stderr, c.code, c.msg)
		}
	}
}

func TestDaemonErrorsRendered(t *testing.T) {
	d := newFakeDaemon(t)
	d.mux.HandleFunc("GET /containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		apiErr(w, 404, "No such container: "+r.PathValue("id"))
	})
	d.mux.HandleFunc("POST /containers/create", func(w http.ResponseWriter, r *http.Request) {
		apiErr(w, 404, "No such image: nosuch:latest")
	})
	d.mux.HandleFunc("DELETE /images/{name}", func(w http.ResponseWriter, r *http.Request) {
		apiErr(w, 404, "No such image: "+r.PathValue("name"))
	})
	d.mux.HandleFunc("GET /images/{name}/json", func(w http.ResponseWriter, r *http.Request) {
		apiErr(w, 404, "No such image: "+r.PathValue("name"))
	})
	d.mux.HandleFunc("GET /containers/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("[{not json"))
	})
	for _, op := range []string{"stop", "start"} {
		d.mux.HandleFunc("POST /containers/{id}/"+op, func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") == "bad" || r.PathValue("id") == "worse" {
				apiErr(w, 404, "No such container: "+r.PathValue("id"))
				return
			}
			w.WriteHeader(204)
		})
	}
	cases := []struct {
		args   []string
		code   int
		stderr string
		stdout string
	}{
		{[]string{"logs", "nosuchcontainer"}, 1, "Error response from daemon: No such container: nosuchcontainer\n", ""},
		{[]string{"run", "--rm", "--pull", "never", "nosuch", "true"}, 125, "Error response from daemon: No such image: nosuch:latest\n", ""},
		{[]string{"create", "--pull", "never", "nosuch"}, 1, "Error response from daemon: No such image: nosuch:latest\n", ""},
		{[]string{"rmi", "nosuch:tag"}, 1, "Error response from daemon: No such image: nosuch:tag\n", ""},
		{[]string{"inspect", "zzz"}, 1, "Error: No such object: zzz\n", "[]\n"},
		{[]string{"image", "inspect", "zzz"}, 1, "Error response from daemon: No such image: zzz\n", "[]\n"},
		{[]string{"stop", "good", "bad"}, 1, "Error response from daemon: No such container: bad\n", "good\n"},
		// One line per failure, then the failed ones named, as docker.
		{[]string{"start", "bad", "good", "worse"}, 1, "Error response from daemon: No such container: bad\nError response from daemon: No such container: worse\nError: failed to start containers: bad, worse\n", "good\n"},
		{[]string{"create", "--add-host", "x", "busybox"}, 125, "invalid argument \"x\" for \"--add-host\" flag: bad format for add-host: \"x\"\n", ""},
		{[]string{"create", "--add-host", "x:y", "busybox"}, 125, "invalid argument \"x:y\" for \"--add-host\" flag: invalid IP address in add-host: \"y\"\n", ""},
	}
	for _, c := range cases {
		r := runCLI(t, d.host, "", c.args...)
		if r.code != c.code || r.stderr != c.stderr || r.stdout != c.stdout {
			t.Errorf("%v: got code %d stdout %q stderr %q; want %d %q %q", c.args, r.code, r.stdout, r.stderr, c.code, c.stdout, c.stderr)
		}
	}
	// A malformed body is an error, not a panic.
	if r := runCLI(t, d.host, "", "ps"); r.code != 1 || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("malformed list: %+v", r)
	}
}

// runDaemon serves the endpoints of a foreground run: create, attach,
// wait (headers at once, body at exit), start.
type runDaemon struct {
	*fakeDaemon
	created   chan map[string]any
	started   chan struct{}
	startErr  string
	exitCode  int
	stdinSeen chan string
	// noRemoved makes wait refuse the "removed" condition, as an older
	// daemon would.
	noRemoved bool
}

func newRunDaemon(t *testing.T) *runDaemon {
	d := &runDaemon{fakeDaemon: newFakeDaemon(t), created: make(chan map[string]any, 1), started: make(chan struct{}), stdinSeen: make(chan string, 1)}
	id := strings.Repeat("ab", 32)
	d.mux.HandleFunc("POST /containers/create", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		body["name"] = r.URL.Query().Get("name")
		d.created <- body
		writeJSON(w, 201, map[string]any{"Id": id, "Warnings": []string{}})
	})
	d.mux.HandleFunc("POST /containers/{id}/attach", func(w http.ResponseWriter, r *http.Request) {
		withStdin := r.URL.Query().Get("stdin") == "1"
		conn, rw := hijack(t, w, r)
		if conn == nil {
			return
		}
		defer conn.Close()
		<-d.started
		if withStdin {
			b, _ := io.ReadAll(rw) // until the CLI closes its write side
			d.stdinSeen <- string(b)
			rw.Write(frame(1, "got "+string(b)))
		}
		rw.Write(frame(1, "hello\n"))
		rw.Write(frame(2, "oops\n"))
		rw.Flush()
	})
	d.mux.HandleFunc("POST /containers/{id}/wait", func(w http.ResponseWriter, r *http.Request) {
		if d.noRemoved && r.URL.Query().Get("condition") == "removed" {
			apiErr(w, 400, "invalid condition: removed")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-d.started
		time.Sleep(50 * time.Millisecond)
		json.NewEncoder(w).Encode(map[string]any{"StatusCode": d.exitCode})
	})
	d.mux.HandleFunc("POST /containers/{id}/start", func(w http.ResponseWriter, r *http.Request) {
		if d.startErr != "" {
			apiErr(w, 400, d.startErr)
			return
		}
		close(d.started)
		w.WriteHeader(204)
	})
	d.mux.HandleFunc("DELETE /containers/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	return d
}

func TestRunForeground(t *testing.T) {
	d := newRunDaemon(t)
	d.exitCode = 3
	t.Setenv("SHOAL_TEST_FROM_ENV", "yes")
	r := runCLI(t, d.host, "", "run", "--rm", "--name", "web", "-e", "A=1", "-e", "SHOAL_TEST_FROM_ENV",
		"-m", "64m", "--cpus", "0.5", "--pids-limit", "8", "-p", "8080:80", "-v", "/tmp:/data:ro",
		"-w", "/tmp", "-u", "65534:65534", "--hostname", "boxy", "--network", "none",
		"--security-opt", "no-new-privileges", "--stop-timeout", "5", "-l", "k=v",
		"busybox", "sh", "-c", "exit 3")
	if r.code != 3 || r.stdout != "hello\n" || r.stderr != "oops\n" {
		t.Fatalf("run: %+v", r)
	}
	// Attach and wait come before start, as in docker.
	var order []string
	for _, l := range d.requests() {
		for _, step := range []string{"create", "attach", "wait", "start"} {
			if strings.HasSuffix(l, "/"+step) {
				order = append(order, step)
			}
		}
	}
	if strings.Join(order, ",") != "create,attach,wait,start" && strings.Join(order, ",") != "create,wait,attach,start" {
		t.Fatalf("request order %v", order)
	}
	body := <-d.created
	cfg, hc := body, body["HostConfig"].(map[string]any) // Config is inlined in the create body
	checks := map[string][2]any{
		"name":            {body["name"], "web"},
		"Image":           {cfg["Image"], "busybox"},
		"Cmd":             {fmt.Sprint(cfg["Cmd"]), "[sh -c exit 3]"},
		"Env":             {fmt.Sprint(cfg["Env"]), "[A=1 SHOAL_TEST_FROM_ENV=yes]"},
		"WorkingDir":      {cfg["WorkingDir"], "/tmp"},
		"User":            {cfg["User"], "65534:65534"},
		"Hostname":        {cfg["Hostname"], "boxy"},
		"StopTimeout":     {cfg["StopTimeout"], float64(5)},
		"Labels":          {fmt.Sprint(cfg["Labels"]), "map[k:v]"},
		"ExposedPorts":    {fmt.Sprint(cfg["ExposedPorts"]), "map[80/tcp:map[]]"},
		"Memory":          {hc["Memory"], float64(64 << 20)},
		"NanoCpus":        {hc["NanoCpus"], float64(5e8)},
		"PidsLimit":       {hc["PidsLimit"], float64(8)},
		"AutoRemove":      {hc["AutoRemove"], true},
		"NetworkMode":     {hc["NetworkMode"], "none"},
		"Binds":           {fmt.Sprint(hc["Binds"]), "[/tmp:/data:ro]"},
		"SecurityOpt":     {fmt.Sprint(hc["SecurityOpt"]), "[no-new-privileges]"},
		"PortBindings/80": {fmt.Sprint(hc["PortBindings"].(map[string]any)["80/tcp"]), "[map[HostIp: HostPort:8080]]"},
	}
	for k, v := range checks {
		if fmt.Sprint(v[0]) != fmt.Sprint(v[1]) {
			t.Errorf("create %s = %v, want %v", k, v[0], v[1])
		}
	}
}

func TestRunRemovedConditionFallback(t *testing.T) {
	d := newRunDaemon(t)
	d.noRemoved, d.exitCode = true, 7
	r := runCLI(t, d.host, "", "run", "--rm", "busybox", "sh", "-c", "exit 7")
	if r.code != 7 || r.stdout != "hello\n" {
		t.Fatalf("run --rm against a daemon without the removed condition: %+v", r)
	}
}

func TestRunInteractiveStdin(t *testing.T) {
	d := newRunDaemon(t)
	r := runCLI(t, d.host, "piped\n", "run", "-i", "busybox", "cat")
	if r.code != 0 || r.stdout != "got piped\nhello\n" {
		t.Fatalf("run -i: %+v", r)
	}
	if got := <-d.stdinSeen; got != "piped\n" {
		t.Fatalf("stdin seen %q", got)
	}
}

func TestRunStartFailureExitCodes(t *testing.T) {
	cases := []struct {
		msg  string
		code int
	}{
		{`failed to create task: exec: "/nonexistent": stat /nonexistent: no such file or directory`, 127},
		{`exec /etc/passwd: permission denied`, 126},
		{`driver failed programming external connectivity: Bind for 0.0.0.0:8080 failed: port is already allocated`, 125},
	}
	for _, c := range cases {
		d := newRunDaemon(t)
		d.startErr = c.msg
		r := runCLI(t, d.host, "", "run", "--rm", "busybox", "/nonexistent")
		if r.code != c.code || r.stderr != "Error response from daemon: "+c.msg+"\n" {
			t.Errorf("start error %q: %+v, want code %d", c.msg, r, c.code)
		}
		rmd := false
		for _, l := range d.requests() {
			rmd = rmd || strings.HasPrefix(l, "DELETE /containers/")
		}
		if !rmd {
			t.Errorf("--rm container not removed after a failed start: %v", d.requests())
		}
	}
}

func TestRunDetached(t *testing.T) {
	d := newRunDaemon(t)
	r := runCLI(t, d.host, "", "run", "-d", "busybox", "sleep", "30")
	if r.code != 0 || r.stdout != strings.Repeat("ab", 32)+"\n" {
		t.Fatalf("run -d: %+v", r)
	}
	body := <-d.created
	// Absent or false: the create body leaves zero values out.
	if attach, _ := body["AttachStdout"].(bool); attach || body["HostConfig"].(map[string]any)["NetworkMode"] != "bridge" {
		t.Fatalf("run -d config: %v", body)
	}
}

func TestExecExitCode(t *testing.T) {
	d := newFakeDaemon(t)
	d.mux.HandleFunc("POST /containers/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "web" {
			apiErr(w, 404, "No such container: "+r.PathValue("id"))
			return
		}
		writeJSON(w, 201, map[string]string{"Id": "e1"})
	})
	d.mux.HandleFunc("POST /exec/e1/start", func(w http.ResponseWriter, r *http.Request) {
		conn, rw := hijack(t, w, r)
		if conn == nil {
			return
		}
		defer conn.Close()
		rw.Write(frame(1, "out\n"))
		rw.Write(frame(2, "err\n"))
		rw.Flush()
	})
	d.mux.HandleFunc("GET /exec/e1/json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"ID": "e1", "Running": false, "ExitCode": 5})
	})
	r := runCLI(t, d.host, "", "exec", "web", "sh", "-c", "exit 5")
	if r.code != 5 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("exec: %+v", r)
	}
	r = runCLI(t, d.host, "", "exec", "nosuch", "true")
	if r.code != 1 || r.stderr != "Error response from daemon: No such container: nosuch\n" {
		t.Fatalf("exec missing container: %+v", r)
	}
}

func TestListingsAgainstCannedDaemon(t *testing.T) {
	d := newFakeDaemon(t)
	now := time.Now().Unix()
	d.mux.HandleFunc("GET /containers/json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, []map[string]any{{
			"Id": strings.Repeat("cd", 32), "Names": []string{"/www"}, "Image": "busybox", "Command": "httpd -f -p 80",
			"Created": now - 5, "State": "running", "Status": "Up 5 seconds",
			"Ports": []map[string]any{{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 20080, "Type": "tcp"}},
		}, {
			"Id": strings.Repeat("ef", 32), "Names": []string{"/old"}, "Image": "busybox", "Command": "true",
			"Created": now - 60, "State": "exited", "Status": "",
		}})
	})
	d.mux.HandleFunc("GET /containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"Id": r.PathValue("id"), "State": map[string]any{
			"Status": "exited", "ExitCode": 2, "FinishedAt": time.Now().Add(-3500 * time.Millisecond).UTC().Format(time.RFC3339Nano)}})
	})
	d.mux.HandleFunc("GET /images/json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, []map[string]any{{"Id": "sha256:" + strings.Repeat("12", 32), "RepoTags": []string{"busybox:latest", "mybox:v1"}, "Created": now - 120, "Size": 1240000}})
	})
	d.mux.HandleFunc("POST /images/create", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Query().Get("fromSrc") != "-" || r.URL.Query().Get("repo") != "busybox:latest" {
			apiErr(w, 400, "bad import query "+r.URL.RawQuery)
			return
		}
		writeJSON(w, 200, map[string]string{"status": "sha256:" + strings.Repeat("12", 32)})
	})
	d.mux.HandleFunc("POST /images/load", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		writeJSON(w, 200, map[string]string{"stream": "Loaded image: mybox:v1\n"})
	})

	r := runCLI(t, d.host, "", "ps", "-a")
	if r.code != 0 ||
		!regexp.MustCompile(`(?m)^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^cdcdcdcdcdcd\s+busybox\s+"httpd -f -p 80"\s+5 seconds ago\s+Up 5 seconds\s+0\.0\.0\.0:20080->80/tcp\s+www$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^efefefefefef\s+busybox\s+"true"\s+About a minute ago\s+Exited \(2\) 3 seconds ago\s+old$`).MatchString(r.stdout) {
		t.Fatalf("ps -a:\n%s%s", r.stdout, r.stderr)
	}
	// -s adds the SIZE column, as docker's (it was fetched and not shown).
	if r := runCLI(t, d.host, "", "ps", "-s"); !regexp.MustCompile(`(?m)^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES\s+SIZE$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)\s+www\s+0B$`).MatchString(r.stdout) {
		t.Fatalf("ps -s:\n%s%s", r.stdout, r.stderr)
	}
	if r := runCLI(t, d.host, "", "ps", "-q", "--no-trunc"); r.stdout != strings.Repeat("cd", 32)+"\n"+strings.Repeat("ef", 32)+"\n" {
		t.Fatalf("ps -q: %q", r.stdout)
	}
	if r := runCLI(t, d.host, "", "ps", "--format", "{{.Names}} {{.State}}"); r.stdout != "www running\nold exited\n" {
		t.Fatalf("ps --format: %q", r.stdout)
	}
	r = runCLI(t, d.host, "", "images")
	if !regexp.MustCompile(`^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\nbusybox\s+latest\s+121212121212\s+2 minutes ago\s+1\.24MB\nmybox\s+v1\s+121212121212\s+2 minutes ago\s+1\.24MB\n$`).MatchString(r.stdout) {
		t.Fatalf("images:\n%s", r.stdout)
	}
	if r := runCLI(t, d.host, "", "images", "-q"); r.stdout != "121212121212\n" {
		t.Fatalf("images -q: %q", r.stdout)
	}
	if r := runCLI(t, d.host, "", "images", "-q", "nosuch"); r.stdout != "" {
		t.Fatalf("images -q nosuch: %q", r.stdout)
	}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	os.WriteFile(tarPath, []byte("not really a tar"), 0o644)
	if r := runCLI(t, d.host, "", "import", tarPath, "busybox:latest"); r.code != 0 || r.stdout != "sha256:"+strings.Repeat("12", 32)+"\n" {
		t.Fatalf("import: %+v", r)
	}
	if r := runCLI(t, d.host, "", "load", "-i", tarPath); r.code != 0 || r.stdout != "Loaded image: mybox:v1\n" {
		t.Fatalf("load: %+v", r)
	}
	if r := runCLI(t, d.host, "", "import", filepath.Join(t.TempDir(), "missing.tar"), "x:1"); r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("import of a missing file: %+v", r)
	}
}

// A daemon's answer that speaks of a failed connection of its own is the
// daemon's message, not "cannot connect to the daemon".
func TestIsDialErrorLeavesDaemonAnswers(t *testing.T) {
	for msg, want := range map[string]bool{
		"dial unix /run/shoal/shoal.sock: connect: no such file or directory":                              true,
		"dial unix /run/shoal/shoal.sock: connect: connection refused":                                     true,
		"Error response from daemon: cannot reach manager at 198.18.0.9:2377: connect: connection refused": false,
	} {
		if got := isDialError(errors.New(msg)); got != want {
			t.Errorf("isDialError(%q) = %v, want %v", msg, got, want)
		}
	}
}

// TestTopLevelNames: the table a command line is looked up in names each
// command by the name and aliases it has, and a command line builds only
// the command it runs (every one for help or an unknown word).
func TestTopLevelNames(t *testing.T) {
	for _, c := range topLevel {
		cmd := c.build()
		if want := append([]string{cmd.Name()}, cmd.Aliases...); !slices.Equal(c.names, want) {
			t.Errorf("topLevel has %v for the command named %v", c.names, want)
		}
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"run", "busybox"}, 1},
		{[]string{"-H", "unix:///x.sock", "remove", "c1"}, 1},
		{[]string{"--host=unix:///x.sock", "service", "ls"}, 1},
		{[]string{"--help"}, len(topLevel)},
		{[]string{"help", "run"}, len(topLevel)},
		{[]string{"nosuchcommand"}, len(topLevel)},
		{nil, len(topLevel)},
	} {
		if got := len(newRootCommand(tc.args).Commands()); got != tc.want {
			t.Errorf("%q builds %d commands, want %d", tc.args, got, tc.want)
		}
	}
}
