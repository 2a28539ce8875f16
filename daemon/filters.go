package daemon

import (
	"encoding/json"
	"net/http"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/worker"
)

// filters is the decoded `filters` query parameter: key -> accepted values.
type filters map[string][]string

// parseFilters reads both encodings clients send: {"key":{"value":true}}
// (current) and {"key":["value"]} (API < 1.22 and some scripts).
func parseFilters(raw string, allowed ...string) (filters, error) {
	f := filters{}
	if raw == "" {
		return f, nil
	}
	var modern map[string]map[string]bool
	if err := json.Unmarshal([]byte(raw), &modern); err == nil {
		for k, vs := range modern {
			for v, on := range vs {
				if on {
					f[k] = append(f[k], v)
				}
			}
			sort.Strings(f[k])
		}
	} else {
		var legacy map[string][]string
		if err := json.Unmarshal([]byte(raw), &legacy); err != nil {
			return nil, badRequest("invalid filters: %q is neither {\"key\":{\"value\":true}} nor {\"key\":[\"value\"]}", raw)
		}
		f = legacy
	}
	for k := range f {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return nil, badRequest("invalid filter '%s'", k)
		}
	}
	return f, nil
}

// any reports whether one of the values of key satisfies match; a key not
// given matches everything.
func (f filters) any(key string, match func(v string) bool) bool {
	vs, ok := f[key]
	if !ok {
		return true
	}
	for _, v := range vs {
		if match(v) {
			return true
		}
	}
	return false
}

// labels checks "label" filters: every one given must match (dockerd ANDs them).
func (f filters) labels(labels map[string]string) bool {
	for _, v := range f["label"] {
		k, want, hasValue := strings.Cut(v, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != want {
			return false
		}
	}
	return true
}

// notLabels checks "label!" filters (prune): none given may match.
func (f filters) notLabels(labels map[string]string) bool {
	for _, v := range f["label!"] {
		k, want, hasValue := strings.Cut(v, "=")
		if got, ok := labels[k]; ok && (!hasValue || got == want) {
			return false
		}
	}
	return true
}

// until is the time of the "until" filters (the earliest given), zero
// without one.
func (f filters) until() (time.Time, error) {
	var until time.Time
	for _, v := range f["until"] {
		t, err := parseUntil(v)
		if err != nil {
			return time.Time{}, err
		}
		if until.IsZero() || t.Before(until) {
			until = t
		}
	}
	return until, nil
}

// timeFilters parses the request's filters (only keys allowed) and the time
// of their "until" entries (zero without one), as every prune and the image
// list read them.
func timeFilters(r *http.Request, allowed ...string) (filters, time.Time, error) {
	f, err := parseFilters(r.URL.Query().Get("filters"), allowed...)
	if err != nil {
		return nil, time.Time{}, err
	}
	if err := f.checkBool("dangling"); err != nil {
		return nil, time.Time{}, err
	}
	until, err := f.until()
	if err != nil {
		return nil, time.Time{}, err
	}
	return f, until, nil
}

// checkBool refuses values of a boolean filter other than one of "1",
// "true", "0", "false", or both a true and a false one, as dockerd's
// GetBoolOrDefault does: read as false, they answered as if asked.
func (f filters) checkBool(key string) error {
	vs, ok := f[key]
	if !ok {
		return nil
	}
	yes := slices.Contains(vs, "1") || slices.Contains(vs, "true")
	no := slices.Contains(vs, "0") || slices.Contains(vs, "false")
	if yes == no { // none of them, or both
		return badRequest("invalid filter '%s=%s'", key, vs)
	}
	return nil
}

// createdBefore reports whether created passes an until filter: before it,
// or no filter (until zero).
func createdBefore(created, until time.Time) bool {
	return until.IsZero() || created.Before(until)
}

// parseUntil reads a time as dockerd's filters take it: a duration before
// now ("10m"), RFC 3339 (with or without a zone or fraction), a date, or
// Unix seconds (with a fraction).
func parseUntil(v string) (time.Time, error) {
	if dur, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-dur), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	if sec, err := strconv.ParseFloat(v, 64); err == nil && sec >= 0 {
		return time.Unix(0, int64(sec*1e9)), nil
	}
	return time.Time{}, badRequest("invalid filter 'until=%s'", v)
}

// validContainerFilters are the keys /containers/json accepts.
var validContainerFilters = []string{"id", "name", "status", "label", "ancestor", "exited", "network", "health", "before", "since", "volume", "is-task"}

// createdRange is what the before and since filters leave: creation times
// strictly between since and before (zero: no bound). The filters name a
// container or an image, resolved by created.
type createdRange struct{ since, before time.Time }

func (f filters) createdRange(created func(ref string) (time.Time, error)) (createdRange, error) {
	var r createdRange
	for _, k := range []string{"before", "since"} {
		for _, v := range f[k] {
			t, err := created(v)
			if err != nil {
				return createdRange{}, err
			}
			if k == "before" && (r.before.IsZero() || t.Before(r.before)) {
				r.before = t
			}
			if k == "since" && t.After(r.since) {
				r.since = t
			}
		}
	}
	return r, nil
}

func (r createdRange) admits(t time.Time) bool {
	return (r.before.IsZero() || t.Before(r.before)) && (r.since.IsZero() || t.After(r.since))
}

