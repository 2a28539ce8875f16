package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"

	"github.com/shoal-project/shoal/containerd/archive"
	"github.com/shoal-project/shoal/containerd/build"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/distribution"
	"github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/containerd/images"
)

func (d *Daemon) buildRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /build", d.imageBuild)
}

// buildParamDefaults are the query parameters of POST /build that the
// classic builder here does not implement, with the values that mean "not
// used" (what the docker CLI and docker-py send by default). Any other value
// is refused, never ignored.
var buildParamDefaults = map[string][]string{
	"cpusetcpus": {""}, "cpusetmems": {""}, "cpushares": {"", "0"}, "cpuquota": {"", "0"},
	"cpuperiod": {"", "0"}, "memory": {"", "0"}, "memswap": {"", "0"}, "cgroupparent": {""},
	"shmsize": {"", "0"}, "platform": {"", "linux/amd64", "linux"},
	"squash": {"", "0", "false"}, "extrahosts": {"", "null", "[]"}, "ulimits": {"", "null", "[]"},
	"cachefrom": {"", "null", "[]"}, "isolation": {"", "default"}, "session": {""}, "outputs": {""},
	"buildid": {""}, "remote": {""}, "version": {"", "1"}, "secrets": {""},
}

// buildParams are the parameters the builder applies.
var buildParams = map[string]bool{
	"t": true, "dockerfile": true, "buildargs": true, "target": true, "nocache": true, "pull": true,
	"labels": true, "q": true, "rm": true, "forcerm": true, "networkmode": true,
}

// buildOptions reads POST /build's query; a parameter it does not apply
// with a value other than its default is refused.
func buildOptions(r *http.Request) (build.Options, bool, error) {
	q := r.URL.Query()
	for k, vs := range q {
		if buildParams[k] {
			continue
		}
		ok := false
		for _, def := range buildParamDefaults[k] {
			if len(vs) == 1 && vs[0] == def {
				ok = true
			}
		}
		if !ok {
			if k == "remote" {
				return build.Options{}, false, badRequest("building from a remote context (%s) is not supported: send the context as a tar", q.Get(k))
			}
			return build.Options{}, false, badRequest("build option %s=%s is not supported", k, strings.Join(vs, ","))
		}
	}
	opts := build.Options{Dockerfile: q.Get("dockerfile"), Target: q.Get("target"), Tags: q["t"],
		NoCache: boolParam(r, "nocache"), Pull: boolParam(r, "pull")}
	for _, t := range opts.Tags {
		if _, err := images.ParseReference(t); err != nil {
			return build.Options{}, false, badRequest("invalid tag %q: %v", t, err)
		}
	}
	if v := q.Get("buildargs"); v != "" {
		if err := json.Unmarshal([]byte(v), &opts.BuildArgs); err != nil {
			return build.Options{}, false, badRequest("buildargs: %v", err)
		}
	}
	if v := q.Get("labels"); v != "" {
		if err := json.Unmarshal([]byte(v), &opts.Labels); err != nil {
			return build.Options{}, false, badRequest("labels: %v", err)
		}
	}
	switch m := q.Get("networkmode"); m {
	case "", "default", "bridge":
	case "none":
		opts.NetworkMode = "none"
	default:
		return build.Options{}, false, badRequest("build network %q is not supported: the default bridge or none", m)
	}
	// rm=0 keeps the containers of the steps that succeeded (docker-py's
	// default); a failed step's container always goes, as with --force-rm.
	opts.KeepContainers = q.Has("rm") && !boolParam(r, "rm")
	return opts, boolParam(r, "q"), nil
}

// imageBuild is POST /build: the body is the context as a tar (optionally
// compressed), the answer docker's JSON stream of the classic builder's
// output, the image's ID in an aux message, then "Successfully built".
func (d *Daemon) imageBuild(w http.ResponseWriter, r *http.Request) {
	opts, quiet, err := buildOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	store, ok := d.images.(build.Images)
	if !ok {
		writeError(w, errors.New("this daemon's image store cannot build"))
		return
	}
	ctx, cancel := d.streamContext(r)
	defer cancel()
	dir, err := os.MkdirTemp(filepath.Join(d.cfg.DataRoot, "tmp"), "build-")
	if err != nil && errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Join(d.cfg.DataRoot, "tmp"), 0o700); err == nil {
			dir, err = os.MkdirTemp(filepath.Join(d.cfg.DataRoot, "tmp"), "build-")
		}
	}
	if err != nil {
		writeError(w, fmt.Errorf("build context directory: %w", err))
		return
	}
	defer os.RemoveAll(dir)
	body, err := archive.Decompress(r.Body)
	if err != nil {
		writeError(w, badRequest("build context: %v", err))
		return
	}
	defer body.Close()
	// The context is unpacked as a layer is: nothing lands outside dir,
	// whatever names and links the tar holds.
	if _, err := archive.Apply(ctx, dir, body, archive.ApplyOptions{NoLchown: true}); err != nil {
		writeError(w, badRequest("build context: %v", err))
		return
	}
	send, fail := buildStream(w)
	out := &streamWriter{send: send}
	var quietBuf bytes.Buffer
	opts.ContextDir = dir
	opts.Out = out
	if quiet {
		opts.Out = &quietBuf
	}
	auths, err := decodeAuthConfigs(r.Header.Get("X-Registry-Config"))
	if err != nil {
		fail(err)
		return
	}
	pull := func(ctx context.Context, ref string, out io.Writer) (images.Image, error) {
		return d.buildPull(ctx, ref, auths, out)
	}
	b := &build.Builder{Images: store, Containers: buildContainers{d}, Pull: pull}
	id, err := b.Build(ctx, opts)
	if err != nil {
		if quiet {
			send(jsonstream.Message{Stream: quietBuf.String()})
		}
		fail(err)
		return
	}
	send(jsonstream.Message{Aux: rawJSON(map[string]string{"ID": id})})
	if quiet {
		send(jsonstream.Message{Stream: id + "\n"})
	} else {
		send(jsonstream.Message{Stream: "Successfully built " + strings.TrimPrefix(id, "sha256:")[:12] + "\n"})
	}
	for _, t := range opts.Tags {
		ref, _ := images.ParseReference(t)
		d.publish(events.TypeImage, "tag", id, map[string]string{"name": ref.String()})
		if !quiet {
			send(jsonstream.Message{Stream: "Successfully tagged " + ref.String() + "\n"})
		}
	}
}

