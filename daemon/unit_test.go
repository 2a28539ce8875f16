package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/shim"
	"github.com/shoal-project/shoal/overlaynet/bridge"
	"github.com/shoal-project/shoal/worker"
)

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: x", containers.ErrNotFound), 404},
		{fmt.Errorf("%w: x", images.ErrNotFound), 404},
		{fmt.Errorf("%w: x", containers.ErrConflict), 409},
		{fmt.Errorf("%w: x", images.ErrConflict), 409},
		{fmt.Errorf("%w: x", containers.ErrInvalidArgument), 400},
		{fmt.Errorf("%w: x", images.ErrInvalidReference), 400},
		{fmt.Errorf("%w: x", images.ErrInvalid), 400},
		{fmt.Errorf("start: %w", &containers.ExecError{Code: 127, Msg: "executable file not found"}), 400},
		{containers.ErrNotModified, 304},
		{badRequest("nope"), 400},
		{withStatus(500, fmt.Errorf("%w: port", bridge.ErrConflict)), 500},
		{withStatus(500, fmt.Errorf("%w: x", containers.ErrConflict)), 500},
		{api.Wrap(api.ErrInvalidArgument, errors.New("bad spec")), 400},
		{api.Wrap(api.ErrNotFound, errors.New("service x not found")), 404},
		{api.Wrap(api.ErrFailedPrecondition, errors.New("last manager")), 400},
		{api.FromGRPC(api.ToGRPC(api.Wrap(api.ErrUnavailable, errors.New("no leader")))), 503},
		{errors.New("disk on fire"), 500},
		{context.Canceled, 500},
	} {
		if got := statusOf(tc.err); got != tc.want {
			t.Errorf("statusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	writeError(rec, fmt.Errorf("%w: Conflict. The container name \"/x\" is already in use\nby container \"abc\".", containers.ErrConflict))
	if rec.Code != 409 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var body errorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if want := `Conflict. The container name "/x" is already in use by container "abc".`; body.Message != want {
		t.Errorf("message %q, want %q", body.Message, want)
	}
	rec = httptest.NewRecorder()
	writeError(rec, containers.ErrNotModified)
	if rec.Code != 304 || rec.Body.Len() != 0 {
		t.Errorf("not modified: %d %q", rec.Code, rec.Body)
	}
}