// checkContainerFilters refuses the values of status, health, exited and
// is-task that dockerd refuses, with its messages: a value that can never
// match would otherwise list nothing without a word.
func checkContainerFilters(f filters) error {
	for _, v := range f["status"] {
		if err := container.ValidateContainerState(container.ContainerState(v)); err != nil {
			return badRequest("invalid filter 'status=%s': %v", v, err)
		}
	}
	for _, v := range f["health"] {
		if err := container.ValidateHealthStatus(container.HealthStatus(v)); err != nil {
			return badRequest("invalid filter 'health=%s': %v", v, err)
		}
	}
	for _, v := range f["exited"] {
		if _, err := strconv.Atoi(v); err != nil {
			return badRequest("invalid filter 'exited=%s': %v", v, err)
		}
	}
	return f.checkBool("is-task")
}

// matchContainer checks the filters of a container's own fields; ancestors
// are the image IDs the ancestor filters select (imageAncestry). The
// network and volume filters need the container's endpoints and mounts:
// matchNetworks and matchMounts.
func (f filters) matchContainer(c containers.Container, ancestors map[string]bool) bool {
	return f.any("id", func(v string) bool { return strings.HasPrefix(c.ID, v) }) &&
		f.any("name", func(v string) bool {
			return strings.Contains(strings.TrimPrefix(c.Name, "/"), strings.TrimPrefix(v, "/"))
		}) &&
		f.any("status", func(v string) bool { return string(stateOf(c.State)) == v }) &&
		(len(f["ancestor"]) == 0 || ancestors[c.ImageID]) &&
		f.any("exited", func(v string) bool {
			n, err := strconv.Atoi(v)
			return err == nil && c.State.Status == "exited" && c.State.ExitCode == n
		}) &&
		f.any("health", func(v string) bool {
			h := "none"
			if c.State.Health != nil {
				h = c.State.Health.Status
			}
			return h == v
		}) &&
		f.any("is-task", func(v string) bool {
			_, task := c.Config.Labels[worker.LabelTaskID]
			return (v == "true" || v == "1") == task
		}) &&
		f.labels(c.Config.Labels)
}

// matchNetworks checks "network" filters as dockerd: the container is on
// a network of that name or whose ID starts with the value.
func (f filters) matchNetworks(eps map[string]*network.EndpointSettings) bool {
	return f.any("network", func(v string) bool {
		for name, ep := range eps {
			if name == v || ep != nil && ep.NetworkID != "" && strings.HasPrefix(ep.NetworkID, v) {
				return true
			}
		}
		return false
	})
}

// imageAncestry resolves the ancestor filters as dockerd: each value names
// an image (tag, digest or ID), and the containers that match are those of
// that image or of an image committed on it. A value naming no image
// selects nothing.
func imageAncestry(store imageService, refs []string) map[string]bool {
	ids := map[string]bool{}
	for _, ref := range refs {
		if img, err := store.Get(ref); err == nil {
			ids[img.ID] = true
		}
	}
	if len(ids) == 0 {
		return ids
	}
	all, err := store.List()
	if err != nil {
		return ids
	}
	for grew := true; grew; {
		grew = false
		for _, img := range all {
			if !ids[img.ID] && img.Parent != "" && ids[img.Parent] {
				ids[img.ID], grew = true, true
			}
		}
	}
	return ids
}

// matchMounts checks "volume" filters against a container's mounts: a
// volume's name or a mount's destination.
func (f filters) matchMounts(mounts []container.MountPoint) bool {
	return f.any("volume", func(v string) bool {
		for _, m := range mounts {
			if m.Type == "volume" && m.Name == v || m.Destination == v {
				return true
			}
		}
		return false
	})
}

// validImageFilters are the keys /images/json accepts.
var validImageFilters = []string{"reference", "dangling", "label", "before", "since", "until"}

func (f filters) matchImage(img images.Image) bool {
	return f.any("dangling", func(v string) bool { return (v == "true" || v == "1") == (len(img.RepoTags) == 0) }) &&
		f.any("reference", func(v string) bool {
			return len(matchingTags(v, img.RepoTags))+len(matchingTags(v, img.RepoDigests)) > 0
		}) &&
		f.labels(img.Config.Config.Labels)
}

// imageRefs are the tags and digests a list shows of img: with reference
// filters only those that match one, as dockerd (`docker images bb` lists
// bb:x, not the busybox:latest the same image also has).
func (f filters) imageRefs(img images.Image) (tags, digests []string) {
	patterns, ok := f["reference"]
	if !ok {
		return img.RepoTags, img.RepoDigests
	}
	for _, p := range patterns {
		tags = append(tags, matchingTags(p, img.RepoTags)...)
		digests = append(digests, matchingTags(p, img.RepoDigests)...)
	}
	return tags, digests
}

// matchingTags are the references (name:tag or name@digest) that pattern
// (a shell pattern) names, whole or by their repository.
func matchingTags(pattern string, refs []string) []string {
	var out []string
	for _, t := range refs {
		repo, _, _ := strings.Cut(t, "@")
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		ok, _ := path.Match(pattern, t)
		if !ok {
			ok, _ = path.Match(pattern, repo)
		}
		if ok {
			out = append(out, t)
		}
	}
	return out
}
