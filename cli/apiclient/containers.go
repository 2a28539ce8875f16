package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
)

func containerPath(id string) (string, error) { return idPath("container", "/containers", id) }

// ContainerCreate is POST /containers/create; name "" lets the daemon pick
// one. Capabilities are sent normalised (CAP_ prefix, upper case, sorted,
// without duplicates), as the moby client sent them.
func (c *Client) ContainerCreate(ctx context.Context, name string, req container.CreateRequest) (container.CreateResponse, error) {
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	if req.Config == nil {
		req.Config = &container.Config{}
	}
	if hc := req.HostConfig; hc != nil {
		n := *hc
		n.CapAdd, n.CapDrop = normalizeCaps(hc.CapAdd), normalizeCaps(hc.CapDrop)
		req.HostConfig = &n
	}
	var body any = req
	if b, err := compactJSON(req); err == nil {
		body = json.RawMessage(b)
	}
	var r container.CreateResponse
	err := c.post(ctx, "/containers/create", q, body, &r)
	return r, err
}

func normalizeCaps(caps []string) []string {
	out := slices.Clone(caps)
	for i, s := range out {
		s = strings.ToUpper(s)
		if s != "ALL" && !strings.HasPrefix(s, "CAP_") {
			s = "CAP_" + s
		}
		out[i] = s
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ContainerInspect is GET /containers/{id}/json. It returns the answer's
// JSON as well, for inspect to print as the daemon sent it.
func (c *Client) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, []byte, error) {
	return c.ContainerInspectWithSize(ctx, id, false)
}

// ContainerInspectWithSize is ContainerInspect; with size the daemon also
// computes SizeRw and SizeRootFs (inspect --size).
func (c *Client) ContainerInspectWithSize(ctx context.Context, id string, size bool) (container.InspectResponse, []byte, error) {
	var r container.InspectResponse
	p, err := containerPath(id)
	if err != nil {
		return r, nil, err
	}
	var q url.Values
	if size {
		q = url.Values{"size": {"1"}}
	}
	raw, err := c.getWithRaw(ctx, p+"/json", q, &r)
	return r, raw, err
}

// ContainerListOptions are the parameters of ContainerList.
type ContainerListOptions struct {
	All     bool // stopped containers too
	Limit   int  // the newest Limit containers (0: all)
	Size    bool // compute SizeRw and SizeRootFs
	Filters Filters
}

// ContainerList is GET /containers/json.
func (c *Client) ContainerList(ctx context.Context, o ContainerListOptions) ([]container.Summary, error) {
	q := url.Values{}
	if o.All {
		q.Set("all", "1")
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Size {
		q.Set("size", "1")
	}
	setFilters(q, o.Filters)
	var list []container.Summary
	err := c.get(ctx, "/containers/json", q, &list)
	return list, err
}

// ContainerStart is POST /containers/{id}/start.
func (c *Client) ContainerStart(ctx context.Context, id string) error {
	return c.containerPost(ctx, id, "/start", nil)
}

// ContainerStopOptions are the parameters of ContainerStop and
// ContainerRestart.
type ContainerStopOptions struct {
	// Signal stops the container ("": its stop signal, else SIGTERM).
	Signal string
	// Timeout is how many seconds to wait before SIGKILL (nil: the
	// container's stop timeout, else the daemon's; -1: no kill).
	Timeout *int
}

func (o ContainerStopOptions) query() url.Values {
	q := url.Values{}
	if o.Timeout != nil {
		q.Set("t", strconv.Itoa(*o.Timeout))
	}
	if o.Signal != "" {
		q.Set("signal", o.Signal)
	}
	return q
}

// ContainerStop is POST /containers/{id}/stop.
func (c *Client) ContainerStop(ctx context.Context, id string, o ContainerStopOptions) error {
	return c.containerPost(ctx, id, "/stop", o.query())
}

// ContainerRestart is POST /containers/{id}/restart.
func (c *Client) ContainerRestart(ctx context.Context, id string, o ContainerStopOptions) error {
	return c.containerPost(ctx, id, "/restart", o.query())
}

// ContainerKill is POST /containers/{id}/kill; signal "" is the daemon's
// default (SIGKILL).
func (c *Client) ContainerKill(ctx context.Context, id, signal string) error {
	q := url.Values{}
	if signal != "" {
		q.Set("signal", signal)
	}
	return c.containerPost(ctx, id, "/kill", q)
}

// ContainerRemoveOptions are the parameters of ContainerRemove.
type ContainerRemoveOptions struct {
	Force         bool // kill a running container first
	RemoveVolumes bool // its anonymous volumes too
}

// ContainerRemove is DELETE /containers/{id}.
func (c *Client) ContainerRemove(ctx context.Context, id string, o ContainerRemoveOptions) error {
	p, err := containerPath(id)
	if err != nil {
		return err
	}
	q := url.Values{}
	if o.RemoveVolumes {
		q.Set("v", "1")
	}
	if o.Force {
		q.Set("force", "1")
	}
	return c.del(ctx, p, q, nil)
}

// ContainerPause is POST /containers/{id}/pause.
func (c *Client) ContainerPause(ctx context.Context, id string) error {
	return c.containerPost(ctx, id, "/pause", nil)
}

// ContainerUnpause is POST /containers/{id}/unpause.
func (c *Client) ContainerUnpause(ctx context.Context, id string) error {
	return c.containerPost(ctx, id, "/unpause", nil)
}

// ContainerRename is POST /containers/{id}/rename.
func (c *Client) ContainerRename(ctx context.Context, id, newName string) error {
	newName = strings.TrimSpace(newName)
	if strings.TrimPrefix(newName, "/") == "" {
		return errors.New("new name cannot be blank")
	}
	return c.containerPost(ctx, id, "/rename", url.Values{"name": {newName}})
}

// ContainerResize is POST /containers/{id}/resize: the size of the
// container's TTY.
func (c *Client) ContainerResize(ctx context.Context, id string, height, width uint) error {
	return c.containerPost(ctx, id, "/resize", sizeQuery(height, width))
}

func sizeQuery(height, width uint) url.Values {
	return url.Values{
		"h": {strconv.FormatUint(uint64(height), 10)},
		"w": {strconv.FormatUint(uint64(width), 10)},
	}
}

// containerPost sends a POST without a body to /containers/{id}SUFFIX and
// discards the answer.
func (c *Client) containerPost(ctx context.Context, id, suffix string, q url.Values) error {
	p, err := containerPath(id)
	if err != nil {
		return err
	}
	return c.post(ctx, p+suffix, q, nil, nil)
}

// ContainerUpdate is POST /containers/{id}/update.
func (c *Client) ContainerUpdate(ctx context.Context, id string, u container.UpdateConfig) (container.UpdateResponse, error) {
	var r container.UpdateResponse
	p, err := containerPath(id)
	if err != nil {
		return r, err
	}
	err = c.post(ctx, p+"/update", nil, u, &r)
	return r, err
}

// ContainerTop is GET /containers/{id}/top; psArgs are ps's options,
// sent joined by spaces.
func (c *Client) ContainerTop(ctx context.Context, id string, psArgs []string) (container.TopResponse, error) {
	var r container.TopResponse
	p, err := containerPath(id)
	if err != nil {
		return r, err
	}
	q := url.Values{}
	if len(psArgs) > 0 {
		q.Set("ps_args", strings.Join(psArgs, " "))
	}
	err = c.get(ctx, p+"/top", q, &r)
	return r, err
}

// ContainerDiff is GET /containers/{id}/changes.
func (c *Client) ContainerDiff(ctx context.Context, id string) ([]container.FilesystemChange, error) {
	p, err := containerPath(id)
	if err != nil {
		return nil, err
	}
	var changes []container.FilesystemChange
	err = c.get(ctx, p+"/changes", nil, &changes)
	return changes, err
}

// ContainerCommitOptions are the parameters of ContainerCommit.
type ContainerCommitOptions struct {
	// Repo and Tag name the image (both "": untagged). The caller
	// normalises them: docker.io/library/busybox, latest.
	Repo, Tag string
	Comment   string
	Author    string
	Changes   []string // Dockerfile instructions applied to the image
	NoPause   bool     // do not pause the container while committing
	Config    *container.Config
}

// ContainerCommit is POST /commit: an image of the container's changes.
func (c *Client) ContainerCommit(ctx context.Context, id string, o ContainerCommitOptions) (container.CommitResponse, error) {
	var r container.CommitResponse
	id = strings.TrimSpace(id)
	if id == "" {
		return r, errors.New("invalid container name or ID: value is empty")
	}
	q := url.Values{"container": {id}}
	if o.Repo != "" {
		q.Set("repo", o.Repo)
	}
	if o.Tag != "" {
		q.Set("tag", o.Tag)
	}
	if o.Comment != "" {
		q.Set("comment", o.Comment)
	}
	if o.Author != "" {
		q.Set("author", o.Author)
	}
	for _, ch := range o.Changes {
		q.Add("changes", ch)
	}
	if o.NoPause {
		q.Set("pause", "0")
	}
	var body any // no body at all without a config, not "null"
	if o.Config != nil {
		body = o.Config
	}
	err := c.post(ctx, "/commit", q, body, &r)
	return r, err
}

// ContainerWait is POST /containers/{id}/wait for condition ("": the
// daemon's default, not-running). It returns once the daemon has answered
// the request's headers, so that a wait sent before a start is known to be
// registered; the exit status comes later on the first channel, or an
// error on the second (buffered: a refused request is there on return).
// Cancelling ctx ends the wait.
func (c *Client) ContainerWait(ctx context.Context, id string, condition container.WaitCondition) (<-chan container.WaitResponse, <-chan error) {
	resc, errc := make(chan container.WaitResponse, 1), make(chan error, 1)
	p, err := containerPath(id)
	if err != nil {
		errc <- err
		return resc, errc
	}
	q := url.Values{}
	if condition != "" {
		q.Set("condition", string(condition))
	}
	body, err := c.stream(ctx, Request{Method: "POST", Path: p + "/wait", Query: q})
	if err != nil {
		errc <- err
		return resc, errc
	}
	go func() {
		defer body.Close()
		var text bytes.Buffer
		var r container.WaitResponse
		if err := json.NewDecoder(io.TeeReader(body, &text)).Decode(&r); err != nil {
			var syntax *json.SyntaxError
			if errors.As(err, &syntax) {
				// Not JSON: the daemon's own words, as much as fits.
				_, _ = io.Copy(&text, io.LimitReader(body, 2048))
				err = errors.New(text.String())
			}
			errc <- err
			return
		}
		resc <- r
	}()
	return resc, errc
}

// ContainerAttachOptions are the parameters of ContainerAttach.
type ContainerAttachOptions struct {
	Stream                bool // the live streams (else only Logs)
	Stdin, Stdout, Stderr bool
	Logs                  bool   // the output so far first
	DetachKeys            string // "": the daemon's default
}

// ContainerAttach is POST /containers/{id}/attach, hijacked: the
// container's streams on one connection (multiplexed unless it has a TTY).
func (c *Client) ContainerAttach(ctx context.Context, id string, o ContainerAttachOptions) (*Hijacked, error) {
	p, err := containerPath(id)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, f := range []struct {
		on   bool
		name string
	}{{o.Stream, "stream"}, {o.Stdin, "stdin"}, {o.Stdout, "stdout"}, {o.Stderr, "stderr"}} {
		if f.on {
			q.Set(f.name, "1")
		}
	}
	if o.DetachKeys != "" {
		q.Set("detachKeys", o.DetachKeys)
	}
	if o.Logs {
		q.Set("logs", "1")
	}
	return c.hijack(ctx, p+"/attach", q, nil)
}

// ContainerLogsOptions are the parameters of ContainerLogs.
type ContainerLogsOptions struct {
	ShowStdout, ShowStderr bool
	// Since and Until bound the lines by time: an RFC 3339 date or time
	// (local without a zone), a Unix time, or a duration before now (42m).
	Since, Until string
	Timestamps   bool
	Follow       bool
	Tail         string // the last N lines ("" or "all": every line)
	Details      bool
}

// ContainerLogs is GET /containers/{id}/logs. The caller reads the stream
// (multiplexed unless the container has a TTY) and closes it; cancelling
// ctx ends it.
func (c *Client) ContainerLogs(ctx context.Context, id string, o ContainerLogsOptions) (io.ReadCloser, error) {
	p, err := containerPath(id)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if o.ShowStdout {
		q.Set("stdout", "1")
	}
	if o.ShowStderr {
		q.Set("stderr", "1")
	}
	if err := setTimestamp(q, "since", o.Since); err != nil {
		return nil, fmt.Errorf(`invalid value for "since": %w`, err)
	}
	if err := setTimestamp(q, "until", o.Until); err != nil {
		return nil, fmt.Errorf(`invalid value for "until": %w`, err)
	}
	if o.Timestamps {
		q.Set("timestamps", "1")
	}
	if o.Details {
		q.Set("details", "1")
	}
	if o.Follow {
		q.Set("follow", "1")
	}
	if o.Tail != "" && o.Tail != "all" {
		q.Set("tail", o.Tail)
	}
	return c.stream(ctx, Request{Method: "GET", Path: p + "/logs", Query: q})
}

// ContainerStats is GET /containers/{id}/stats: with stream, a JSON
// document a second until ctx ends; without, one document whose
// precpu_stats are filled (the daemon takes two samples a second apart).
// The caller closes the body.
func (c *Client) ContainerStats(ctx context.Context, id string, stream bool) (io.ReadCloser, error) {
	p, err := containerPath(id)
	if err != nil {
		return nil, err
	}
	q := url.Values{"stream": {strconv.FormatBool(stream)}}
	return c.stream(ctx, Request{Method: "GET", Path: p + "/stats", Query: q})
}
