package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/logs"
)

// APIVersion is the Engine API version served: the newest that the
// github.com/moby/moby/client of the CLI speaks, so that it negotiates no
// downgrade. MinAPIVersion is the oldest accepted: Debian's docker 20.10 CLI
// sends /v1.41.
const (
	APIVersion    = "1.56"
	MinAPIVersion = "1.40"
	// Version is the daemon's version.
	Version = "0.1.0"
)

// GitCommit and BuildTime say which source the daemon was built from (the
// commit's short hash and time), set by `make build` with -ldflags -X;
// empty in a plain go build, as dockerd's when built without them.
var (
	GitCommit string
	BuildTime string
)

var versionPrefix = regexp.MustCompile(`^/v(\d+)\.(\d+)(/|$)`)

// handler routes the Engine API. Every request goes through the middleware:
// panic recovery (500, logged), the optional /vX.Y prefix and its range
// check, and the Api-Version header.
func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", d.ping)
	mux.HandleFunc("HEAD /_ping", d.ping)
	mux.HandleFunc("GET /version", d.version)
	mux.HandleFunc("GET /info", d.info)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorResponse{Message: "page not found"})
	})
	d.imageRoutes(mux)
	d.buildRoutes(mux)
	d.containerRoutes(mux)
	d.execRoutes(mux)
	d.swarmRoutes(mux)
	d.serviceRoutes(mux)
	d.secretRoutes(mux)
	d.observeRoutes(mux)
	d.volumeRoutes(mux)
	d.networkRoutes(mux)
	d.debugRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p) // the handler cut a stream on purpose
				}
				slog.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				writeError(w, fmt.Errorf("internal server error: %v", p))
			}
			slog.Debug("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery, "took", time.Since(start))
		}()
		w.Header().Set("Api-Version", APIVersion)
		w.Header().Set("Server", "shoal/"+Version+" (linux)")
		v, err := stripVersion(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if v != "" {
			r = r.WithContext(context.WithValue(r.Context(), apiVersionKey{}, v))
		}
		mux.ServeHTTP(w, r)
	})
}

// apiVersionKey keys the API version a request asked for in its context.
type apiVersionKey struct{}

// requestVersion is the API version of r's /vX.Y prefix, APIVersion for a
// request without one; answers whose shape changed between versions
// follow it, as dockerd's.
func requestVersion(r *http.Request) string {
	if v, ok := r.Context().Value(apiVersionKey{}).(string); ok {
		return v
	}
	return APIVersion
}

// stripVersion removes a /vX.Y prefix and returns its version ("" for
// none), refusing versions outside what is served with dockerd's messages.
func stripVersion(r *http.Request) (string, error) {
	m := versionPrefix.FindStringSubmatchIndex(r.URL.Path)
	if m == nil {
		return "", nil
	}
	v := r.URL.Path[m[2]:m[5]]
	r.URL.Path = r.URL.Path[m[5]:]
	if r.URL.Path == "" {
		r.URL.Path = "/"
	}
	r.URL.RawPath = ""
	switch {
	case versionLess(APIVersion, v):
		return "", badRequest("client version %s is too new. Maximum supported API version is %s", v, APIVersion)
	case versionLess(v, MinAPIVersion):
		return "", badRequest("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, MinAPIVersion)
	}
	return v, nil
}

// versionLess compares API versions "MAJOR.MINOR" numerically.
func versionLess(a, b string) bool {
	am, an, _ := strings.Cut(a, ".")
	bm, bn, _ := strings.Cut(b, ".")
	x, _ := strconv.Atoi(am)
	y, _ := strconv.Atoi(bm)
	if x != y {
		return x < y
	}
	x, _ = strconv.Atoi(an)
	y, _ = strconv.Atoi(bn)
	return x < y
}

func (d *Daemon) ping(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Ostype", "linux")
	h.Set("Builder-Version", "1")
	h.Set("Swarm", d.swarmPing())
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	_, _ = w.Write([]byte("OK"))
}

// hostOS is the host's operating system as /etc/os-release names it (its
// PRETTY_NAME and VERSION_ID), as dockerd's info shows it.
func hostOS() (name, version string) {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		switch k {
		case "PRETTY_NAME":
			name = v
		case "VERSION_ID":
			version = v
		}
	}
	if name == "" {
		name = "Linux"
	}
	return name, version
}

