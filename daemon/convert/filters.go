package convert

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/orchestrator"
)

// ParseFilters decodes the `filters` query parameter in both forms clients
// send: {"key":{"value":true}} (docker since API 1.22, moby's client.Filters)
// and {"key":["value"]} (older clients, scripts). As in dockerd every value
// named in the first form counts, whatever its boolean. Values come back
// sorted; "" gives an empty map.
func ParseFilters(raw string) (map[string][]string, error) {
	out := map[string][]string{}
	if strings.TrimSpace(raw) == "" {
		return out, nil
	}
	var sets map[string]map[string]bool
	if err := json.Unmarshal([]byte(raw), &sets); err == nil {
		for k, vs := range sets {
			list := make([]string, 0, len(vs))
			for v := range vs {
				list = append(list, v)
			}
			sort.Strings(list)
			out[k] = list
		}
		return out, nil
	}
	var lists map[string][]string
	if err := json.Unmarshal([]byte(raw), &lists); err != nil {
		return nil, invalid(`invalid filters %q: want {"key":{"value":true}} or {"key":["value"]}`, raw)
	}
	for k, vs := range lists {
		out[k] = append([]string(nil), vs...)
	}
	return out, nil
}

// checkKeys refuses a key outside accepted with dockerd's message.
func checkKeys(f map[string][]string, accepted ...string) error {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ok := false
		for _, a := range accepted {
			ok = ok || a == k
		}
		if !ok {
			return invalid("invalid filter '%s'", k)
		}
	}
	return nil
}

// labelMap turns label filter values ("k=v" or "k", which asks only for the
// key) into the map the control API matches.
func labelMap(vals []string) map[string]string {
	if len(vals) == 0 {
		return nil
	}
	out := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, _ := strings.Cut(v, "=")
		out[k] = val
	}
	return out
}

