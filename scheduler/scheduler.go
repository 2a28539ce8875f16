// Package scheduler decides which node runs each pending task.
//
// Schedule is a pure function: it reads a Snapshot of the nodes and a list of
// pending tasks and returns decisions and, for each task it could not place,
// the reason. It starts no goroutines and reads no clock, store or network, so
// the manager's loop around it only snapshots, calls and writes one batch, and
// its tests are tables, not waits. See docs/cluster.md for the pipeline.
package scheduler

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// NodeInfo is one node as the scheduler sees it.
type NodeInfo struct {
	Node *api.Node
	// ServiceTasks counts, per service ID, the node's tasks that occupy it:
	// assigned and not yet terminal (the caller decides; Swarm counts tasks
	// whose desired state is RUNNING or earlier).
	ServiceTasks map[string]int
	// Tasks is the total of such tasks on the node, of every service.
	Tasks int
	// Backlog counts those tasks that are still wanted and have not
	// reached RUNNING: queued in the node's start window (the agent holds
	// them ACCEPTED until it admits them) or being started. A node that
	// starts slowly has a longer one.
	Backlog int
	// Reserved is the sum of those tasks' resource reservations.
	Reserved *api.Resources
	// HostPorts are the ports those tasks publish in host mode.
	HostPorts []HostPort
	// RecentFailures counts, per service ID, the node's tasks of that
	// service that failed or were rejected lately (CountFailures).
	RecentFailures map[string]int
}

// HostPort is a port published on the node itself (publish mode host): two
// tasks cannot publish the same one on one node.
type HostPort struct {
	Protocol api.PortConfig_Protocol
	Port     uint32
}

// hostPorts returns the host-mode ports task t publishes.
func hostPorts(t *api.Task) []HostPort {
	var out []HostPort
	for _, p := range t.GetEndpoint().GetPorts() {
		if p.GetPublishMode() == api.PortConfig_HOST && p.GetPublishedPort() != 0 {
			out = append(out, HostPort{p.GetProtocol(), p.GetPublishedPort()})
		}
	}
	return out
}

// Snapshot is the cluster state a scheduling pass reads. Schedule never
// modifies it. Services are not needed: every task carries a copy of its
// service's task template (placement, reservations).
type Snapshot struct {
	Nodes []NodeInfo
}

// Result is what one pass decided.
type Result struct {
	// Decisions maps task ID to the node ID chosen for it.
	Decisions map[string]string
	// Unplaced maps task ID to why no node was chosen, in the form Swarm
	// users know: "no suitable node (insufficient resources on 3 nodes;
	// scheduling constraints not satisfied on 2 nodes)".
	Unplaced map[string]string
}

// The filters, in the order they are applied. A node that fails several is
// counted once, for the first.
const (
	filterReady = iota
	filterResources
	filterConstraints
	filterPlatform
	filterHostPorts
	filterMaxReplicas
	numFilters
)

var filterReasons = [numFilters]string{
	filterReady:       "%s not available for new tasks",
	filterResources:   "insufficient resources on %s",
	filterConstraints: "scheduling constraints not satisfied on %s",
	filterPlatform:    "unsupported platform on %s",
	filterHostPorts:   "host-mode port already in use on %s",
	filterMaxReplicas: "max replicas per node reached on %s",
}

// nodeState is a node plus what this pass has added to it.
type nodeState struct {
	info     *NodeInfo
	id       string
	ready    bool // READY and ACTIVE
	capCPU   int64
	capMem   int64
	cpu, mem int64 // reserved, including this pass's decisions
	total    int   // tasks, including this pass's decisions
	backlog  int   // tasks not yet running, including this pass's decisions
	placed   map[string]int
	ports    map[HostPort]bool // host ports in use, made on first need
}

func (n *nodeState) portsFree(want []HostPort) bool {
	if len(want) == 0 {
		return true
	}
	if n.ports == nil {
		n.ports = make(map[HostPort]bool, len(n.info.HostPorts))
		for _, p := range n.info.HostPorts {
			n.ports[p] = true
		}
	}
	for _, p := range want {
		if n.ports[p] {
			return false
		}
	}
	return true
}

func (n *nodeState) serviceTasks(svc string) int {
	return n.info.ServiceTasks[svc] + n.placed[svc]
}

func (n *nodeState) fits(cpu, mem int64) bool {
	return (cpu <= 0 || n.cpu+cpu <= n.capCPU) && (mem <= 0 || n.mem+mem <= n.capMem)
}

func (n *nodeState) add(svc string, cpu, mem int64, ports []HostPort) {
	for _, p := range ports {
		n.ports[p] = true // portsFree made the map
	}
	if n.placed == nil {
		n.placed = make(map[string]int)
	}
	n.placed[svc]++
	n.total++
	n.backlog++
	n.cpu += max(cpu, 0)
	n.mem += max(mem, 0)
}

