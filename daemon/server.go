package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
)

// APIVersion is the Engine API version served; MinAPIVersion the oldest accepted.
const (
	APIVersion    = "1.56"
	MinAPIVersion = "1.40"
	// Version is the daemon's version.
	Version = "0.1.0"
)

var versionPrefix = regexp.MustCompile(`^/v\d+\.\d+/`)

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", d.ping)
	mux.HandleFunc("HEAD /_ping", d.ping)
	mux.HandleFunc("GET /version", d.version)
	mux.HandleFunc("GET /info", d.info)
	d.imageRoutes(mux)
	d.containerRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				log.Printf("panic serving %s %s: %v", r.Method, r.URL.Path, p)
				writeError(w, fmt.Errorf("internal error: %v", p))
			}
		}()
		if loc := versionPrefix.FindStringIndex(r.URL.Path); loc != nil {
			r.URL.Path = r.URL.Path[loc[1]-1:]
		}
		w.Header().Set("Api-Version", APIVersion)
		w.Header().Set("Server", "shoal/"+Version)
		mux.ServeHTTP(w, r)
	})
}

func (d *Daemon) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Ostype", "linux")
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", "0")
		return
	}
	_, _ = w.Write([]byte("OK"))
}

func (d *Daemon) version(w http.ResponseWriter, r *http.Request) {
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"Platform":      map[string]string{"Name": "shoal"},
		"Version":       Version,
		"ApiVersion":    APIVersion,
		"MinAPIVersion": MinAPIVersion,
		"Os":            "linux",
		"Arch":          runtime.GOARCH,
		"KernelVersion": kernel,
		"GoVersion":     runtime.Version(),
	})
}

func (d *Daemon) info(w http.ResponseWriter, r *http.Request) {
	all := d.engine.List(true)
	running := 0
	for _, c := range all {
		if c.State.Running {
			running++
		}
	}
	imgs, _ := d.images.List()
	writeJSON(w, http.StatusOK, map[string]any{
		"ID": d.cfg.NodeName, "Name": d.cfg.NodeName,
		"Containers": len(all), "ContainersRunning": running, "ContainersStopped": len(all) - running,
		"Images": len(imgs), "Driver": "overlayfs", "DockerRootDir": d.cfg.DataRoot,
		"ServerVersion": Version, "OSType": "linux", "Architecture": runtime.GOARCH, "NCPU": runtime.NumCPU(),
		"OperatingSystem": "shoal", "CgroupDriver": "cgroupfs",
		"Swarm": map[string]any{"LocalNodeState": "inactive", "ControlAvailable": false},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf maps the engine's error classes to Docker's statuses.
func statusOf(err error) int {
	var ee *containers.ExecError
	switch {
	case errors.Is(err, containers.ErrNotModified):
		return http.StatusNotModified
	case errors.Is(err, containers.ErrNotFound), errors.Is(err, images.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, containers.ErrConflict), errors.Is(err, images.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, containers.ErrInvalidArgument), errors.Is(err, images.ErrInvalidReference),
		errors.Is(err, images.ErrInvalid), errors.Is(err, errBadRequest), errors.As(err, &ee):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

var errBadRequest = errors.New("bad request")

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, a...))
}

// writeError writes Docker's error body {"message": "..."}, on one line.
func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusNotModified {
		w.WriteHeader(status)
		return
	}
	msg := strings.TrimPrefix(err.Error(), errBadRequest.Error()+": ")
	msg = strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
	writeJSON(w, status, map[string]string{"message": msg})
}

// decodeJSON reads a JSON body into v with a clear error for bad input.
func decodeJSON(r *http.Request, v any) error {
	if r.Body == nil {
		return badRequest("empty request body")
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4<<20))
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	return nil
}

func boolParam(r *http.Request, name string) bool {
	v := r.URL.Query().Get(name)
	b, err := strconv.ParseBool(v)
	return err == nil && b || v == "1"
}
