package worker

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/overlaynet/dns"
	"github.com/shoal-project/shoal/overlaynet/lb"
	"github.com/shoal-project/shoal/overlaynet/peers"
)

// Service discovery on overlay networks: every node learns the services on
// the networks it has tasks on from the endpoint gossip (overlaynet/peers),
// as libnetwork's endpoint_table: each node announces its tasks' endpoints
// with the task's name, its service's name, ID, VIP, endpoint mode and the
// task's aliases. The source is gossip rather than the dispatcher because
// an endpoint is announced when the task's container is attached and
// withdrawn as soon as it stops (on its node, without a round trip through
// the managers' raft store), and a dead node's endpoints are withdrawn by
// the gossip's failure detection.
//
// Each overlay task gets an embedded resolver at 127.0.0.11 in its network
// namespace (overlaynet/dns) and a VIP table (overlaynet/lb) that DNATs each
// VIP of a service on its networks to the service's task addresses, kept in
// sync whenever the gossip table changes.

// lbTable is the name of the VIP table in a task's namespace.
const lbTable = "shoal-vips"

// EndpointSource is the node's view of the overlay's endpoints;
// *peers.Peers is one.
type EndpointSource interface {
	Endpoints(ctx context.Context, vnis ...uint32) ([]peers.Endpoint, error)
}

// Discovery serves DNS and VIP load balancing to the node's overlay tasks.
type Discovery struct {
	// Source is the gossip table; set before the first Add.
	Source EndpointSource
	// Upstreams are the host's resolvers, for names that are not the
	// cluster's.
	Upstreams []string

	ctx  context.Context // bounds the resolvers
	kick chan struct{}
	log  *slog.Logger
	// syncMu serialises the VIP table syncs (Run's and Add's), which own
	// discoTask.applied.
	syncMu sync.Mutex

	mu    sync.Mutex
	tasks map[string]*discoTask
}

// discoTask is one task's resolver and VIP table.
type discoTask struct {
	vnis    []uint32
	serving bool // as last announced
	stop    func()
	lb      *lb.Table
	applied map[netip.Addr][]netip.Addr // nil until the first sync
}

// NewDiscovery returns a Discovery forwarding other names to upstreams;
// its resolvers stop when ctx ends (Run's context should be the same) and
// Run applies endpoint changes.
func NewDiscovery(ctx context.Context, upstreams []string) *Discovery {
	return &Discovery{ctx: ctx, Upstreams: upstreams, kick: make(chan struct{}, 1), log: slog.Default(),
		tasks: map[string]*discoTask{}}
}

// Changed tells Run that the endpoints may have changed; it never blocks
// (peers.Config.Changed).
func (d *Discovery) Changed() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run brings every task's VIP table up to date after each change until ctx
// ends, then stops the resolvers.
func (d *Discovery) Run(ctx context.Context) {
	defer func() {
		d.mu.Lock()
		ts := d.tasks
		d.tasks = map[string]*discoTask{}
		d.mu.Unlock()
		for _, t := range ts {
			t.stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		}
		d.syncAll(ctx)
	}
}

// syncAll programs each task's VIP table that differs from what the
// gossip says.
func (d *Discovery) syncAll(ctx context.Context) {
	d.mu.Lock()
	ids := slices.Collect(maps.Keys(d.tasks))
	d.mu.Unlock()
	for _, id := range ids {
		d.syncTask(ctx, id)
	}
}

func (d *Discovery) syncTask(ctx context.Context, id string) {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	d.mu.Lock()
	t := d.tasks[id]
	d.mu.Unlock()
	if t == nil {
		return
	}
	eps, err := d.Source.Endpoints(ctx, t.vnis...)
	if err != nil {
		return // ctx ended
	}
	want := map[netip.Addr][]netip.Addr{}
	// A VIP seen once stays with no backends when its last task goes: a
	// connection to it is then refused at once instead of timing out.
	for vip := range t.applied {
		want[vip] = nil
	}
	for _, e := range eps {
		vip, ok1 := netip.AddrFromSlice(e.Task.VIP.To4())
		addr, ok2 := netip.AddrFromSlice(e.IP.To4())
		if !ok1 || !ok2 || e.Task.DNSRR || !e.Task.Serving {
			continue
		}
		if !slices.Contains(want[vip], addr) {
			want[vip] = append(want[vip], addr)
		}
	}
	for _, bs := range want {
		slices.SortFunc(bs, func(a, b netip.Addr) int { return a.Compare(b) })
	}
	if t.applied != nil && maps.EqualFunc(want, t.applied, slices.Equal) {
		return
	}
	d.mu.Lock()
	current := d.tasks[id] == t
	d.mu.Unlock()
	if !current {
		return // removed meanwhile: its namespace may be gone
	}
	if err := t.lb.Sync(want); err != nil {
		d.log.Warn("worker: VIP table of task", "task", id, "err", err)
		return
	}
	t.applied = want
}