// buildStream starts the JSON stream: send writes a message, fail the
// error, with both the "error" field (docker-py reads it) and errorDetail
// (the docker CLI does), as dockerd.
func buildStream(w http.ResponseWriter) (send func(jsonstream.Message), fail func(error)) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(newFlushWriter(w))
	send = func(m jsonstream.Message) { _ = enc.Encode(m) }
	fail = func(err error) {
		_ = enc.Encode(struct {
			Error       string            `json:"error"`
			ErrorDetail *jsonstream.Error `json:"errorDetail"`
		}{err.Error(), &jsonstream.Error{Message: err.Error()}})
	}
	return send, fail
}

func rawJSON(v any) *json.RawMessage {
	b, _ := json.Marshal(v)
	m := json.RawMessage(b)
	return &m
}

// streamWriter turns the builder's output into {"stream": ...} messages.
type streamWriter struct {
	mu   sync.Mutex
	send func(jsonstream.Message)
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.send(jsonstream.Message{Stream: string(p)})
	return len(p), nil
}

// decodeAuthConfigs reads docker's X-Registry-Config header: base64 JSON
// of registry host -> AuthConfig, the client's credentials for the build's
// pulls.
func decodeAuthConfigs(h string) (map[string]distribution.Auth, error) {
	out := map[string]distribution.Auth{}
	if h == "" {
		return out, nil
	}
	raw, err := decodeHeader("X-Registry-Config", h)
	if err != nil {
		return nil, err
	}
	var acs map[string]registry.AuthConfig
	if err := json.Unmarshal(raw, &acs); err != nil {
		return nil, badRequest("invalid X-Registry-Config header: %v", err)
	}
	for host, ac := range acs {
		a, err := authOf(ac)
		if err != nil {
			return nil, err
		}
		out[host] = a
	}
	return out, nil
}

// buildPull pulls a FROM image that is not here with the client's
// credentials for its registry (Docker Hub's are under its index URL).
func (d *Daemon) buildPull(ctx context.Context, ref string, auths map[string]distribution.Auth, out io.Writer) (images.Image, error) {
	if d.registry == nil {
		return images.Image{}, fmt.Errorf("no registry client to pull %s", ref)
	}
	parsed, err := images.ParseReference(ref)
	if err != nil {
		return images.Image{}, err
	}
	host := parsed.Domain
	if host == "" {
		host = "https://index.docker.io/v1/"
	}
	fmt.Fprintf(out, "Pulling %s\n", parsed.String())
	return d.registry.Pull(ctx, parsed.String(), distribution.PullOptions{Auth: auths[host]})
}

// buildContainers is the engine as the builder uses it, with the start
// going through the daemon, which sets up the container's network.
type buildContainers struct{ d *Daemon }

var _ build.Containers = buildContainers{}

func (b buildContainers) Create(ctx context.Context, name string, cfg containers.Config) (containers.Container, error) {
	return b.d.containers.Create(ctx, name, cfg)
}

func (b buildContainers) Start(ctx context.Context, id string) error {
	return b.d.startContainer(ctx, id)
}

func (b buildContainers) AttachRegistered(ctx context.Context, id string, stdin io.Reader, out io.Writer, registered func()) error {
	return b.d.containers.AttachRegistered(ctx, id, stdin, out, registered)
}

func (b buildContainers) Wait(ctx context.Context, id, condition string, registered func()) (containers.State, error) {
	return b.d.containers.Wait(ctx, id, condition, registered)
}

func (b buildContainers) ExtractToDir(ctx context.Context, id, path string, r io.Reader) error {
	return b.d.containers.ExtractToDir(ctx, id, path, r)
}

// ArchivePath and StatPath follow a symlink last in the path: a build's
// COPY --from (and its --chown lookups in /etc/passwd) reads what a link
// points to, as dockerd's builders do; docker cp does not.
func (b buildContainers) ArchivePath(ctx context.Context, id, path string, w io.Writer) error {
	return b.d.containers.ArchiveResolved(ctx, id, path, w)
}

func (b buildContainers) StatPath(id, path string) (containers.PathStat, error) {
	return b.d.containers.StatResolved(id, path)
}

func (b buildContainers) Remove(ctx context.Context, id string, force bool) error {
	return b.d.containers.Remove(ctx, id, force)
}