func TestDecodeJSON(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty", "", "empty request body"},
		{"syntax", `{"Image": "busybox",`, "invalid JSON: unexpected end of JSON input"},
		{"bad token", `{"Image": busybox}`, "invalid character 'b'"},
		{"type", `{"Image": 42}`, "field Image: cannot use a JSON number as string"},
		{"nested type", `{"Image": "x", "HostConfig": {"Memory": "lots"}}`, "field HostConfig.Memory"},
		{"trailing", `{"Image": "x"} {"Image": "y"}`, "unexpected data after the object"},
		{"huge", `{"Image": "` + strings.Repeat("a", maxBody+10) + `"}`, "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/containers/create", strings.NewReader(tc.body))
			if tc.body == "" {
				r.Body = http.NoBody
			}
			var req container.CreateRequest
			err := decodeJSON(r, &req)
			if err == nil {
				t.Fatal("no error")
			}
			if statusOf(err) != 400 || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %d %q, want 400 containing %q", statusOf(err), err, tc.want)
			}
		})
	}
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"Image":"busybox","Cmd":["true"]}`))
	var req container.CreateRequest
	if err := decodeJSON(r, &req); err != nil || req.Config == nil || req.Image != "busybox" {
		t.Fatalf("good body: %v %+v", err, req)
	}
}

// bare is a daemon without an engine: enough for the routes that need none,
// and for the panic a nil service causes.
func bare(t *testing.T) http.Handler {
	return newDaemon(t.Context(), Config{NodeName: "n1"}, nil, nil, nil).handler()
}

func serve(h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec
}

func TestRoutingAndVersions(t *testing.T) {
	h := bare(t)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/_ping", 200, "OK"},
		{"HEAD", "/_ping", 200, ""},
		{"GET", "/v1.41/_ping", 200, "OK"},
		{"GET", "/v1.56/_ping", 200, "OK"},
		{"GET", "/v1.57/_ping", 400, "client version 1.57 is too new. Maximum supported API version is 1.56"},
		{"GET", "/v2.0/version", 400, "too new"},
		{"GET", "/v1.24/version", 400, "client version 1.24 is too old. Minimum supported API version is 1.40"},
		{"GET", "/v1.9/version", 400, "too old"},
		{"GET", "/nothing/here", 404, `{"message":"page not found"}`},
		{"GET", "/v1.44/images/busybox/frobnicate", 404, "page not found"},
		{"POST", "/containers/create", 400, "empty request body"},
		{"POST", "/containers/create", 400, "empty request body"},
		{"POST", "/v1.44/containers/x/kill?signal=SIGNOPE", 400, "invalid signal: SIGNOPE"},
		{"POST", "/containers/x/wait?condition=someday", 400, "invalid condition"},
		{"GET", "/containers/x/logs", 400, "you must choose at least one stream"},
		{"POST", "/containers/x/exec", 400, "empty request body"},
		{"POST", "/containers/x/exec", 400, "empty request body"},
		{"GET", "/containers/json?filters=nope", 400, "invalid filters"},
		{"GET", "/containers/json?filters=%7B%22colour%22%3A%7B%22red%22%3Atrue%7D%7D", 400, "invalid filter 'colour'"},
		{"POST", "/images/create?fromSrc=http://example.com/x.tar", 400, "not supported"},
		{"POST", "/images/UPPER/push", 400, "invalid reference format"},
		{"POST", "/commit", 400, "commit needs ?container=ID"},
		{"GET", "/debug/pprof/", 200, "goroutine"},
		{"GET", "/v1.44/debug/pprof/goroutine?debug=1", 200, "goroutine profile: total"},
		{"GET", "/debug/pprof/cmdline", 200, ""},
	} {
		rec := serve(h, tc.method, tc.path, "")
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, rec.Code, rec.Body, tc.status, tc.body)
		}
		if rec.Header().Get("Api-Version") != APIVersion {
			t.Errorf("%s %s: Api-Version %q", tc.method, tc.path, rec.Header().Get("Api-Version"))
		}
	}
}

func TestPanicIsA500(t *testing.T) {
	// The bare daemon has no container service: listing dereferences nil.
	rec := serve(bare(t), "GET", "/v1.44/containers/json", "")
	if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"message":"internal server error`) {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
}

