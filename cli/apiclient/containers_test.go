package apiclient

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
)

// seen is one request as the daemon received it.
type seen struct {
	method, path, query, contentType string
	header                           http.Header
	body                             string
}

// newTestDaemon serves handler on a unix socket and returns a client of
// it and the channel of the requests it received.
func newTestDaemon(t *testing.T, handler http.HandlerFunc) (*Client, <-chan seen) {
	t.Helper()
	reqs := make(chan seen, 16)
	t.Setenv("DOCKER_API_VERSION", "")
	c := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header, string(b)}
		handler(w, r)
	}))
	return c, reqs
}

func answer(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// expect checks the next request's method, path and query (encoded, keys
// sorted).
func expect(t *testing.T, reqs <-chan seen, method, path, query string) seen {
	t.Helper()
	select {
	case r := <-reqs:
		if r.method != method || r.path != path || r.query != query {
			t.Errorf("request %s %s?%s, want %s %s?%s", r.method, r.path, r.query, method, path, query)
		}
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("no request, want %s %s", method, path)
		return seen{}
	}
}

func TestContainerCreate(t *testing.T) {
	c, reqs := newTestDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		answer(w, 201, map[string]any{"Id": "abc", "Warnings": []string{"w1"}})
	})
	res, err := c.ContainerCreate(context.Background(), "web", container.CreateRequest{
		Config:     &container.Config{Image: "busybox", Cmd: []string{"true"}},
		HostConfig: &container.HostConfig{CapAdd: []string{"net_admin", "CAP_CHOWN", "NET_ADMIN"}, CapDrop: []string{"all"}},
	})
	if err != nil || res.ID != "abc" || len(res.Warnings) != 1 {
		t.Fatalf("create: %+v, %v", res, err)
	}
	r := expect(t, reqs, "POST", "/v1.56/containers/create", "name=web")
	var body struct {
		Image      string
		Cmd        []string
		HostConfig struct{ CapAdd, CapDrop []string }
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || r.contentType != "application/json" {
		t.Fatalf("body %q (%s): %v", r.body, r.contentType, err)
	}
	if body.Image != "busybox" || fmt.Sprint(body.Cmd) != "[true]" ||
		fmt.Sprint(body.HostConfig.CapAdd) != "[CAP_CHOWN CAP_NET_ADMIN]" || fmt.Sprint(body.HostConfig.CapDrop) != "[ALL]" {
		t.Errorf("create body %s", r.body)
	}
}

func TestContainerInspectAndErrors(t *testing.T) {
	doc := `{"Id":"abc","Name":"/web","State":{"Status":"exited","ExitCode":3},"Extra":1}` + "\n"
	c, reqs := newTestDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "nosuch") {
			answer(w, 404, map[string]string{"message": "No such container: nosuch"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, doc)
	})
	ctr, raw, err := c.ContainerInspect(context.Background(), " web ")
	if err != nil || ctr.ID != "abc" || ctr.State == nil || ctr.State.ExitCode != 3 || string(raw) != doc {
		t.Fatalf("inspect: %+v %q %v", ctr, raw, err)
	}
	expect(t, reqs, "GET", "/v1.56/containers/web/json", "")
	if _, _, err := c.ContainerInspectWithSize(context.Background(), "web", true); err != nil {
		t.Fatal(err)
	}
	expect(t, reqs, "GET", "/v1.56/containers/web/json", "size=1")

	_, _, err = c.ContainerInspect(context.Background(), "nosuch")
	expect(t, reqs, "GET", "/v1.56/containers/nosuch/json", "")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 404 || !IsNotFound(err) ||
		err.Error() != "Error response from daemon: No such container: nosuch" {
		t.Fatalf("404: %#v", err)
	}

	// An empty ID is refused before any request.
	if err := c.ContainerStart(context.Background(), "  "); err == nil || err.Error() != "invalid container name or ID: value is empty" {
		t.Fatalf("empty ID: %v", err)
	}
	select {
	case r := <-reqs:
		t.Fatalf("request for an empty ID: %+v", r)
	default:
	}
}

