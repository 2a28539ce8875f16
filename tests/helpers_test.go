package tests

import (
	"archive/tar"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/tests/harness"
)

// needSkopeo fails t when skopeo is missing (make deps installs it): a
// missing tool must not turn the test's checks into a skip.
func needSkopeo(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Fatal("skopeo is missing (make deps installs it: apt-get install -y skopeo)")
	}
}

// waitFor polls cond until it holds or 20 seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// runHost runs a command on the host and returns its combined output.
func runHost(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// httpGet fetches url from the host and returns the body, or "" on any error.
func httpGet(url string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// writeTar writes a tar with one regular file.
func writeTar(t *testing.T, path, name, content string) {
	t.Helper()
	writeTarEntries(t, path, content, &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg})
}

// writeTarEntries writes a tar of the given headers; each regular file
// holds content.
func writeTarEntries(t *testing.T, path, content string, hdrs ...*tar.Header) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, h := range hdrs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(content))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, content)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// apiPost sends a raw request body to the daemon's REST API.
func apiPost(t *testing.T, socket, path, body string) (int, string) {
	t.Helper()
	return apiDo(t, socket, http.MethodPost, path, body)
}

// apiDo sends one request to the daemon's REST API.
func apiDo(t *testing.T, socket, method, path, body string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(method, "http://shoal"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// assertNoTrace fails if anything of a removed container remains on the machine.
func assertNoTrace(t *testing.T, d *harness.Daemon, id string) {
	t.Helper()
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), id) {
		t.Errorf("a mount of container %s remains", id[:12])
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/" + d.CgroupParent + "/*" + id + "*")
	if len(cgs) > 0 {
		t.Errorf("cgroups of container %s remain: %v", id[:12], cgs)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), id) {
			t.Errorf("process %s of container %s remains: %q", p, id[:12], b)
		}
	}
	// A removal's files go to a trash and are deleted right after it is
	// answered: give that a moment.
	var files []string
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		files = nil
		for _, dir := range []string{d.Root, d.ExecRoot} {
			filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
				if err == nil && strings.Contains(filepath.Base(path), id) {
					files = append(files, path)
				}
				return nil
			})
		}
		if len(files) == 0 || time.Now().After(end) {
			break
		}
	}
	for _, f := range files {
		t.Errorf("file of container %s remains: %s", id[:12], f)
	}
	if out, _ := runHost("ip", "-o", "link"); strings.Contains(out, "veth"+id[:7]) {
		t.Errorf("veth of container %s remains", id[:12])
	}
}
