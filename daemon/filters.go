package daemon

import (
	"encoding/json"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
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

// validContainerFilters are the keys /containers/json accepts.
var validContainerFilters = []string{"id", "name", "status", "label", "ancestor", "exited", "network", "health"}

// checkHealthFilter refuses a health value dockerd does not know.
func checkHealthFilter(f filters) error {
	for _, v := range f["health"] {
		switch v {
		case "none", containers.HealthStarting, containers.HealthHealthy, containers.HealthUnhealthy:
		default:
			return badRequest("Unrecognised filter value for health: %s", v)
		}
	}
	return nil
}

func (f filters) matchContainer(c containers.Container) bool {
	return f.any("id", func(v string) bool { return strings.HasPrefix(c.ID, v) }) &&
		f.any("name", func(v string) bool {
			return strings.Contains(strings.TrimPrefix(c.Name, "/"), strings.TrimPrefix(v, "/"))
		}) &&
		f.any("status", func(v string) bool { return string(stateOf(c.State)) == v }) &&
		f.any("ancestor", func(v string) bool {
			return c.Config.Image == v || strings.HasPrefix(c.ImageID, v) || strings.HasPrefix(strings.TrimPrefix(c.ImageID, "sha256:"), v) ||
				!strings.Contains(v, ":") && c.Config.Image == v+":latest"
		}) &&
		f.any("exited", func(v string) bool {
			n, err := strconv.Atoi(v)
			return err == nil && c.State.Status == "exited" && c.State.ExitCode == n
		}) &&
		f.any("network", func(v string) bool { return c.Config.NetworkMode == v }) &&
		f.any("health", func(v string) bool {
			h := "none"
			if c.State.Health != nil {
				h = c.State.Health.Status
			}
			return h == v
		}) &&
		f.labels(c.Config.Labels)
}

// validImageFilters are the keys /images/json accepts.
var validImageFilters = []string{"reference", "dangling", "label"}

func (f filters) matchImage(img images.Image) bool {
	return f.any("dangling", func(v string) bool { return (v == "true" || v == "1") == (len(img.RepoTags) == 0) }) &&
		f.any("reference", func(v string) bool {
			for _, t := range img.RepoTags {
				repo := t
				if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
					repo = t[:i]
				}
				if ok, _ := path.Match(v, t); ok {
					return true
				}
				if ok, _ := path.Match(v, repo); ok {
					return true
				}
			}
			return false
		}) &&
		f.labels(img.Config.Config.Labels)
}
