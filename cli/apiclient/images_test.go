package apiclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/api/types/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// seenRequest is what the test daemon received.
type seenRequest struct {
	method, uri string // uri: the escaped path and query, as sent
	header      http.Header
	body        string
}

// imageDaemon answers every request with the canned status and body and
// records the request.
type imageDaemon struct {
	mu     sync.Mutex
	seen   []seenRequest
	status int
	ctype  string
	answer string
}

func (d *imageDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	d.mu.Lock()
	d.seen = append(d.seen, seenRequest{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: string(b)})
	status, ctype, answer := d.status, d.ctype, d.answer
	d.mu.Unlock()
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	io.WriteString(w, answer)
}

func (d *imageDaemon) reply(status int, ctype, answer string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen, d.status, d.ctype, d.answer = nil, status, ctype, answer
}

func (d *imageDaemon) only(t *testing.T) seenRequest {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.seen) != 1 {
		t.Fatalf("%d requests, want 1: %+v", len(d.seen), d.seen)
	}
	return d.seen[0]
}

func startImageDaemon(t *testing.T) (*Client, *imageDaemon) {
	t.Helper()
	t.Setenv("DOCKER_API_VERSION", "")
	d := &imageDaemon{status: 200, ctype: "application/json"}
	return serveUnix(t, d), d
}

