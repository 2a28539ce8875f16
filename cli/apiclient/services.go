package apiclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// ServiceCreate is POST /services/create. registryAuth, when not empty, is
// sent as X-Registry-Auth (base64 JSON credentials for the image's
// registry). The spec goes as given: the moby client's rewriting of the
// image (a ":latest" tag added, the name made familiar) is the caller's.
// A spec without a task (container or plugin) gets an empty container
// spec, as the moby client gives it.
func (c *Client) ServiceCreate(ctx context.Context, spec swarm.ServiceSpec, registryAuth string) (swarm.ServiceCreateResponse, error) {
	tt := &spec.TaskTemplate
	if tt.ContainerSpec == nil && (tt.Runtime == "" || tt.Runtime == swarm.RuntimeContainer) {
		tt.ContainerSpec = &swarm.ContainerSpec{}
	}
	var r swarm.ServiceCreateResponse
	if err := checkServiceSpec(spec); err != nil {
		return r, err
	}
	err := c.call(ctx, Request{
		Method: "POST", Path: "/services/create",
		Header: serviceAuthHeader(registryAuth), Body: spec,
	}, &r)
	return r, err
}

// ServiceInspect is GET /services/{id}; insertDefaults fills in the
// settings the spec leaves to the daemon. It returns the answer's JSON too.
func (c *Client) ServiceInspect(ctx context.Context, id string, insertDefaults bool) (swarm.Service, []byte, error) {
	var s swarm.Service
	p, err := idPath("service", "/services", id)
	if err != nil {
		return s, nil, err
	}
	q := url.Values{}
	if insertDefaults {
		q.Set("insertDefaults", "1")
	}
	raw, err := c.getWithRaw(ctx, p, q, &s)
	return s, raw, err
}

// ServiceList is GET /services; status adds each service's task counts
// (ServiceStatus).
func (c *Client) ServiceList(ctx context.Context, f Filters, status bool) ([]swarm.Service, error) {
	q := url.Values{}
	setFilters(q, f)
	if status {
		q.Set("status", "true")
	}
	var out []swarm.Service
	err := c.get(ctx, "/services", q, &out)
	return out, err
}

// ServiceUpdateOptions are the optional parts of a service update.
type ServiceUpdateOptions struct {
	// RegistryAuth, when not empty, is sent as X-Registry-Auth.
	RegistryAuth string
	// RegistryAuthFrom says where the daemon takes the registry
	// credentials from when RegistryAuth is empty ("spec",
	// "previous-spec"; "": the daemon's default).
	RegistryAuthFrom swarm.RegistryAuthSource
	// Rollback "previous" rolls the service back to its previous spec.
	Rollback string
}

// ServiceUpdate is POST /services/{id}/update of the service at version
// (the one read with ServiceInspect). The spec goes as given (see
// ServiceCreate). The answer holds the daemon's warnings.
func (c *Client) ServiceUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.ServiceSpec, o ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	var r swarm.ServiceUpdateResponse
	p, err := idPath("service", "/services", id)
	if err != nil {
		return r, err
	}
	if err := checkServiceSpec(spec); err != nil {
		return r, err
	}
	q := url.Values{}
	if o.RegistryAuthFrom != "" {
		q.Set("registryAuthFrom", string(o.RegistryAuthFrom))
	}
	if o.Rollback != "" {
		q.Set("rollback", o.Rollback)
	}
	q.Set("version", strconv.FormatUint(version.Index, 10))
	err = c.call(ctx, Request{
		Method: "POST", Path: p + "/update", Query: q,
		Header: serviceAuthHeader(o.RegistryAuth), Body: spec,
	}, &r)
	return r, err
}

// ServiceRemove is DELETE /services/{id}.
func (c *Client) ServiceRemove(ctx context.Context, id string) error {
	p, err := idPath("service", "/services", id)
	if err != nil {
		return err
	}
	return c.del(ctx, p, nil, nil)
}

// ServiceLogsOptions select the lines of ServiceLogs and TaskLogs.
type ServiceLogsOptions struct {
	Stdout, Stderr bool
	Timestamps     bool
	Follow         bool
	// Details prefixes each line with its origin (node, service and task
	// IDs) and the log driver's attributes.
	Details bool
	// Since is a duration back from now ("42m"), a time (RFC 3339 or a
	// shorter form of it, local when it has no zone) or a Unix time; "":
	// from the start.
	Since string
	// Tail is the number of lines from the end, or "all".
	Tail string
}

// ServiceLogs is GET /services/{id}/logs: the stream of the service's
// tasks' lines, multiplexed (stdcopy) unless the service has a TTY. The
// caller closes it; cancelling ctx ends it.
func (c *Client) ServiceLogs(ctx context.Context, id string, o ServiceLogsOptions) (io.ReadCloser, error) {
	p, err := idPath("service", "/services", id)
	if err != nil {
		return nil, err
	}
	q, err := o.query(time.Now())
	if err != nil {
		return nil, fmt.Errorf(`invalid value for "since": %w`, err)
	}
	if o.Tail == "all" || o.Tail == "" {
		q.Del("tail")
	}
	return c.stream(ctx, Request{Method: "GET", Path: p + "/logs", Query: q})
}

// query is the logs query; tail is always set (ServiceLogs drops "all",
// as the moby client does for services but not for tasks).
func (o ServiceLogsOptions) query(now time.Time) (url.Values, error) {
	q := url.Values{}
	for _, p := range []struct {
		on   bool
		name string
	}{{o.Stdout, "stdout"}, {o.Stderr, "stderr"}, {o.Timestamps, "timestamps"}, {o.Details, "details"}, {o.Follow, "follow"}} {
		if p.on {
			q.Set(p.name, "1")
		}
	}
	if o.Since != "" {
		ts, err := timestampParam(o.Since, now)
		if err != nil {
			return nil, err
		}
		q.Set("since", ts)
	}
	q.Set("tail", o.Tail)
	return q, nil
}

// checkServiceSpec refuses the specs the moby client refuses before
// sending them: a task of two kinds, or of a kind its runtime is not.
func checkServiceSpec(s swarm.ServiceSpec) error {
	tt := s.TaskTemplate
	switch {
	case tt.ContainerSpec != nil && tt.PluginSpec != nil:
		return errors.New("must not specify both a container spec and a plugin spec in the task template")
	case tt.PluginSpec != nil && tt.Runtime != swarm.RuntimePlugin:
		return errors.New("mismatched runtime with plugin spec")
	case tt.ContainerSpec != nil && tt.Runtime != "" && tt.Runtime != swarm.RuntimeContainer:
		return errors.New("mismatched runtime with container spec")
	}
	return nil
}

// serviceAuthHeader is X-Registry-Auth: auth, or no header for "".
func serviceAuthHeader(auth string) Header {
	if auth == "" {
		return nil
	}
	return Header{"X-Registry-Auth": {auth}}
}