// Add starts the resolver of task t in its namespace at netnsPath and
// programs its VIP table; a task already served is left as it is.
func (d *Discovery) Add(ctx context.Context, t *api.Task, netnsPath string) error {
	d.mu.Lock()
	_, ok := d.tasks[t.GetId()]
	d.mu.Unlock()
	if ok {
		return nil
	}
	var vnis []uint32
	for _, a := range t.GetNetworks() {
		// The ingress network carries the routing mesh only: no names
		// or VIPs on it, as Swarm's.
		if !a.GetNetwork().GetSpec().GetIngress() {
			vnis = append(vnis, a.GetNetwork().GetVni())
		}
	}
	tab, err := lb.New(netnsPath, lbTable)
	if err != nil {
		return fmt.Errorf("discovery of task %s: %w", t.GetId(), err)
	}
	// The resolver lives as long as the task is attached (or the node's
	// overlay runs), not as the request that attached it.
	stop, err := dns.Start(d.ctx, netnsPath, dns.Config{Asker: t.GetId(), Lookup: d, Upstreams: d.Upstreams})
	if err != nil {
		return fmt.Errorf("discovery of task %s: %w", t.GetId(), err)
	}
	dt := &discoTask{vnis: vnis, lb: tab, stop: stop}
	d.mu.Lock()
	if _, ok := d.tasks[t.GetId()]; ok {
		d.mu.Unlock()
		dt.stop()
		return nil
	}
	d.tasks[t.GetId()] = dt
	d.mu.Unlock()
	// At once, so the task starts with its VIPs in place.
	d.syncTask(ctx, t.GetId())
	return nil
}

// Remove stops the resolver of task id; its VIP table goes with its
// namespace.
func (d *Discovery) Remove(id string) {
	d.mu.Lock()
	t := d.tasks[id]
	delete(d.tasks, id)
	d.mu.Unlock()
	if t != nil {
		t.stop()
	}
}

// servingChanges reports whether attached task id is not yet served as
// on says; a task that is not attached is never served.
func (d *Discovery) servingChanges(id string, on bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.tasks[id]
	return t != nil && t.serving != on
}

// setServing records whether attached task id is served.
func (d *Discovery) setServing(id string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := d.tasks[id]; t != nil {
		t.serving = on
	}
}

// ServingNetwork is a Network that serves tasks in service discovery (DNS
// names, VIPs) only while they should get traffic; the task runner tells
// it after each step.
type ServingNetwork interface {
	Serve(ctx context.Context, t *api.Task, on bool) error
}

// serve tells the task's networks whether it should get traffic: while it
// is RUNNING (which a task with a health check is only once healthy; an
// unhealthy one fails) and wanted running, so a task being stopped leaves
// names and VIPs before its container gets the signal.
func (r *taskRunner) serve(ctx context.Context, t *api.Task) {
	sn, ok := r.net.(ServingNetwork)
	if !ok || len(t.GetNetworks()) == 0 {
		return
	}
	on := t.GetStatus().GetState() == api.TaskState_RUNNING && t.GetDesiredState() <= api.TaskState_RUNNING
	if err := sn.Serve(ctx, t, on); err != nil {
		r.log.Warn("worker: serve task in service discovery", "task", t.GetId(), "on", on, "err", err)
	}
}