func TestImageRequests(t *testing.T) {
	c, d := startImageDaemon(t)
	ctx := context.Background()
	const jsonType = "application/json"
	type want struct {
		method, uri string
		header      map[string]string // "" : absent
		body        string
	}
	check := func(t *testing.T, w want) {
		t.Helper()
		got := d.only(t)
		if got.method != w.method || got.uri != w.uri {
			t.Errorf("request %s %s, want %s %s", got.method, got.uri, w.method, w.uri)
		}
		for k, v := range w.header {
			if g := got.header.Get(k); g != v {
				t.Errorf("header %s: %q, want %q", k, g, v)
			}
		}
		if got.body != w.body {
			t.Errorf("body %q, want %q", got.body, w.body)
		}
	}
	readAll := func(t *testing.T, rc io.ReadCloser, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("list", func(t *testing.T) {
		d.reply(200, jsonType, `[{"Id":"sha256:12","RepoTags":["busybox:latest"]}]`)
		items, err := c.ImageList(ctx, true, Filters{}.Add("dangling", "false"))
		if err != nil || len(items) != 1 || items[0].ID != "sha256:12" || items[0].RepoTags[0] != "busybox:latest" {
			t.Fatalf("ImageList: %+v %v", items, err)
		}
		check(t, want{method: "GET", uri: "/v1.56/images/json?all=1&filters=%7B%22dangling%22%3A%7B%22false%22%3Atrue%7D%7D"})
	})

	t.Run("inspect", func(t *testing.T) {
		doc := `{"Id":"sha256:34","RepoTags":["localhost:5000/a/b:v1"],"Extra":{"kept":true}}`
		d.reply(200, jsonType, doc)
		img, raw, err := c.ImageInspect(ctx, "localhost:5000/a/b:v1")
		if err != nil || img.ID != "sha256:34" || string(raw) != doc {
			t.Fatalf("ImageInspect: %+v %q %v", img, raw, err)
		}
		check(t, want{method: "GET", uri: "/v1.56/images/localhost:5000/a/b:v1/json"})
	})

	t.Run("inspect not found", func(t *testing.T) {
		d.reply(404, jsonType, `{"message":"No such image: nosuch:latest"}`)
		_, _, err := c.ImageInspect(ctx, "nosuch:latest")
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != 404 || !IsNotFound(err) ||
			err.Error() != "Error response from daemon: No such image: nosuch:latest" {
			t.Fatalf("ImageInspect of a missing image: %#v", err)
		}
		check(t, want{method: "GET", uri: "/v1.56/images/nosuch:latest/json"})
	})

	t.Run("inspect of no name", func(t *testing.T) {
		d.reply(200, jsonType, `{}`)
		if _, _, err := c.ImageInspect(ctx, ""); err == nil || err.Error() != "Error: No such image: " {
			t.Fatalf("ImageInspect(\"\"): %v", err)
		}
		if len(d.seen) != 0 {
			t.Fatalf("a request was sent: %+v", d.seen)
		}
	})

	t.Run("history", func(t *testing.T) {
		d.reply(200, jsonType, `[{"Id":"sha256:56","CreatedBy":"/bin/sh -c true","Size":7}]`)
		items, err := c.ImageHistory(ctx, "busybox")
		if err != nil || len(items) != 1 || items[0].CreatedBy != "/bin/sh -c true" || items[0].Size != 7 {
			t.Fatalf("ImageHistory: %+v %v", items, err)
		}
		check(t, want{method: "GET", uri: "/v1.56/images/busybox/history"})
	})

	t.Run("pull", func(t *testing.T) {
		d.reply(200, jsonType, `{"status":"Pulling from library/busybox"}`+"\n")
		rc, err := c.ImagePull(ctx, "docker.io/library/busybox", ImagePullOptions{
			Tag: "latest", RegistryAuth: "e30=", Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}})
		if s := readAll(t, rc, err); !strings.Contains(s, "Pulling from") {
			t.Fatalf("pull stream: %q", s)
		}
		check(t, want{method: "POST", uri: "/v1.56/images/create?fromImage=docker.io%2Flibrary%2Fbusybox&platform=linux%2Farm64%2Fv8&tag=latest",
			header: map[string]string{registry.AuthHeader: "e30=", "Content-Type": ""}})
	})

	t.Run("pull all tags", func(t *testing.T) {
		d.reply(200, jsonType, "")
		rc, err := c.ImagePull(ctx, "example.com/app", ImagePullOptions{})
		readAll(t, rc, err)
		check(t, want{method: "POST", uri: "/v1.56/images/create?fromImage=example.com%2Fapp", header: map[string]string{registry.AuthHeader: ""}})
	})

	t.Run("push", func(t *testing.T) {
		d.reply(200, jsonType, `{"status":"Pushed"}`)
		rc, err := c.ImagePush(ctx, "localhost:5000/a/b", "v1", "")
		readAll(t, rc, err)
		check(t, want{method: "POST", uri: "/v1.56/images/localhost:5000/a/b/push?tag=v1", header: map[string]string{registry.AuthHeader: ""}})
	})

	t.Run("import", func(t *testing.T) {
		d.reply(200, jsonType, `{"status":"sha256:78"}`)
		rc, err := c.ImageImport(ctx, strings.NewReader("TAR"), "busybox:imported", "from a tar", []string{"ENV A=1", "CMD [\"sh\"]"})
		readAll(t, rc, err)
		check(t, want{method: "POST", uri: "/v1.56/images/create?changes=ENV+A%3D1&changes=CMD+%5B%22sh%22%5D&fromSrc=-&message=from+a+tar&repo=busybox%3Aimported",
			body: "TAR", header: map[string]string{"Content-Type": ""}})
	})

	t.Run("load", func(t *testing.T) {
		d.reply(200, jsonType, `{"stream":"Loaded image: mybox:v1\n"}`)
		rc, err := c.ImageLoad(ctx, strings.NewReader("ARCHIVE"), true)
		readAll(t, rc, err)
		check(t, want{method: "POST", uri: "/v1.56/images/load?quiet=1", body: "ARCHIVE", header: map[string]string{"Content-Type": "application/x-tar"}})
	})

	t.Run("save", func(t *testing.T) {
		d.reply(200, "application/x-tar", "ARCHIVE")
		rc, err := c.ImageSave(ctx, []string{"busybox", "mybox:v1"})
		if s := readAll(t, rc, err); s != "ARCHIVE" {
			t.Fatalf("save: %q", s)
		}
		check(t, want{method: "GET", uri: "/v1.56/images/get?names=busybox&names=mybox%3Av1"})
	})

	t.Run("remove", func(t *testing.T) {
		d.reply(200, jsonType, `[{"Untagged":"busybox:latest"},{"Deleted":"sha256:9a"}]`)
		items, err := c.ImageRemove(ctx, "busybox", true, true)
		if err != nil || len(items) != 2 || items[0].Untagged != "busybox:latest" || items[1].Deleted != "sha256:9a" {
			t.Fatalf("ImageRemove: %+v %v", items, err)
		}
		check(t, want{method: "DELETE", uri: "/v1.56/images/busybox?force=1&noprune=1"})
	})

	t.Run("tag", func(t *testing.T) {
		d.reply(201, jsonType, "")
		if err := c.ImageTag(ctx, "sha256:"+strings.Repeat("ab", 32), "docker.io/library/mybox", "v2"); err != nil {
			t.Fatal(err)
		}
		check(t, want{method: "POST", uri: "/v1.56/images/sha256:" + strings.Repeat("ab", 32) + "/tag?repo=docker.io%2Flibrary%2Fmybox&tag=v2"})
	})

	t.Run("build", func(t *testing.T) {
		d.reply(200, jsonType, `{"stream":"Successfully built 1234\n"}`)
		one := "1"
		rc, err := c.ImageBuild(ctx, strings.NewReader("CONTEXT"), ImageBuildOptions{
			Tags: []string{"a:1", "b"}, SuppressOutput: true, NoCache: true, Remove: false, ForceRemove: true, PullParent: true,
			NetworkMode: "none", Dockerfile: "sub/Dockerfile", Target: "final",
			BuildArgs: map[string]*string{"ONE": &one, "UNSET": nil}, Labels: map[string]string{"k": "v"}})
		readAll(t, rc, err)
		q := "buildargs=%7B%22ONE%22%3A%221%22%2C%22UNSET%22%3Anull%7D&dockerfile=sub%2FDockerfile&forcerm=1&labels=%7B%22k%22%3A%22v%22%7D" +
			"&networkmode=none&nocache=1&pull=1&q=1&rm=0&t=a%3A1&t=b&target=final"
		check(t, want{method: "POST", uri: "/v1.56/build?" + q, body: "CONTEXT",
			header: map[string]string{"Content-Type": "application/x-tar", "X-Registry-Config": "bnVsbA=="}})
	})

	t.Run("build defaults", func(t *testing.T) {
		d.reply(200, jsonType, "")
		rc, err := c.ImageBuild(ctx, strings.NewReader(""), ImageBuildOptions{Remove: true, NetworkMode: "default",
			BuildArgs: map[string]*string{}, Labels: map[string]string{}})
		readAll(t, rc, err)
		check(t, want{method: "POST", uri: "/v1.56/build"})
	})

	t.Run("login", func(t *testing.T) {
		d.reply(200, jsonType, `{"Status":"Login Succeeded"}`)
		res, err := c.RegistryLogin(ctx, registry.AuthConfig{Username: "u", Password: "p", ServerAddress: "localhost:5000"})
		if err != nil || res.Status != "Login Succeeded" {
			t.Fatalf("RegistryLogin: %+v %v", res, err)
		}
		check(t, want{method: "POST", uri: "/v1.56/auth", body: `{"username":"u","password":"p","serveraddress":"localhost:5000"}`,
			header: map[string]string{"Content-Type": "application/json"}})
	})

	t.Run("login refused", func(t *testing.T) {
		d.reply(401, jsonType, `{"message":"login attempt to http://localhost:5000/v2/ failed with status: 401 Unauthorized"}`)
		_, err := c.RegistryLogin(ctx, registry.AuthConfig{Username: "u", Password: "bad", ServerAddress: "localhost:5000"})
		if err == nil || err.Error() != "Error response from daemon: login attempt to http://localhost:5000/v2/ failed with status: 401 Unauthorized" {
			t.Fatalf("RegistryLogin refused: %v", err)
		}
	})

	t.Run("distribution", func(t *testing.T) {
		dgst := "sha256:" + strings.Repeat("cd", 32)
		d.reply(200, jsonType, `{"Descriptor":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"`+dgst+`","size":9},"Platforms":[{"architecture":"amd64","os":"linux"}]}`)
		res, err := c.DistributionInspect(ctx, "localhost:5000/app:v1", "e30=")
		if err != nil || res.Descriptor.Digest.String() != dgst || len(res.Platforms) != 1 {
			t.Fatalf("DistributionInspect: %+v %v", res, err)
		}
		check(t, want{method: "GET", uri: "/v1.56/distribution/localhost:5000/app:v1/json", header: map[string]string{registry.AuthHeader: "e30="}})
	})
}

// A stream's request that the daemon refuses is *Error, not a body to read.
func TestImagePullRefused(t *testing.T) {
	c, d := startImageDaemon(t)
	d.reply(404, "application/json", `{"message":"pull access denied for nosuch, repository does not exist"}`)
	rc, err := c.ImagePull(context.Background(), "docker.io/library/nosuch", ImagePullOptions{Tag: "latest"})
	if err == nil {
		rc.Close()
		t.Fatal("ImagePull of a refused pull: no error")
	}
	if !IsNotFound(err) || err.Error() != "Error response from daemon: pull access denied for nosuch, repository does not exist" {
		t.Fatalf("ImagePull refused: %v", err)
	}
}