func TestVersionBody(t *testing.T) {
	rec := serve(bare(t), "GET", "/version", "")
	var v struct{ ApiVersion, MinAPIVersion, Os, Version string }
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || rec.Code != 200 {
		t.Fatalf("%d %v %q", rec.Code, err, rec.Body)
	}
	if v.ApiVersion != APIVersion || v.MinAPIVersion != MinAPIVersion || v.Os != "linux" || v.Version != Version {
		t.Errorf("%+v", v)
	}
	// The one component, the engine, as dockerd lists its own first.
	var c struct {
		Components []struct {
			Name, Version string
			Details       map[string]string
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil || len(c.Components) != 1 || c.Components[0].Name != "Engine" ||
		c.Components[0].Version != Version || c.Components[0].Details["ApiVersion"] != APIVersion {
		t.Errorf("components: %+v %v", c, err)
	}
}

func TestCreateConfigRefusals(t *testing.T) {
	d := newDaemon(t.Context(), Config{}, nil, nil, nil)
	pids := int64(50)
	base := func() container.CreateRequest {
		return container.CreateRequest{Config: &container.Config{Image: "busybox", Cmd: []string{"true"}}, HostConfig: &container.HostConfig{}}
	}
	for _, tc := range []struct {
		name   string
		mut    func(*container.CreateRequest)
		status int
		want   string
	}{
		{"no config", func(r *container.CreateRequest) { r.Config = nil }, 400, "config cannot be empty"},
		{"no image", func(r *container.CreateRequest) { r.Image = "" }, 400, "no image specified"},
		{"console size", func(r *container.CreateRequest) { r.Tty, r.HostConfig.ConsoleSize = true, [2]uint{0, 80} }, 400, "ConsoleSize"},
		{"network", func(r *container.CreateRequest) { r.HostConfig.NetworkMode = "backend" }, 400, "network backend not found"}, // not 404: the docker CLI would pull the image
		{"container network", func(r *container.CreateRequest) { r.HostConfig.NetworkMode = "container:x" }, 400, "not supported"},
		{"memory", func(r *container.CreateRequest) { r.HostConfig.Memory = 1 << 20 }, 400, "Minimum memory limit allowed is 6MB"},
		{"cpus", func(r *container.CreateRequest) { r.HostConfig.NanoCPUs = 1e15 }, 400, "Range of CPUs"},
		{"privileged", func(r *container.CreateRequest) { r.HostConfig.Privileged = true }, 400, "privileged"},
		{"secopt", func(r *container.CreateRequest) { r.HostConfig.SecurityOpt = []string{"apparmor=unconfined"} }, 400, "security option"},
		{"restart", func(r *container.CreateRequest) { r.HostConfig.RestartPolicy.Name = "sometimes" }, 400, "invalid restart policy"},
		{"restart+rm", func(r *container.CreateRequest) {
			r.HostConfig.RestartPolicy.Name = "always"
			r.HostConfig.AutoRemove = true
		}, 400, "AutoRemove"},
		{"host port", func(r *container.CreateRequest) {
			r.HostConfig.PortBindings = network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "eighty"}}}
		}, 400, `invalid host port "eighty"`},
		{"sctp", func(r *container.CreateRequest) {
			r.HostConfig.PortBindings = network.PortMap{network.MustParsePort("80/sctp"): {{HostPort: "80"}}}
		}, 400, "only tcp and udp"},
		{"ports on host net", func(r *container.CreateRequest) {
			r.HostConfig.NetworkMode = "host"
			r.HostConfig.PortBindings = network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "80"}}}
		}, 400, "published ports need the bridge network"},
		{"stop signal", func(r *container.CreateRequest) { r.StopSignal = "SIGWHATEVER" }, 400, "invalid stop signal"},
		{"null ulimit", func(r *container.CreateRequest) { r.HostConfig.Ulimits = []*container.Ulimit{nil} }, 400, "invalid ulimit"},
		{"on-failure negative", func(r *container.CreateRequest) {
			r.HostConfig.RestartPolicy = container.RestartPolicy{Name: "on-failure", MaximumRetryCount: -1}
		}, 400, "maximum retry count cannot be negative"},
		{"always with count", func(r *container.CreateRequest) {
			r.HostConfig.RestartPolicy = container.RestartPolicy{Name: "always", MaximumRetryCount: 2}
		}, 400, "maximum retry count can only be used with 'on-failure'"},
		{"health interval", func(r *container.CreateRequest) {
			r.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: -time.Second}
		}, 400, "Interval in Healthcheck cannot be less than 1ms"},
		{"health retries", func(r *container.CreateRequest) {
			r.Healthcheck = &container.HealthConfig{Test: []string{"CMD", "true"}, Retries: -1}
		}, 400, "Retries in Healthcheck cannot be negative"},
		{"health type", func(r *container.CreateRequest) {
			r.Healthcheck = &container.HealthConfig{Test: []string{"SHELL", "true"}}
		}, 400, "unknown healthcheck type"},
		{"uts", func(r *container.CreateRequest) { r.HostConfig.UTSMode = "private" }, 400, "--uts private is not supported"},
		{"uts host with a hostname", func(r *container.CreateRequest) { r.HostConfig.UTSMode, r.Hostname = "host", "h" }, 400, "conflicting options: hostname and the UTS mode"},
		{"cpu quota", func(r *container.CreateRequest) { r.HostConfig.CPUQuota = 50000 }, 400, "--cpu-quota is not supported"},
		{"swappiness", func(r *container.CreateRequest) { v := int64(10); r.HostConfig.MemorySwappiness = &v }, 400, "--memory-swappiness is not supported"},
		{"log driver", func(r *container.CreateRequest) { r.HostConfig.LogConfig.Type = "syslog" }, 400, "logger: no log driver named 'syslog' is registered"},
		{"oom score", func(r *container.CreateRequest) { r.HostConfig.OomScoreAdj = 100 }, 400, "--oom-score-adj is not supported"},
	} {
		req := base()
		tc.mut(&req)
		_, err := d.createConfig(req)
		if err == nil || statusOf(err) != tc.status || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (%d), want %d containing %q", tc.name, err, statusOf(err), tc.status, tc.want)
		}
	}
	req := base()
	req.HostConfig.PidsLimit = &pids
	req.HostConfig.Memory = 64 << 20
	req.HostConfig.SecurityOpt = []string{"no-new-privileges"}
	req.HostConfig.NetworkMode = "default"
	// What the docker CLI sends for flags it was not given is not refused.
	noSwappiness := int64(-1)
	req.HostConfig.MemorySwappiness, req.HostConfig.LogConfig.Type = &noSwappiness, "json-file"
	// The options the engine checks and applies reach its config, none dropped.
	req.HostConfig.MemorySwap, req.HostConfig.ShmSize = 128<<20, 1<<20
	req.HostConfig.CpusetCpus, req.HostConfig.CpusetMems = "0", "0"
	req.HostConfig.Sysctls = map[string]string{"kernel.shmmax": "1"}
	req.HostConfig.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}}
	req.HostConfig.PidMode, req.HostConfig.IpcMode = "host", "none"
	req.HostConfig.GroupAdd = []string{"audio"}
	cfg, err := d.createConfig(req)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PidsLimit != 50 || cfg.Memory != 64<<20 || !cfg.NoNewPrivileges || cfg.NetworkMode != "bridge" {
		t.Errorf("%+v", cfg)
	}
	if cfg.MemorySwap != 128<<20 || cfg.ShmSize != 1<<20 || cfg.CpusetCpus != "0" || cfg.CpusetMems != "0" ||
		cfg.Sysctls["kernel.shmmax"] != "1" || len(cfg.Ulimits) != 1 || cfg.Ulimits[0] != (containers.Ulimit{Name: "nofile", Soft: 1, Hard: 2}) ||
		cfg.PidMode != "host" || cfg.IpcMode != "none" || len(cfg.GroupAdd) != 1 {
		t.Errorf("options dropped on the way to the engine: %+v", cfg)
	}
	var hc container.HostConfig
	if err := json.Unmarshal(cfg.RawHostConfig, &hc); err != nil || hc.NetworkMode != "bridge" {
		t.Errorf("raw host config %s: %v", cfg.RawHostConfig, err)
	}
}