// group is tasks of one service made from one spec: they share filters and a
// placement tree, so they are placed in one pass.
type group struct {
	service string
	spec    *api.TaskSpec
	ports   []HostPort
	tasks   []*api.Task
}

// Schedule places pending tasks on nodes.
//
// The filters, in order: ready and active, resources, constraints, platform,
// host-mode ports, max replicas per node.
//
// Tasks that already name a node (global services' tasks) are checked against
// that node's filters first, so they claim resources before tasks that could
// go anywhere. The rest are grouped by service and spec version (and equal
// placement and reservations) in order of first appearance; each group goes
// through the filters once and is then placed task by task onto the eligible
// node with the fewest recent failures of the service (a node that lacks the
// image, say, is tried last), then the fewest tasks of the service, then the
// fewest tasks overall,
// then the smallest node ID, with placement preferences as the upper levels
// of that choice (spread over label values first). Counts and reservations
// are updated after every decision, so a later task sees earlier ones.
func Schedule(snap Snapshot, pending []*api.Task) Result {
	res := Result{Decisions: make(map[string]string, len(pending)), Unplaced: make(map[string]string)}
	nodes := make([]nodeState, len(snap.Nodes))
	for i := range snap.Nodes {
		info := &snap.Nodes[i]
		n := info.Node
		nodes[i] = nodeState{
			info: info,
			id:   n.GetId(),
			ready: n.GetStatus().GetState() == api.NodeStatus_READY &&
				n.GetSpec().GetAvailability() == api.NodeSpec_ACTIVE,
			capCPU:  n.GetDescription().GetResources().GetNanoCpus(),
			capMem:  n.GetDescription().GetResources().GetMemoryBytes(),
			cpu:     info.Reserved.GetNanoCpus(),
			mem:     info.Reserved.GetMemoryBytes(),
			total:   info.Tasks,
			backlog: info.Backlog,
		}
	}

	var groups []*group
	index := make(map[groupKey][]*group)
	var byID map[string]*nodeState
	for _, t := range pending {
		if t == nil {
			continue
		}
		if t.GetNodeId() != "" {
			if byID == nil {
				byID = make(map[string]*nodeState, len(nodes))
				for i := range nodes {
					byID[nodes[i].id] = &nodes[i]
				}
			}
			placePreset(byID, t, &res)
			continue
		}
		k := groupKey{t.GetServiceId(), t.GetSpecVersion()}
		var g *group
		for _, cand := range index[k] {
			if sameSchedulingSpec(cand.spec, t.GetSpec()) && slices.Equal(cand.ports, hostPorts(t)) {
				g = cand
				break
			}
		}
		if g == nil {
			g = &group{service: t.GetServiceId(), spec: t.GetSpec(), ports: hostPorts(t)}
			index[k] = append(index[k], g)
			groups = append(groups, g)
		}
		g.tasks = append(g.tasks, t)
	}
	for _, g := range groups {
		scheduleGroup(nodes, g, &res)
	}
	return res
}

type groupKey struct {
	service string
	version uint64
}

// sameSchedulingSpec reports whether two task specs place the same way; it
// guards against callers that leave spec_version unset.
func sameSchedulingSpec(a, b *api.TaskSpec) bool {
	if a == b {
		return true
	}
	return proto.Equal(a.GetPlacement(), b.GetPlacement()) &&
		proto.Equal(a.GetResources().GetReservations(), b.GetResources().GetReservations())
}

// filters is one spec's parsed placement.
type filters struct {
	constraints []Constraint
	prefs       []preference
	platforms   []*api.Platform
	maxReplicas uint64
	cpu, mem    int64
	ports       []HostPort
}

func parseFilters(spec *api.TaskSpec, ports []HostPort) (filters, error) {
	p := spec.GetPlacement()
	f := filters{
		ports:       ports,
		platforms:   p.GetPlatforms(),
		maxReplicas: p.GetMaxReplicas(),
		cpu:         spec.GetResources().GetReservations().GetNanoCpus(),
		mem:         spec.GetResources().GetReservations().GetMemoryBytes(),
	}
	var err error
	if f.constraints, err = ParseConstraints(p.GetConstraints()); err != nil {
		return f, err
	}
	for _, pp := range p.GetPreferences() {
		pr, err := parsePreference(pp)
		if err != nil {
			return f, err
		}
		f.prefs = append(f.prefs, pr)
	}
	return f, nil
}