// machine is the hardware name uname(2) gives (x86_64), info's Architecture.
func machine() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return runtime.GOARCH
	}
	return unix.ByteSliceToString(u.Machine[:])
}

func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// version is GET /version: the daemon's version and build, and the engine
// as its one component.
func (d *Daemon) version(w http.ResponseWriter, r *http.Request) {
	v := system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "shoal"},
		Version:       Version,
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            "linux",
		Arch:          runtime.GOARCH,
		KernelVersion: kernelVersion(),
		GoVersion:     runtime.Version(),
		GitCommit:     GitCommit,
		BuildTime:     BuildTime,
	}
	// The engine is the only component: no containerd, runc or docker-init.
	v.Components = []system.ComponentVersion{{Name: "Engine", Version: Version, Details: map[string]string{
		"ApiVersion": APIVersion, "MinAPIVersion": MinAPIVersion, "Arch": v.Arch, "Os": v.Os, "KernelVersion": v.KernelVersion,
		"GoVersion": v.GoVersion, "GitCommit": GitCommit, "BuildTime": BuildTime, "Experimental": "false",
	}}}
	writeJSON(w, http.StatusOK, v)
}

func (d *Daemon) info(w http.ResponseWriter, r *http.Request) {
	osName, osVersion := hostOS()
	all := d.containers.List(true)
	// A paused container counts as paused, not running, as dockerd's.
	running, paused := 0, 0
	for _, c := range all {
		switch {
		case c.State.Running && c.State.Paused:
			paused++
		case c.State.Running:
			running++
		}
	}
	imgs, err := d.images.List()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, system.Info{
		ID: d.cfg.NodeName, Name: d.cfg.NodeName,
		Containers: len(all), ContainersRunning: running, ContainersPaused: paused, ContainersStopped: len(all) - running - paused,
		Images: len(imgs), Driver: "overlayfs", DockerRootDir: d.cfg.DataRoot,
		LoggingDriver: d.cfg.logDriver(), CgroupDriver: "cgroupfs",
		MemoryLimit: true, SwapLimit: cgroups.SwapLimitSupported(cgroups.Detect(), cgroups.DefaultRoot), CPUSet: true, CPUShares: true, CPUCfsQuota: true, CPUCfsPeriod: true, PidsLimit: true, IPv4Forwarding: true,
		Debug: slog.Default().Enabled(r.Context(), slog.LevelDebug), SystemTime: time.Now().Format(time.RFC3339Nano),
		KernelVersion: kernelVersion(), OperatingSystem: osName, OSVersion: osVersion, OSType: "linux", Architecture: machine(),
		NCPU: runtime.NumCPU(), MemTotal: memTotal(), CgroupVersion: cgroupVersion(), ServerVersion: Version, DefaultRuntime: defaultRuntime,
		// The one runtime, built in; `shoal runtime` is its OCI command line.
		Runtimes: map[string]system.RuntimeWithStatus{defaultRuntime: {Runtime: system.Runtime{Path: "shoal", Args: []string{"runtime"}}}},
		// no-new-privileges is per container (--security-opt), not a
		// daemon default: dockerd lists it only with --no-new-privileges.
		SecurityOptions: []string{"name=seccomp,profile=builtin"},
		// Containers always outlive the daemon: its shims hold them, and a
		// restarted daemon adopts them (dockerd does so with --live-restore).
		LiveRestoreEnabled: true,
		Swarm:              d.swarmInfo(r),
		Labels:             []string{}, Warnings: []string{},
		// The drivers this engine has, as dockerd lists its registered ones
		// (docker info's Plugins): "none" is no log driver there either.
		Plugins: system.PluginsInfo{
			Volume:  []string{"local"},
			Network: []string{"bridge", "host", "null", "overlay"},
			Log:     []string{logs.DriverJSONFile, logs.DriverLocal},
		},
	})
}

// memTotal is the host's memory in bytes, from /proc/meminfo.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cgroupVersion is "2" on a unified hierarchy, else "1" (a hybrid host,
// with v2 mounted beside v1 and no controllers in it, counts as v1).
func cgroupVersion() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "2"
	}
	return "1"
}
