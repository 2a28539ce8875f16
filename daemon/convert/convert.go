// Package convert translates between shoal's cluster objects in api/
// (protobuf: objects.proto, types.proto, control.proto) and the Docker Engine
// API's swarm types in github.com/moby/moby/api/types/swarm, so that the
// daemon's REST routes /swarm, /nodes, /services and /tasks speak Docker's
// JSON. moby's api module has no filters package, so filters are the decoded
// `filters` query parameter as a plain map[string][]string (see ParseFilters).
//
// Everything here is a pure function: no I/O, no clock, no store.
//
// Direction swarm -> api (what clients send) is strict: a field Docker
// defines that shoal cannot represent and that changes behaviour (mounts with
// options, healthchecks, capabilities, jobs, ...) is refused with an error
// matching ErrUnsupported, never dropped silently; an enum value shoal does
// not know is refused as invalid. Both kinds of error also match
// api.ErrInvalidArgument, so the daemon answers 400 as dockerd does. Values
// that are representable but wrong (negative replicas do not exist, but a
// negative CPU limit or a bad constraint do) are left to the control API,
// which validates specs (manager/controlapi).
//
// Direction api -> swarm (what the daemon answers) cannot fail: every api
// field has a Docker counterpart.
package convert

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrUnsupported is matched (errors.Is) by every error about a Docker field
// or value that shoal has no way to represent.
var ErrUnsupported = errors.New("not supported")

// requestError is a refusal of client input: it matches api.ErrInvalidArgument
// (HTTP 400) and, when unsupported is set, ErrUnsupported.
type requestError struct {
	msg         string
	unsupported bool
}

func (e *requestError) Error() string { return e.msg }

func (e *requestError) Is(target error) bool {
	return target == api.ErrInvalidArgument || (e.unsupported && target == ErrUnsupported)
}

// notSupported reports a Docker feature shoal lacks; the message should read
// "X is not supported" / "X are not supported".
func notSupported(format string, args ...any) error {
	return &requestError{msg: fmt.Sprintf(format, args...), unsupported: true}
}

// invalid reports a value that is not one of the values Docker defines.
func invalid(format string, args ...any) error {
	return &requestError{msg: fmt.Sprintf(format, args...)}
}

// MetaToSwarm is an object's version and times as Docker shows them. Unset
// times stay the zero time (not 1970).
func MetaToSwarm(m *api.Meta) swarm.Meta {
	return swarm.Meta{
		Version:   swarm.Version{Index: m.GetVersion()},
		CreatedAt: timeToSwarm(m.GetCreatedAt()),
		UpdatedAt: timeToSwarm(m.GetUpdatedAt()),
	}
}

func timeToSwarm(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// timePtrToSwarm is nil for an unset or zero timestamp, as dockerd leaves
// UpdateStatus.StartedAt/CompletedAt out.
func timePtrToSwarm(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return nil
	}
	t := ts.AsTime()
	return &t
}

// durationPtrToAPI keeps "unset" (nil) apart from zero.
func durationPtrToAPI(d *time.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(*d)
}

// nonZeroDurationToAPI is nil for 0: Docker uses 0 for "the default" in
// fields that are not pointers (UpdateConfig.Monitor, Delay).
func nonZeroDurationToAPI(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func durationToSwarm(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func durationPtrToSwarm(d *durationpb.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := d.AsDuration()
	return &v
}

// annotationsToAPI copies name and labels; an empty label map stays empty.
func annotationsToAPI(a swarm.Annotations) *api.Annotations {
	return &api.Annotations{Name: a.Name, Labels: copyMap(a.Labels)}
}

// annotationsToSwarm always gives a non-nil label map: Docker's Labels field
// has no omitempty and docker answers {} rather than null.
func annotationsToSwarm(a *api.Annotations) swarm.Annotations {
	labels := copyMap(a.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	return swarm.Annotations{Name: a.GetName(), Labels: labels}
}

// copyMap is nil for an empty map.
func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// copyStrings is nil for an empty slice.
func copyStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

// parsePrefix reads an address that api keeps as a string: CIDR notation
// (10.0.0.2/24, host bits kept) or a bare address (a full-length prefix).
func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}