func TestContainerQueries(t *testing.T) {
	c, reqs := newTestDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1.56/containers/json":
			answer(w, 200, []map[string]any{{"Id": "a"}, {"Id": "b"}})
		case r.URL.Path == "/v1.56/commit":
			answer(w, 201, map[string]string{"Id": "sha256:1"})
		case strings.HasSuffix(r.URL.Path, "/top"):
			answer(w, 200, map[string]any{"Titles": []string{"PID"}, "Processes": [][]string{{"1"}}})
		default:
			w.WriteHeader(204)
		}
	})
	ctx := context.Background()
	list, err := c.ContainerList(ctx, ContainerListOptions{All: true, Limit: 2, Size: true, Filters: Filters{}.Add("status", "exited")})
	if err != nil || len(list) != 2 || list[1].ID != "b" {
		t.Fatalf("list: %+v %v", list, err)
	}
	expect(t, reqs, "GET", "/v1.56/containers/json", "all=1&filters=%7B%22status%22%3A%7B%22exited%22%3Atrue%7D%7D&limit=2&size=1")

	zero := 0
	check := func(err error, method, path, query string) {
		t.Helper()
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
		}
		expect(t, reqs, method, path, query)
	}
	check(c.ContainerStop(ctx, "web", ContainerStopOptions{Signal: "SIGINT", Timeout: &zero}), "POST", "/v1.56/containers/web/stop", "signal=SIGINT&t=0")
	check(c.ContainerRestart(ctx, "web", ContainerStopOptions{}), "POST", "/v1.56/containers/web/restart", "")
	check(c.ContainerKill(ctx, "web", "9"), "POST", "/v1.56/containers/web/kill", "signal=9")
	check(c.ContainerRemove(ctx, "web", ContainerRemoveOptions{Force: true, RemoveVolumes: true}), "DELETE", "/v1.56/containers/web", "force=1&v=1")
	check(c.ContainerResize(ctx, "web", 24, 80), "POST", "/v1.56/containers/web/resize", "h=24&w=80")
	check(c.ContainerRename(ctx, "web", " web2 "), "POST", "/v1.56/containers/web/rename", "name=web2")
	check(c.ExecResize(ctx, "e1", 10, 20), "POST", "/v1.56/exec/e1/resize", "h=10&w=20")

	top, err := c.ContainerTop(ctx, "web", []string{"-o", "pid"})
	if err != nil || top.Titles[0] != "PID" {
		t.Errorf("top: %+v %v", top, err)
	}
	expect(t, reqs, "GET", "/v1.56/containers/web/top", "ps_args=-o+pid")

	res, err := c.ContainerCommit(ctx, "web", ContainerCommitOptions{
		Repo: "docker.io/library/img", Tag: "v1", Author: "me", Changes: []string{"ENV A=1", "CMD x"}, NoPause: true,
	})
	if err != nil || res.ID != "sha256:1" {
		t.Errorf("commit: %+v %v", res, err)
	}
	r := expect(t, reqs, "POST", "/v1.56/commit", "author=me&changes=ENV+A%3D1&changes=CMD+x&container=web&pause=0&repo=docker.io%2Flibrary%2Fimg&tag=v1")
	if r.body != "" || r.contentType != "" {
		t.Errorf("commit without a config sent %q (%s)", r.body, r.contentType)
	}

	rc, err := c.ContainerLogs(ctx, "web", ContainerLogsOptions{ShowStdout: true, Since: "1136073600.5", Tail: "all", Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	expect(t, reqs, "GET", "/v1.56/containers/web/logs", "follow=1&since=1136073600.5&stdout=1")
	if _, err := c.ContainerLogs(ctx, "web", ContainerLogsOptions{Until: "yesterday"}); err == nil ||
		err.Error() != `invalid value for "until": failed to parse value as time or duration: "yesterday"` {
		t.Errorf("bad until: %v", err)
	}
}

func TestContainerWaitRegistersBeforeReturning(t *testing.T) {
	release := make(chan struct{})
	c, reqs := newTestDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("condition") == "removed" {
			answer(w, 400, map[string]string{"message": "invalid condition: removed"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, `{"StatusCode":7}`)
	})
	ctx := context.Background()
	result, errc := c.ContainerWait(ctx, "web", container.WaitConditionNextExit)
	// Returned on the headers: the body is still held back.
	expect(t, reqs, "POST", "/v1.56/containers/web/wait", "condition=next-exit")
	select {
	case r := <-result:
		t.Fatalf("result before the exit: %+v", r)
	case err := <-errc:
		t.Fatalf("error before the exit: %v", err)
	default:
	}
	close(release)
	select {
	case r := <-result:
		if r.StatusCode != 7 {
			t.Fatalf("status %d", r.StatusCode)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("no result")
	}

	// A refused condition is on the error channel when ContainerWait returns.
	_, errc = c.ContainerWait(ctx, "web", container.WaitConditionRemoved)
	if len(errc) != 1 {
		t.Fatal("refused wait: no error at once")
	}
	if err := <-errc; err.Error() != "Error response from daemon: invalid condition: removed" {
		t.Fatalf("refused wait: %v", err)
	}
}

// hijackAnswer takes the connection over as dockerd does and writes out.
func hijackAnswer(t *testing.T, w http.ResponseWriter, out string) {
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	fmt.Fprint(rw, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"+out)
	rw.Flush()
}

func TestAttachAndExec(t *testing.T) {
	c, reqs := newTestDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1.56/containers/web/attach":
			hijackAnswer(t, w, "attached")
		case "/v1.56/containers/web/exec":
			answer(w, 201, map[string]string{"Id": "e1"})
		case "/v1.56/exec/e1/start":
			hijackAnswer(t, w, "exec'd")
		case "/v1.56/exec/e1/json":
			answer(w, 200, map[string]any{"ID": "e1", "Running": false, "ExitCode": 4})
		}
	})
	ctx := context.Background()
	read := func(h *Hijacked) string {
		t.Helper()
		defer h.Close()
		b, err := io.ReadAll(h.Reader)
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	h, err := c.ContainerAttach(ctx, "web", ContainerAttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true, DetachKeys: "ctrl-x"})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(h); got != "attached" {
		t.Errorf("attach read %q", got)
	}
	r := expect(t, reqs, "POST", "/v1.56/containers/web/attach", "detachKeys=ctrl-x&stderr=1&stdin=1&stdout=1&stream=1")
	if r.header.Get("Upgrade") != "tcp" || r.header.Get("Connection") != "Upgrade" {
		t.Errorf("attach headers %v", r.header)
	}

	size := [2]uint{24, 80}
	created, err := c.ExecCreate(ctx, "web", container.ExecCreateRequest{Tty: true, ConsoleSize: &size, AttachStdout: true, Cmd: []string{"sh"}})
	if err != nil || created.ID != "e1" {
		t.Fatalf("exec create: %+v %v", created, err)
	}
	r = expect(t, reqs, "POST", "/v1.56/containers/web/exec", "")
	var body map[string]any
	json.Unmarshal([]byte(r.body), &body)
	if fmt.Sprint(body["ConsoleSize"], body["Tty"], body["Cmd"]) != "[24 80] true [sh]" {
		t.Errorf("exec create body %s", r.body)
	}

	h, err = c.ExecAttach(ctx, "e1", container.ExecStartRequest{Detach: true, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(h); got != "exec'd" {
		t.Errorf("exec read %q", got)
	}
	r = expect(t, reqs, "POST", "/v1.56/exec/e1/start", "")
	if r.body != `{"Detach":false,"Tty":true}` || r.contentType != "application/json" {
		t.Errorf("exec start body %q (%s)", r.body, r.contentType)
	}

	ins, err := c.ExecInspect(ctx, "e1")
	if err != nil || ins.Running || ins.ExitCode == nil || *ins.ExitCode != 4 {
		t.Fatalf("exec inspect: %+v %v", ins, err)
	}
	expect(t, reqs, "GET", "/v1.56/exec/e1/json", "")
}

func TestArchive(t *testing.T) {
	stat := base64.StdEncoding.EncodeToString([]byte(`{"name":"etc","size":4096,"mode":2147484141}`))
	c, reqs := newTestDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Query().Get("path") == "/missing":
			w.WriteHeader(404)
		case r.Method == http.MethodPut:
			w.WriteHeader(200)
		default:
			w.Header().Set("X-Docker-Container-Path-Stat", stat)
			w.Header().Set("Content-Type", "application/x-tar")
			io.WriteString(w, "TAR")
		}
	})
	ctx := context.Background()
	st, err := c.ContainerStatPath(ctx, "web", "/etc")
	if err != nil || st.Name != "etc" || !st.Mode.IsDir() {
		t.Fatalf("stat: %+v %v", st, err)
	}
	expect(t, reqs, "HEAD", "/v1.56/containers/web/archive", "path=%2Fetc")
	if _, err := c.ContainerStatPath(ctx, "web", "/missing"); !IsNotFound(err) {
		t.Fatalf("stat of a missing path: %v", err)
	}
	expect(t, reqs, "HEAD", "/v1.56/containers/web/archive", "path=%2Fmissing")

	rc, st, err := c.CopyFromContainer(ctx, "web", "/etc")
	if err != nil || st.Size != 4096 {
		t.Fatalf("copy from: %+v %v", st, err)
	}
	if b, _ := io.ReadAll(rc); string(b) != "TAR" {
		t.Errorf("copy from read %q", b)
	}
	rc.Close()
	expect(t, reqs, "GET", "/v1.56/containers/web/archive", "path=%2Fetc")

	if err := c.CopyToContainer(ctx, "web", CopyToContainerOptions{DestinationPath: "/tmp", Content: strings.NewReader("TAR2"), CopyUIDGID: true}); err != nil {
		t.Fatal(err)
	}
	r := expect(t, reqs, "PUT", "/v1.56/containers/web/archive", "copyUIDGID=true&noOverwriteDirNonDir=true&path=%2Ftmp")
	if r.body != "TAR2" || r.contentType != "" {
		t.Errorf("copy to sent %q (%s)", r.body, r.contentType)
	}

	rc, err = c.ContainerExport(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	expect(t, reqs, "GET", "/v1.56/containers/web/export", "")
}