// Lookup implements dns.Lookup for the task asker, over the endpoints on
// its networks: a service name or a network alias answers with the
// service's VIP (endpoint mode vip) or its tasks' addresses (dnsrr),
// tasks.NAME with the addresses of the service's tasks, a task name with
// its address.
func (d *Discovery) Lookup(ctx context.Context, asker, name string) (dns.Record, bool) {
	d.mu.Lock()
	t := d.tasks[asker]
	d.mu.Unlock()
	if t == nil {
		return dns.Record{}, false
	}
	all, err := d.Source.Endpoints(ctx, t.vnis...)
	if err != nil {
		return dns.Record{}, false
	}
	var eps []peers.Endpoint
	for _, e := range all {
		if e.Task.Serving {
			eps = append(eps, e)
		}
	}
	var vips, addrs []netip.Addr
	add := func(list *[]netip.Addr, ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip.To4()); ok && !slices.Contains(*list, a) {
			*list = append(*list, a)
		}
	}
	if svc, ok := strings.CutPrefix(name, "tasks."); ok {
		for _, e := range eps {
			if svc != "" && (strings.EqualFold(e.Task.Service, svc) || e.Task.ServiceID == svc) {
				add(&addrs, e.IP)
			}
		}
		return dns.Record{Kind: dns.KindTasks, Addrs: addrs}, len(addrs) > 0
	}
	for _, e := range eps {
		// A container on an attachable network has no service, but may
		// have aliases.
		match := (e.Task.Service != "" && (strings.EqualFold(e.Task.Service, name) || e.Task.ServiceID == name)) ||
			slices.ContainsFunc(e.Task.Aliases, func(a string) bool { return strings.EqualFold(a, name) })
		if !match {
			continue
		}
		if e.Task.Service != "" && !e.Task.DNSRR && e.Task.VIP != nil {
			add(&vips, e.Task.VIP)
		} else {
			add(&addrs, e.IP)
		}
	}
	if len(vips) > 0 {
		return dns.Record{Kind: dns.KindVIP, Addrs: vips}, true
	}
	if len(addrs) > 0 {
		return dns.Record{Kind: dns.KindTasks, Addrs: addrs}, true
	}
	for _, e := range eps {
		if e.Task.Name != "" && strings.EqualFold(e.Task.Name, name) {
			add(&addrs, e.IP)
		}
	}
	return dns.Record{Kind: dns.KindContainer, Addrs: addrs}, len(addrs) > 0
}

// taskInfo is what the gossip tells the other nodes about t's endpoint on
// network networkID.
func taskInfo(t *api.Task, networkID string, aliases []string) peers.TaskInfo {
	ti := peers.TaskInfo{Name: t.GetAnnotations().GetName(), Service: t.GetServiceAnnotations().GetName(),
		ServiceID: t.GetServiceId(), DNSRR: t.GetEndpoint().GetSpec().GetMode() == api.EndpointSpec_DNSRR,
		Aliases: aliases}
	if slices.ContainsFunc(t.GetNetworks(), func(a *api.NetworkAttachment) bool {
		return a.GetNetwork().GetId() == networkID && a.GetNetwork().GetSpec().GetIngress()
	}) {
		// On the ingress network: the ports its service publishes
		// through the mesh (as allocated), no VIP.
		for _, p := range t.GetEndpoint().GetPorts() {
			if p.GetPublishMode() != api.PortConfig_INGRESS || p.GetPublishedPort() > 65535 || p.GetTargetPort() > 65535 {
				continue
			}
			ti.Ports = append(ti.Ports, peers.Port{Protocol: strings.ToLower(p.GetProtocol().String()),
				Published: uint16(p.GetPublishedPort()), Target: uint16(p.GetTargetPort())})
		}
		return ti
	}
	if !ti.DNSRR {
		for _, v := range t.GetEndpoint().GetVirtualIps() {
			if v.GetNetworkId() != networkID {
				continue
			}
			if ip, _, err := net.ParseCIDR(v.GetAddr()); err == nil && ip.To4() != nil {
				ti.VIP = ip.To4()
			}
		}
	}
	return ti
}

// useEmbeddedDNS points the resolv.conf of an overlay task's container at
// its resolver (which forwards other names to the host's), with ndots:0 as
// Docker writes it.
func useEmbeddedDNS(cfg *containers.Config) {
	cfg.DNS = []string{dns.Address}
	if !slices.ContainsFunc(cfg.DNSOptions, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
		cfg.DNSOptions = append(cfg.DNSOptions, "ndots:0")
	}
}