// check runs the filters in order on n for a task of service svc and returns
// the first that fails, or -1.
func (f *filters) check(n *nodeState, svc string) int {
	switch {
	case !n.ready:
		return filterReady
	case !n.fits(f.cpu, f.mem):
		return filterResources
	case !f.matchConstraints(n.info.Node):
		return filterConstraints
	case !platformOK(f.platforms, n.info.Node.GetDescription().GetPlatform()):
		return filterPlatform
	case !n.portsFree(f.ports):
		return filterHostPorts
	case f.maxReplicas > 0 && uint64(n.serviceTasks(svc)) >= f.maxReplicas:
		return filterMaxReplicas
	}
	return -1
}

// checkDynamic re-runs only the filters that this pass's own decisions can
// change: resources, host ports and max replicas.
func (f *filters) checkDynamic(n *nodeState, svcTasks int) int {
	switch {
	case !n.fits(f.cpu, f.mem):
		return filterResources
	case !n.portsFree(f.ports):
		return filterHostPorts
	case f.maxReplicas > 0 && uint64(svcTasks) >= f.maxReplicas:
		return filterMaxReplicas
	}
	return -1
}

func (f *filters) matchConstraints(n *api.Node) bool {
	for i := range f.constraints {
		if !f.constraints[i].Match(n) {
			return false
		}
	}
	return true
}

func platformOK(want []*api.Platform, have *api.Platform) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		if (w.GetOs() == "" || strings.EqualFold(w.GetOs(), have.GetOs())) &&
			(w.GetArchitecture() == "" || normArch(w.GetArchitecture()) == normArch(have.GetArchitecture())) {
			return true
		}
	}
	return false
}

// normArch folds the names uname and Go use for the same architecture.
func normArch(a string) string {
	switch a = strings.ToLower(a); a {
	case "x86_64", "x86-64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return a
}

func placePreset(byID map[string]*nodeState, t *api.Task, res *Result) {
	n := byID[t.GetNodeId()]
	if n == nil {
		res.Unplaced[t.GetId()] = fmt.Sprintf("no suitable node (node %s not found)", t.GetNodeId())
		return
	}
	f, err := parseFilters(t.GetSpec(), hostPorts(t))
	if err != nil {
		res.Unplaced[t.GetId()] = fmt.Sprintf("invalid placement: %v", err)
		return
	}
	if failed := f.check(n, t.GetServiceId()); failed >= 0 {
		var fails [numFilters]int
		fails[failed] = 1
		res.Unplaced[t.GetId()] = explain(fails, 1)
		return
	}
	n.add(t.GetServiceId(), f.cpu, f.mem, f.ports)
	res.Decisions[t.GetId()] = n.id
}

func scheduleGroup(nodes []nodeState, g *group, res *Result) {
	f, err := parseFilters(g.spec, g.ports)
	if err != nil {
		for _, t := range g.tasks {
			res.Unplaced[t.GetId()] = fmt.Sprintf("invalid placement: %v", err)
		}
		return
	}
	var fails [numFilters]int
	cands := make([]*cand, 0, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		if failed := f.check(n, g.service); failed >= 0 {
			fails[failed]++
			continue
		}
		cands = append(cands, &cand{n: n, svc: n.serviceTasks(g.service), fails: n.info.RecentFailures[g.service]})
	}
	root := buildTree(cands, f.prefs)

	for i, t := range g.tasks {
		c := root.pick()
		for c != nil {
			failed := f.checkDynamic(c.n, c.svc)
			if failed < 0 {
				break
			}
			fails[failed]++
			c.leaf.remove(c)
			c = root.pick()
		}
		if c == nil {
			reason := explain(fails, len(nodes))
			for _, rest := range g.tasks[i:] {
				res.Unplaced[rest.GetId()] = reason
			}
			return
		}
		c.n.add(g.service, f.cpu, f.mem, f.ports)
		c.svc++
		c.leaf.placed(c)
		res.Decisions[t.GetId()] = c.n.id
	}
}

// explain renders filter failure counts the way Swarm does, most common
// failure first.
func explain(fails [numFilters]int, numNodes int) string {
	if numNodes == 0 {
		return "no suitable node (the cluster has no nodes)"
	}
	order := make([]int, 0, numFilters)
	for i, n := range fails {
		if n > 0 {
			order = append(order, i)
		}
	}
	if len(order) == 0 {
		return "no suitable node"
	}
	sort.SliceStable(order, func(a, b int) bool { return fails[order[a]] > fails[order[b]] })
	parts := make([]string, len(order))
	for i, fi := range order {
		parts[i] = fmt.Sprintf(filterReasons[fi], plural(fails[fi]))
	}
	return "no suitable node (" + strings.Join(parts, "; ") + ")"
}

func plural(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}