func TestEvents(t *testing.T) {
	c, reqs := newTestDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		bw := bufio.NewWriter(w)
		for _, a := range []string{"start", "die"} {
			json.NewEncoder(bw).Encode(events.Message{Type: "container", Action: events.Action(a), Actor: events.Actor{ID: "c1"}})
		}
		bw.Flush()
	})
	msgs, errc := c.Events(context.Background(), EventsOptions{Since: "1136073600", Filters: Filters{}.Add("type", "container")})
	r := expect(t, reqs, "GET", "/v1.56/events", "filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D&since=1136073600")
	if got := strings.Join(r.header.Values("Accept"), ", "); got != "application/jsonl, application/x-ndjson;q=0.9, application/json-seq;q=0.5" {
		t.Errorf("Accept: %s", got)
	}
	var got []string
	for len(got) < 3 {
		select {
		case m := <-msgs:
			got = append(got, string(m.Action)+" "+m.Actor.ID)
		case err := <-errc:
			if !errors.Is(err, io.EOF) {
				t.Fatalf("events ended with %v", err)
			}
			got = append(got, "EOF")
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
	}
	if strings.Join(got, ", ") != "start c1, die c1, EOF" {
		t.Fatalf("events %v", got)
	}
}

func TestEventsCancel(t *testing.T) {
	c, _ := newTestDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	_, errc := c.Events(ctx, EventsOptions{})
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled events: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events did not end on cancel")
	}
}