func TestPortMappings(t *testing.T) {
	got, err := portMappings(network.PortMap{
		network.MustParsePort("80/tcp"):  {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "8080"}, {HostPort: "8081"}},
		network.MustParsePort("53/udp"):  nil,
		network.MustParsePort("443/tcp"): {{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []bridge.PortMapping{
		{ContainerPort: 443, Protocol: "tcp"},
		{ContainerPort: 53, Protocol: "udp"},
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: 8081, ContainerPort: 80, Protocol: "tcp"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if _, err := portMappings(network.PortMap{network.MustParsePort("80/tcp"): {{HostIP: netip.MustParseAddr("::1")}}}); err == nil {
		t.Error("IPv6 host IP accepted")
	}
}

func TestParseChanges(t *testing.T) {
	cfg, err := parseChanges([]string{
		`CMD ["/bin/sh", "-c", "echo hi"]`,
		`ENTRYPOINT /entry.sh --flag`,
		`ENV A=1 B="two words"`,
		`ENV LEGACY some value`,
		`LABEL team=core "tier"=web`,
		`EXPOSE 80 53/udp`,
		`WORKDIR /srv`,
		`USER nobody`,
		`VOLUME ["/data"]`,
		`STOPSIGNAL SIGINT`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := ocispec.ImageConfig{
		Cmd:          []string{"/bin/sh", "-c", "echo hi"},
		Entrypoint:   []string{"/bin/sh", "-c", "/entry.sh --flag"},
		Env:          []string{"A=1", "B=two words", "LEGACY=some value"},
		Labels:       map[string]string{"team": "core", "tier": "web"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		WorkingDir:   "/srv", User: "nobody", StopSignal: "SIGINT",
		Volumes: map[string]struct{}{"/data": {}},
	}
	g, _ := json.Marshal(cfg)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("got  %s\nwant %s", g, w)
	}
	for _, bad := range []string{"RUN echo", "CMD", "LABEL novalue", "EXPOSE eighty"} {
		if _, err := parseChanges([]string{bad}); err == nil || statusOf(err) != 400 {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestApplyChangesOverAConfig: commit --change adds to the container's
// env and labels, replaces the rest, and an ENTRYPOINT without a CMD
// clears the Cmd, as dockerd's commit; the base is not modified.
func TestApplyChangesOverAConfig(t *testing.T) {
	base := ocispec.ImageConfig{Env: []string{"A=1", "B=2"}, Labels: map[string]string{"l": "1"}, Cmd: []string{"sleep", "9"}}
	cfg, err := applyChanges(base, []string{"ENV B=3", "LABEL m=2", `ENTRYPOINT ["/e"]`})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.Env, cfg.Labels, cfg.Entrypoint, cfg.Cmd == nil) != "[A=1 B=3] map[l:1 m:2] [/e] true" {
		t.Errorf("applied: %v %v %v %v", cfg.Env, cfg.Labels, cfg.Entrypoint, cfg.Cmd)
	}
	if fmt.Sprint(base.Env, base.Labels) != "[A=1 B=2] map[l:1]" {
		t.Errorf("the base changed: %v %v", base.Env, base.Labels)
	}
	cfg, _ = applyChanges(base, []string{`CMD ["x"]`, `ENTRYPOINT ["/e"]`})
	if fmt.Sprint(cfg.Cmd) != "[x]" {
		t.Errorf("CMD then ENTRYPOINT: Cmd %v", cfg.Cmd)
	}
}

func TestFilters(t *testing.T) {
	modern, err := parseFilters(`{"status":{"running":true,"exited":true},"label":{"a=1":true}}`, validContainerFilters...)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := parseFilters(`{"status":["exited","running"],"label":["a=1"]}`, validContainerFilters...)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(modern) != fmt.Sprint(legacy) {
		t.Errorf("modern %v, legacy %v", modern, legacy)
	}
	c := containers.Container{ID: "abcdef", Name: "/web-1", ImageID: "sha256:1234", Config: containers.Config{Image: "busybox:latest", Labels: map[string]string{"a": "1"}},
		State: containers.State{Status: "exited", ExitCode: 3}}
	for _, tc := range []struct {
		f    string
		want bool
	}{
		{`{"status":{"exited":true}}`, true},
		{`{"status":{"running":true}}`, false},
		{`{"name":{"web":true}}`, true},
		{`{"name":{"db":true}}`, false},
		{`{"id":{"abc":true}}`, true},
		{`{"label":{"a":true}}`, true},
		{`{"label":{"a=2":true}}`, false},
		{`{"label":{"a=1":true,"b":true}}`, false},
		{`{"ancestor":{"busybox":true}}`, true},
		{`{"ancestor":{"1234":true}}`, true},
		{`{"exited":{"3":true}}`, true},
		{`{"exited":{"0":true}}`, false},
	} {
		f, err := parseFilters(tc.f, validContainerFilters...)
		if err != nil {
			t.Fatal(err)
		}
		// The ancestor filters resolved to c's image (imageAncestry).
		if got := f.matchContainer(c, map[string]bool{"sha256:1234": true}); got != tc.want {
			t.Errorf("%s: %v", tc.f, got)
		}
	}
	img := images.Image{RepoTags: []string{"localhost:5000/team/app:v1"}}
	for _, tc := range []struct {
		f    string
		want bool
	}{
		{`{"reference":{"localhost:5000/team/app":true}}`, true},
		{`{"reference":{"localhost:5000/team/*":true}}`, true},
		{`{"reference":{"app":true}}`, false},
		{`{"dangling":{"true":true}}`, false},
		{`{"dangling":{"false":true}}`, true},
	} {
		f, _ := parseFilters(tc.f, validImageFilters...)
		if got := f.matchImage(img); got != tc.want {
			t.Errorf("%s: %v", tc.f, got)
		}
	}
	// A list filtered by reference shows the matching tags only, as dockerd.
	two := images.Image{RepoTags: []string{"busybox:latest", "bb:x", "bb:y"}, RepoDigests: []string{"bb@sha256:ab", "busybox@sha256:cd"}}
	for _, tc := range []struct {
		f             string
		tags, digests []string
	}{
		{`{}`, two.RepoTags, two.RepoDigests},
		{`{"reference":{"bb":true}}`, []string{"bb:x", "bb:y"}, []string{"bb@sha256:ab"}},
		{`{"reference":{"bb:x":true}}`, []string{"bb:x"}, nil},
		{`{"reference":{"busy*":true,"bb:y":true}}`, []string{"bb:y", "busybox:latest"}, []string{"busybox@sha256:cd"}},
	} {
		f, _ := parseFilters(tc.f, validImageFilters...)
		if tags, digests := f.imageRefs(two); !slices.Equal(tags, tc.tags) || !slices.Equal(digests, tc.digests) {
			t.Errorf("%s: tags %q digests %q", tc.f, tags, digests)
		}
	}
	if f, _ := parseFilters(`{"reference":{"bb@sha256:ab":true}}`, validImageFilters...); !f.matchImage(images.Image{RepoDigests: []string{"bb@sha256:ab"}}) {
		t.Error("an image by its digest only is not matched")
	}
}

func TestStreamFilter(t *testing.T) {
	var src bytes.Buffer
	for i, s := range []byte{1, 2, 1, 2, 3} {
		_ = shim.WriteFrame(&src, s, []byte(strings.Repeat(fmt.Sprint(i), i+1)))
	}
	all := src.Bytes()
	for _, chunk := range []int{1, 3, 7, 1000} {
		var out bytes.Buffer
		f := &streamFilter{w: &out, stdout: true}
		for b := all; len(b) > 0; {
			k := min(chunk, len(b))
			if n, err := f.Write(b[:k]); n != k || err != nil {
				t.Fatal(n, err)
			}
			b = b[k:]
		}
		var want bytes.Buffer
		_ = shim.WriteFrame(&want, 1, []byte("0"))
		_ = shim.WriteFrame(&want, 1, []byte("222"))
		_ = shim.WriteFrame(&want, 3, []byte("44444"))
		if !bytes.Equal(out.Bytes(), want.Bytes()) {
			t.Errorf("chunk %d: %q, want %q", chunk, out.Bytes(), want.Bytes())
		}
	}
}

func TestListenSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "d.sock")
	ln, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// A live listener: a second daemon is refused and the socket stays.
	if _, err := listen(path); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second listen: %v", err)
	}
	// A crashed daemon leaves its socket file behind with nobody on it.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left for the test: %v", err)
	}
	ln2, err := listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln2.Close()
	// Anything else at the path is not ours to remove.
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o644)
	if _, err := listen(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("plain file: %v", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "x" {
		t.Fatal("plain file touched")
	}
}

func TestCommandFlags(t *testing.T) {
	root := &cobra.Command{Use: "shoal"}
	root.PersistentFlags().StringP("host", "H", "", "client socket")
	d := Command()
	root.AddCommand(d)
	for _, args := range [][]string{
		{"-H", "unix:///tmp/x.sock", "daemon"},
		{"daemon", "-H", "unix:///tmp/x.sock"},
		{"daemon", "--host=unix:///tmp/x.sock"},
	} {
		cmd, rest, err := root.Find(args)
		if err != nil || cmd != d {
			t.Fatalf("%v: %v %v", args, cmd, err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if v := cmd.Flags().Lookup("host").Value.String(); v != "unix:///tmp/x.sock" {
			t.Errorf("%v: host %q", args, v)
		}
		cmd.Flags().Set("host", DefaultHost)
	}
	for name, def := range map[string]string{
		"data-root": DefaultDataRoot, "exec-root": DefaultExecRoot, "cgroup-parent": DefaultCgroupParent,
		"bridge-name": DefaultBridgeName, "bip": DefaultBIP, "log-level": "info",
	} {
		if f := d.Flags().Lookup(name); f == nil || f.DefValue != def {
			t.Errorf("--%s: %+v", name, f)
		}
	}
	if d.Flags().Lookup("node-name") == nil {
		t.Error("no --node-name")
	}
	if _, err := parseLogLevel("chatty"); err == nil {
		t.Error("bad log level accepted")
	}
	if _, err := socketPath("tcp://0.0.0.0:2375"); err == nil {
		t.Error("tcp host accepted")
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := Run(ctx, Config{Host: "tcp://127.0.0.1:2375", DataRoot: t.TempDir(), ExecRoot: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "only unix://") {
		t.Errorf("tcp: %v", err)
	}
	if err := Run(ctx, Config{LogLevel: "loud", DataRoot: t.TempDir(), ExecRoot: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Errorf("log level: %v", err)
	}
}

// A list's Command quotes the arguments that hold a space, as dockerd's
// (docker ps shows "sh -c 'echo a; …").
func TestCommandOf(t *testing.T) {
	c := containers.Container{Path: "sh", Args: []string{"-c", "echo out; exit 4"}}
	if got := commandOf(c); got != "sh -c 'echo out; exit 4'" {
		t.Errorf("got %q", got)
	}
	if got := commandOf(containers.Container{Path: "sleep", Args: []string{"300"}}); got != "sleep 300" {
		t.Errorf("got %q", got)
	}
}

// The filters dockerd's lists and prunes take beyond matching one object:
// times (until), a negated label (label!), before and since another
// object, the volumes a container mounts, whether it is a task.
func TestTimeAndRelationFilters(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		v    string
		want time.Time
	}{
		{"2026-01-02T03:04:05Z", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, time.Local)},
		{"1700000000", time.Unix(1700000000, 0)},
		{"1700000000.5", time.Unix(1700000000, 5e8)},
	} {
		if got, err := parseUntil(tc.v); err != nil || !got.Equal(tc.want) {
			t.Errorf("until %s: %v %v, want %v", tc.v, got, err, tc.want)
		}
	}
	if got, err := parseUntil("10m"); err != nil || got.After(now.Add(-10*time.Minute+time.Second)) || got.Before(now.Add(-11*time.Minute)) {
		t.Errorf("until 10m: %v %v", got, err)
	}
	for _, bad := range []string{"yesterday", "-5", "10x"} {
		if _, err := parseUntil(bad); err == nil {
			t.Errorf("until %q accepted", bad)
		}
	}
	f, _ := parseFilters(`{"until":{"1h":true,"2h":true},"label!":{"keep":true,"tier=db":true}}`, "until", "label!")
	until, err := f.until()
	if err != nil || until.After(now.Add(-2*time.Hour+time.Second)) {
		t.Errorf("two untils: the earliest, got %v %v", until, err)
	}
	if !createdBefore(now.Add(-3*time.Hour), until) || createdBefore(now.Add(-time.Hour), until) || !createdBefore(now, time.Time{}) {
		t.Error("createdBefore")
	}
	for labels, want := range map[string]bool{"": true, "keep": false, "tier=db": false, "tier=web": true} {
		l := map[string]string{}
		if k, v, ok := strings.Cut(labels, "="); ok {
			l[k] = v
		} else if labels != "" {
			l[labels] = ""
		}
		if got := f.notLabels(l); got != want {
			t.Errorf("label! keep, tier=db on %q: %v", labels, got)
		}
	}

	times := map[string]time.Time{"old": now.Add(-time.Hour), "mid": now.Add(-time.Minute), "new": now}
	created := func(ref string) (time.Time, error) {
		if t, ok := times[ref]; ok {
			return t, nil
		}
		return time.Time{}, containers.ErrNotFound
	}
	f, _ = parseFilters(`{"before":{"new":true},"since":{"old":true}}`, "before", "since")
	r, err := f.createdRange(created)
	if err != nil || !r.admits(times["mid"]) || r.admits(times["old"]) || r.admits(times["new"]) {
		t.Errorf("since old, before new: %+v %v", r, err)
	}
	f, _ = parseFilters(`{"before":{"nosuch":true}}`, "before")
	if _, err := f.createdRange(created); !errors.Is(err, containers.ErrNotFound) {
		t.Errorf("before an unknown container: %v", err)
	}

	mounts := []container.MountPoint{{Type: "volume", Name: "data", Destination: "/var/lib/db"}, {Type: "bind", Source: "/srv", Destination: "/srv"}}
	for v, want := range map[string]bool{"data": true, "/var/lib/db": true, "/srv": true, "other": false} {
		f, _ := parseFilters(`{"volume":{"`+v+`":true}}`, "volume")
		if got := f.matchMounts(mounts); got != want {
			t.Errorf("volume=%s: %v", v, got)
		}
	}
	task := containers.Container{Config: containers.Config{Labels: map[string]string{worker.LabelTaskID: "t1"}}}
	for filter, want := range map[string][2]bool{"true": {true, false}, "false": {false, true}} {
		f, _ := parseFilters(`{"is-task":{"`+filter+`":true}}`, "is-task")
		if f.matchContainer(task, nil) != want[0] || f.matchContainer(containers.Container{}, nil) != want[1] {
			t.Errorf("is-task=%s", filter)
		}
	}
}

// insertDefaults shows what a service runs with where its spec is silent,
// as dockerd's, and leaves what the spec says.
func TestInsertServiceDefaults(t *testing.T) {
	var s swarm.ServiceSpec
	s.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "busybox"}
	insertServiceDefaults(&s)
	c, rp, u := s.TaskTemplate.ContainerSpec, s.TaskTemplate.RestartPolicy, s.UpdateConfig
	if *c.StopGracePeriod != 10*time.Second || *c.Init || rp.Condition != swarm.RestartPolicyConditionAny || *rp.Delay != 5*time.Second ||
		*rp.MaxAttempts != 0 || s.EndpointSpec.Mode != swarm.ResolutionModeVIP {
		t.Errorf("defaults: %+v %+v %+v", c, rp, s.EndpointSpec)
	}
	for _, u := range []*swarm.UpdateConfig{u, s.RollbackConfig} {
		if u.Parallelism != 1 || u.FailureAction != swarm.UpdateFailureActionPause || u.Monitor != 5*time.Second || u.Order != swarm.UpdateOrderStopFirst {
			t.Errorf("update defaults: %+v", u)
		}
	}
	delay := time.Second
	s = swarm.ServiceSpec{UpdateConfig: &swarm.UpdateConfig{Parallelism: 3, Order: swarm.UpdateOrderStartFirst},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR}}
	s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, Delay: &delay}
	insertServiceDefaults(&s)
	if s.UpdateConfig.Parallelism != 3 || s.UpdateConfig.Order != swarm.UpdateOrderStartFirst || s.EndpointSpec.Mode != swarm.ResolutionModeDNSRR ||
		*s.TaskTemplate.RestartPolicy.Delay != time.Second || s.TaskTemplate.RestartPolicy.Condition != swarm.RestartPolicyConditionOnFailure {
		t.Errorf("given values changed: %+v %+v", s.UpdateConfig, s.TaskTemplate.RestartPolicy)
	}
}