func matchLabels(have, want map[string]string) bool {
	for k, v := range want {
		got, ok := have[k]
		if !ok || (v != "" && got != v) {
			return false
		}
	}
	return true
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// matchRuntime is Docker's `runtime` filter: every shoal task runs a
// container.
func matchRuntime(runtimes []string) bool {
	if len(runtimes) == 0 {
		return true
	}
	for _, r := range runtimes {
		if r == string(swarm.RuntimeContainer) {
			return true
		}
	}
	return false
}

// NodeFilters are the filters of GET /nodes: Request goes to the control
// API's ListNodes (id prefixes, node.label, role); Match checks, per node,
// what the control API cannot (names by prefix, engine labels, membership).
type NodeFilters struct {
	Request *api.ListNodesRequest_Filters
	// NamePrefixes match the node's spec name or hostname, as in dockerd.
	NamePrefixes []string
	// EngineLabels is Docker's `label` filter: engine labels. Node labels
	// are `node.label`, which is in Request.
	EngineLabels map[string]string
	// Memberships: shoal nodes are all "accepted" members.
	Memberships []string
}

// NodeListFilters reads Docker's node filters: id, name, label, node.label,
// role, membership.
func NodeListFilters(f map[string][]string) (*NodeFilters, error) {
	if err := checkKeys(f, "id", "name", "label", "node.label", "role", "membership"); err != nil {
		return nil, err
	}
	out := &NodeFilters{
		Request:      &api.ListNodesRequest_Filters{IdPrefixes: copyStrings(f["id"]), Labels: labelMap(f["node.label"])},
		NamePrefixes: copyStrings(f["name"]),
		EngineLabels: labelMap(f["label"]),
	}
	for _, r := range f["role"] {
		if r == "" {
			continue
		}
		role, err := NodeRoleFromSwarm(swarm.NodeRole(strings.ToLower(r)))
		if err != nil {
			return nil, invalid("invalid role filter: '%s'", r)
		}
		out.Request.Roles = append(out.Request.Roles, role)
	}
	for _, m := range f["membership"] {
		switch strings.ToLower(m) {
		case "accepted", "pending":
			out.Memberships = append(out.Memberships, strings.ToLower(m))
		case "":
		default:
			return nil, invalid("invalid membership filter: '%s'", m)
		}
	}
	return out, nil
}

// Match reports whether n passes the filters Request could not carry.
func (f *NodeFilters) Match(n *api.Node) bool {
	if f == nil {
		return true
	}
	if len(f.NamePrefixes) > 0 && !hasPrefix(n.GetSpec().GetAnnotations().GetName(), f.NamePrefixes) && !hasPrefix(n.GetDescription().GetHostname(), f.NamePrefixes) {
		return false
	}
	accepted := len(f.Memberships) == 0
	for _, m := range f.Memberships {
		accepted = accepted || m == "accepted"
	}
	return accepted && matchLabels(n.GetDescription().GetEngine().GetLabels(), f.EngineLabels)
}

// ServiceFilters are the filters of GET /services: Request goes to the
// control API's ListServices (id prefixes, labels); Match checks names by
// prefix, mode and runtime.
type ServiceFilters struct {
	Request      *api.ListServicesRequest_Filters
	NamePrefixes []string
	// Modes are Docker mode names: replicated, global (replicated-job and
	// global-job match nothing: shoal has no jobs).
	Modes    []string
	Runtimes []string
}

// ServiceListFilters reads Docker's service filters: id, name, label, mode,
// runtime.
func ServiceListFilters(f map[string][]string) (*ServiceFilters, error) {
	if err := checkKeys(f, "id", "name", "label", "mode", "runtime"); err != nil {
		return nil, err
	}
	return &ServiceFilters{
		Request:      &api.ListServicesRequest_Filters{IdPrefixes: copyStrings(f["id"]), Labels: labelMap(f["label"])},
		NamePrefixes: copyStrings(f["name"]),
		Modes:        copyStrings(f["mode"]),
		Runtimes:     copyStrings(f["runtime"]),
	}, nil
}

// Match reports whether s passes the filters Request could not carry.
func (f *ServiceFilters) Match(s *api.Service) bool {
	if f == nil {
		return true
	}
	if len(f.NamePrefixes) > 0 && !hasPrefix(s.GetSpec().GetAnnotations().GetName(), f.NamePrefixes) {
		return false
	}
	if len(f.Modes) > 0 {
		mode, ok := ServiceMode(s.GetSpec()), false
		for _, m := range f.Modes {
			ok = ok || m == mode
		}
		if !ok {
			return false
		}
	}
	return matchRuntime(f.Runtimes)
}

// TaskFilters are the filters of GET /tasks: Request goes to the control
// API's ListTasks (id prefixes, service IDs, node IDs, desired states); Match
// checks names by prefix, labels, runtime and `_up-to-date`. The daemon
// resolves `service` names and `node` names or "self" to IDs first, as
// dockerd does; the shoal and docker CLIs already send IDs.
type TaskFilters struct {
	Request      *api.ListTasksRequest_Filters
	NamePrefixes []string
	// Labels match the labels of the task's service, as in swarmkit.
	Labels   map[string]string
	Runtimes []string
	// UpToDate keeps only tasks made from their service's current spec
	// (the CLI's progress display asks for it).
	UpToDate bool
}

// TaskListFilters reads Docker's task filters: id, name, label, service,
// node, desired-state (any state name: running, shutdown, accepted, ...),
// runtime and the internal _up-to-date.
func TaskListFilters(f map[string][]string) (*TaskFilters, error) {
	if err := checkKeys(f, "id", "name", "label", "service", "node", "desired-state", "runtime", "_up-to-date"); err != nil {
		return nil, err
	}
	out := &TaskFilters{
		Request: &api.ListTasksRequest_Filters{
			IdPrefixes: copyStrings(f["id"]),
			ServiceIds: copyStrings(f["service"]),
			NodeIds:    copyStrings(f["node"]),
		},
		NamePrefixes: copyStrings(f["name"]),
		Labels:       labelMap(f["label"]),
		Runtimes:     copyStrings(f["runtime"]),
		UpToDate:     len(f["_up-to-date"]) > 0,
	}
	for _, s := range f["desired-state"] {
		if s == "" {
			continue
		}
		st, ok := TaskStateFromSwarm(swarm.TaskState(strings.ToLower(s)))
		if !ok {
			return nil, invalid("invalid desired-state filter: '%s'", s)
		}
		out.Request.DesiredStates = append(out.Request.DesiredStates, st)
	}
	return out, nil
}

// Match reports whether t passes the filters Request could not carry. svc is
// t's service (nil if it is gone: then an _up-to-date filter drops t).
func (f *TaskFilters) Match(t *api.Task, svc *api.Service) bool {
	if f == nil {
		return true
	}
	if len(f.NamePrefixes) > 0 && !hasPrefix(taskName(t), f.NamePrefixes) {
		return false
	}
	// Up to date means made from the service's current task template, as
	// swarmkit's !IsTaskDirty: a scale changes the spec version but keeps
	// the template, and the tasks it did not touch stay up to date.
	if f.UpToDate && (svc == nil || orchestrator.Dirty(svc, t)) {
		return false
	}
	return matchLabels(t.GetServiceAnnotations().GetLabels(), f.Labels) && matchRuntime(f.Runtimes)
}

// taskName is the name swarmkit filters tasks by: the task's own name, else
// service.slot.id (service.node.id for a global task).
func taskName(t *api.Task) string {
	if n := t.GetAnnotations().GetName(); n != "" {
		return n
	}
	slot := t.GetNodeId()
	if t.GetSlot() != 0 {
		slot = strconv.FormatUint(t.GetSlot(), 10)
	}
	return t.GetServiceAnnotations().GetName() + "." + slot + "." + t.GetId()
}