func TestRSFilter(t *testing.T) {
	in := "\x1e{\"Action\":\"start\"}\n\x1e\x1e{\"Action\":\"die\"}\n"
	dec := json.NewDecoder(&rsFilter{r: strings.NewReader(in)})
	var got []string
	for {
		var m events.Message
		if err := dec.Decode(&m); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		got = append(got, string(m.Action))
	}
	if fmt.Sprint(got) != "[start die]" {
		t.Fatalf("decoded %v", got)
	}
}

func TestTimestampParam(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, c := range []struct{ in, want, err string }{
		{"42m", "1714976769", ""},
		{"0", "0", ""},
		{"1136073600", "1136073600", ""},
		{"1136073600.000000001", "1136073600.000000001", ""},
		{"2006-01-02T15:04:05.999999999+07:00", "1136189045.999999999", ""},
		{"2006-01-02T15:04:05.999999999", "1136214245.999999999", ""},
		{"2006-01-02T15:04:05Z", "1136214245.000000000", ""},
		{"2006-01-02T15:04-00:00", "1136214240.000000000", ""},
		{"2006-01-02T15", "1136214000.000000000", ""},
		{"2006-01-02-00:01", "1136160060.000000000", ""},
		{"2006-01-02", "1136160000.000000000", ""},
		{"2006-01-02T15:0Z", "", `parsing time "2006-01-02T15:0Z" as "2006-01-02T15:04Z07:00": cannot parse "0Z" as "04"`},
		{"abc", "", `failed to parse value as time or duration: "abc"`},
	} {
		got, err := timestampParam(c.in, now)
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && err.Error() != c.err) {
			t.Errorf("timestampParam(%q) = %q, %v; want %q, %s", c.in, got, err, c.want, c.err)
		}
	}
}
