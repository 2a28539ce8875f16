package apiclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/volume"
)

// testDaemon serves handler on a unix socket and returns a client for it.
func testDaemon(t *testing.T, handler http.HandlerFunc) *Client { return serveUnix(t, handler) }

// serveUnix serves h on a unix socket of the test's own and returns a
// client for it; the test daemons of this package's tests wrap it.
func serveUnix(t *testing.T, h http.Handler) *Client {
	t.Helper()
	dir, err := os.MkdirTemp("", "apiclient")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := New("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewRefusesBadHosts(t *testing.T) {
	for _, h := range []string{"/run/x.sock", "unix://", "ssh://host", "tcp://nohostport", "http://x:1"} {
		if _, err := New(h); err == nil {
			t.Errorf("New(%q) accepted", h)
		}
	}
	for _, h := range []string{"unix:///run/shoal/shoal.sock", "tcp://127.0.0.1:2375"} {
		if _, err := New(h); err != nil {
			t.Errorf("New(%q): %v", h, err)
		}
	}
}

func TestRequestShape(t *testing.T) {
	var got *http.Request
	var body []byte
	c := testDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"Name":"v1","Driver":"local"}`)
	})
	v, err := c.VolumeCreate(context.Background(), volume.CreateRequest{Name: "v1", Labels: map[string]string{"a": "b"}})
	if err != nil || v.Name != "v1" || v.Driver != "local" {
		t.Fatalf("VolumeCreate: %+v, %v", v, err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/v"+APIVersion+"/volumes/create" || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s (%s)", got.Method, got.URL.Path, got.Header.Get("Content-Type"))
	}
	var sent volume.CreateRequest
	if err := json.Unmarshal(body, &sent); err != nil || sent.Name != "v1" || sent.Labels["a"] != "b" {
		t.Errorf("body %s: %v", body, err)
	}

	if err := c.VolumeRemove(context.Background(), "v 1", true); err != nil {
		t.Fatal(err)
	}
	if got.Method != http.MethodDelete || got.URL.EscapedPath() != "/v"+APIVersion+"/volumes/v%201" || got.URL.Query().Get("force") != "1" {
		t.Errorf("remove: %s %s", got.Method, got.URL)
	}
}

func TestFiltersQuery(t *testing.T) {
	var q string
	c := testDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		q = r.URL.Query().Get("filters")
		io.WriteString(w, `{"VolumesDeleted":["a"],"SpaceReclaimed":3}`)
	})
	f := Filters{}.Add("label", "x=1", "y").Add("label", "y")
	r, err := c.VolumePrune(context.Background(), true, f)
	if err != nil || len(r.VolumesDeleted) != 1 || r.SpaceReclaimed != 3 {
		t.Fatalf("VolumePrune: %+v, %v", r, err)
	}
	var m map[string]map[string]bool
	if err := json.Unmarshal([]byte(q), &m); err != nil {
		t.Fatalf("filters %q: %v", q, err)
	}
	if len(m) != 2 || !m["label"]["x=1"] || !m["label"]["y"] || len(m["label"]) != 2 || !m["all"]["true"] {
		t.Errorf("filters %q", q)
	}
	if len(f["all"]) != 0 {
		t.Errorf("VolumePrune changed the caller's filters: %v", f)
	}
	if _, err := c.VolumePrune(context.Background(), true, Filters{}.Add("all", "1")); err == nil {
		t.Error("VolumePrune took both all and an all filter")
	}
	// No filters, no parameter.
	if _, err := c.ContainerPrune(context.Background(), nil); err != nil || q != "" {
		t.Errorf("no filters: %q, %v", q, err)
	}
}

func TestErrorAnswers(t *testing.T) {
	c := testDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v" + APIVersion + "/volumes/json404":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"message":"get json404: no such volume"}`)
		case "/v" + APIVersion + "/volumes/text409":
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, "volume is in use\n")
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	ctx := context.Background()
	_, err := c.VolumeInspect(ctx, "json404")
	if err == nil || err.Error() != "Error response from daemon: get json404: no such volume" || !IsNotFound(err) {
		t.Errorf("JSON 404: %v (not found %v)", err, IsNotFound(err))
	}
	err = c.VolumeRemove(ctx, "text409", false)
	if err == nil || err.Error() != "Error response from daemon: volume is in use" || !(statusOf(err) == http.StatusConflict) || IsNotFound(err) {
		t.Errorf("text 409: %v", err)
	}
	_, err = c.VolumeInspect(ctx, "empty500")
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("empty 500: %v", err)
	}
}

func TestConnectionFailed(t *testing.T) {
	c, err := New("unix://" + filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Info(context.Background())
	if !IsConnectionFailed(err) {
		t.Errorf("no daemon: %v is not a connection failure", err)
	}
	_, err = c.hijack(context.Background(), "/containers/x/attach", nil, nil)
	if !IsConnectionFailed(err) {
		t.Errorf("no daemon, hijack: %v is not a connection failure", err)
	}
}

func TestAPIVersionFromEnv(t *testing.T) {
	t.Setenv("DOCKER_API_VERSION", "1.41")
	var path string
	c := testDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		io.WriteString(w, `{}`)
	})
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
	if path != "/v1.41/info" || c.Version() != "1.41" {
		t.Errorf("DOCKER_API_VERSION=1.41: path %s, version %s", path, c.Version())
	}
}

func TestHijack(t *testing.T) {
	c := testDaemon(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "nosuch") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"message":"No such container: nosuch"}`)
			return
		}
		if r.Header.Get("Upgrade") != "tcp" || r.Header.Get("Connection") != "Upgrade" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		// The answer and the first output in one write: the client must
		// not lose what came with the headers.
		io.WriteString(conn, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nhello\n")
		line, _ := brw.ReadString('\n')
		io.WriteString(conn, "echo "+line)
	})
	h, err := c.hijack(context.Background(), "/containers/x/attach", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r := bufio.NewReader(h.Reader)
	if l, err := r.ReadString('\n'); l != "hello\n" || err != nil {
		t.Fatalf("first output %q, %v", l, err)
	}
	io.WriteString(h.Conn, "ping\n")
	if l, err := r.ReadString('\n'); l != "echo ping\n" || err != nil {
		t.Fatalf("echo %q, %v", l, err)
	}
	if err := h.CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}

	_, err = c.hijack(context.Background(), "/containers/nosuch/attach", nil, nil)
	var e *Error
	if !errors.As(err, &e) || e.Message != "No such container: nosuch" || !IsNotFound(err) {
		t.Errorf("hijack of a missing container: %v", err)
	}
}
