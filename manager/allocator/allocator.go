// Package allocator is the cluster's only allocator of network resources:
// a subnet and a VXLAN ID (VNI) per overlay network, an address per task per
// network and a virtual IP (VIP) per service per network. It is pure, like
// the scheduler: every call is given a snapshot of the store and returns
// what to write; it keeps no state between calls.
//
// The store is the truth. What is in use is derived from the snapshot on
// every call: a subnet and a VNI are held by a network object, a VIP by the
// service whose endpoint lists it, a task address by the task that lists it.
// So nothing is handed out twice across leader changes, restarts and raft
// snapshots, as long as a new allocation is only written over the snapshot
// it was derived from (the store's version checks refuse a stale write) and
// allocations of one kind come from one writer at a time (networks: the
// control API, serialised; addresses and VIPs: the leader's allocator loop).
//
// An address is free again once no object in the store holds it: its task
// was deleted, or its task reached a terminal state its worker reported
// (complete, shutdown, failed, rejected: the container is gone) and
// Allocate released it by clearing the task's addresses. An orphaned task
// (its node was lost; its container may still run) keeps its address until
// the task is deleted.
//
// Choices are deterministic: the lowest free subnet of the pools in order,
// the lowest free VNI from 4096 (as libnetwork, which avoids the 802.1Q
// range), the lowest free address of a subnet after its gateway.
package allocator

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// Defaults of a cluster that names no pool: Swarm's 10.0.0.0/8 in /24s.
const (
	DefaultPool       = "10.0.0.0/8"
	DefaultSubnetSize = 24
)

// VNI range: [FirstVNI, MaxVNI], libnetwork's.
const (
	FirstVNI = 4096
	MaxVNI   = 1<<24 - 1
)

// DriverOverlay is the driver of every cluster network.
const DriverOverlay = "overlay"

// OptionVNIList is the network option Docker shows the VNI in
// (`network inspect`, Options).
const OptionVNIList = "com.docker.network.driver.overlay.vxlanid_list"

// ErrExhausted is the class of every "nothing left" error.
var ErrExhausted = errors.New("exhausted")

// Snapshot is what one allocation pass reads: the store's cluster object
// (for the address pools), networks, services and tasks. The allocator
// never modifies them.
type Snapshot struct {
	Cluster  *api.Cluster
	Networks []*api.Network
	Services []*api.Service
	Tasks    []*api.Task
	// Nodes get their ingress sandbox's address (ingress.go).
	Nodes []*api.Node
}

// Result is what to write after a pass. Services and Tasks are modified
// copies; a task in Failed keeps its old allocation state and should be
// left pending with the reason.
type Result struct {
	// Services got new or fewer VIPs.
	Services []*api.Service
	// Tasks got their addresses, or had them released after they ended.
	Tasks []*api.Task
	// Nodes got or lost their ingress address.
	Nodes []*api.Node
	// Failed is, per task ID, why the task could not be given its
	// addresses (a one-line reason naming the network and the cause).
	Failed map[string]string
}

// ValidatePool checks a cluster's default address pools and subnet size
// (swarm init --default-addr-pool, --default-addr-pool-mask-length).
func ValidatePool(pools []string, size uint32) error {
	var ps []netip.Prefix
	for _, s := range pools {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("default address pool %q: not an IPv4 CIDR", s)
		}
		if p != p.Masked() {
			return fmt.Errorf("default address pool %q: host bits are set (did you mean %s?)", s, p.Masked())
		}
		for _, q := range ps {
			if q.Overlaps(p) {
				return fmt.Errorf("default address pools %s and %s overlap", q, p)
			}
		}
		ps = append(ps, p)
	}
	if size != 0 && (size > 29 || size < 1) {
		return fmt.Errorf("default address pool mask length %d: must be between 1 and 29", size)
	}
	for _, p := range ps {
		if size != 0 && int(size) < p.Bits() {
			return fmt.Errorf("default address pool mask length %d is shorter than pool %s", size, p)
		}
	}
	return nil
}

// pools returns the cluster's pools and subnet size, or the defaults.
func pools(c *api.Cluster) ([]netip.Prefix, int) {
	size := int(c.GetSubnetSize())
	if size == 0 {
		size = DefaultSubnetSize
	}
	var out []netip.Prefix
	for _, s := range c.GetDefaultAddressPool() {
		if p, err := netip.ParsePrefix(s); err == nil && p.Bits() <= size {
			out = append(out, p.Masked())
		}
	}
	if len(c.GetDefaultAddressPool()) == 0 {
		out = []netip.Prefix{netip.MustParsePrefix(DefaultPool)}
	}
	return out, size
}

// Subnets returns the subnets a network holds (its allocated IPAM).
func Subnets(n *api.Network) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range n.GetIpam().GetConfigs() {
		if p, err := netip.ParsePrefix(c.GetSubnet()); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func networkName(n *api.Network) string {
	if s := n.GetSpec().GetAnnotations().GetName(); s != "" {
		return s
	}
	return n.GetId()
}

// AllocateNetwork gives n (a new network, not in snap) its subnet and VNI
// and returns the allocated copy: the subnet and gateway the spec names, or
// the lowest free subnet of the pools; the lowest free VNI. Nothing in snap
// is changed. The error is one line naming the cause: an overlapping
// subnet, an exhausted pool, no VNI left, a malformed spec.
func AllocateNetwork(snap Snapshot, n *api.Network) (*api.Network, error) {
	name := networkName(n)
	var taken []netip.Prefix
	vnis := map[uint32]bool{}
	for _, o := range snap.Networks {
		taken = append(taken, Subnets(o)...)
		vnis[o.GetVni()] = true
	}
	out := proto.Clone(n).(*api.Network)
	ipam := &api.IPAMOptions{Driver: "default"}
	specs := n.GetSpec().GetIpam().GetConfigs()
	if d := n.GetSpec().GetIpam().GetDriver(); d != "" && d != "default" {
		return nil, fmt.Errorf("network %s: IPAM driver %q is not supported (only default)", name, d)
	}
	if len(specs) > 1 {
		return nil, fmt.Errorf("network %s: %d subnets given; a cluster network has one", name, len(specs))
	}
	if len(specs) == 1 {
		c, err := userSubnet(name, specs[0], taken)
		if err != nil {
			return nil, err
		}
		ipam.Configs = []*api.IPAMConfig{c}
	} else {
		ps, size := pools(snap.Cluster)
		p, ok := freeSubnet(ps, size, taken)
		if !ok {
			return nil, fmt.Errorf("network %s: default address pool %s is %w: no free /%d subnet left", name, joinPrefixes(ps), ErrExhausted, size)
		}
		ipam.Configs = []*api.IPAMConfig{{Subnet: p.String(), Gateway: p.Addr().Next().String()}}
	}
	vni := uint32(0)
	for v := uint32(FirstVNI); v <= MaxVNI; v++ {
		if !vnis[v] {
			vni = v
			break
		}
	}
	if vni == 0 {
		return nil, fmt.Errorf("network %s: VXLAN IDs %d-%d are %w", name, FirstVNI, MaxVNI, ErrExhausted)
	}
	out.Ipam, out.Vni = ipam, vni
	return out, nil
}

// userSubnet checks a subnet (and gateway) a user gave.
func userSubnet(name string, c *api.IPAMConfig, taken []netip.Prefix) (*api.IPAMConfig, error) {
	p, err := netip.ParsePrefix(c.GetSubnet())
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("network %s: subnet %q is not an IPv4 CIDR", name, c.GetSubnet())
	}
	if p != p.Masked() {
		return nil, fmt.Errorf("network %s: subnet %s has host bits set (did you mean %s?)", name, p, p.Masked())
	}
	if p.Bits() > 30 {
		return nil, fmt.Errorf("network %s: subnet %s is too small: a cluster network needs at least a /30", name, p)
	}
	if c.GetIpRange() != "" {
		return nil, fmt.Errorf("network %s: --ip-range is not supported on cluster networks", name)
	}
	for _, t := range taken {
		if t.Overlaps(p) {
			return nil, fmt.Errorf("network %s: subnet %s overlaps subnet %s of another network", name, p, t)
		}
	}
	gw := p.Addr().Next()
	if g := c.GetGateway(); g != "" {
		a, err := netip.ParseAddr(g)
		if err != nil || !hostOf(p, a) {
			return nil, fmt.Errorf("network %s: gateway %q is not a host address of %s", name, g, p)
		}
		gw = a
	}
	return &api.IPAMConfig{Subnet: p.String(), Gateway: gw.String()}, nil
}

// hostOf reports whether a is in p and is neither p's network nor its
// broadcast address.
func hostOf(p netip.Prefix, a netip.Addr) bool {
	return p.Contains(a) && a != p.Addr() && a != broadcast(p)
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// freeSubnet is the lowest /size of pools that overlaps nothing taken.
func freeSubnet(pools []netip.Prefix, size int, taken []netip.Prefix) (netip.Prefix, bool) {
	for _, pool := range pools {
		step := uint64(1) << (32 - size)
		b := pool.Addr().As4()
		start := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
		end := start + uint64(1)<<(32-pool.Bits())
		for v := start; v < end; {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), size)
			clash := netip.Prefix{}
			for _, t := range taken {
				if t.Overlaps(p) {
					clash = t
					break
				}
			}
			if !clash.IsValid() {
				return p, true
			}
			// Skip past the clash: a taken /16 in a pool of /24s skips 256
			// candidates at once.
			cb := clash.Addr().As4()
			cend := (uint64(cb[0])<<24 | uint64(cb[1])<<16 | uint64(cb[2])<<8 | uint64(cb[3])) + uint64(1)<<(32-clash.Bits())
			v = max(v+step, (cend+step-1)/step*step)
		}
	}
	return netip.Prefix{}, false
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// subnetState is one network's address space during a pass.
type subnetState struct {
	net    *api.Network
	subnet netip.Prefix
	inUse  map[netip.Addr]bool
	next   netip.Addr // no free address below it
}

func (s *subnetState) take() (netip.Addr, error) {
	for a := s.next; hostOf(s.subnet, a); a = a.Next() {
		if !s.inUse[a] {
			s.inUse[a] = true
			s.next = a.Next()
			return a, nil
		}
	}
	s.next = broadcast(s.subnet)
	return netip.Addr{}, fmt.Errorf("network %s: subnet %s is %w: no free address left", networkName(s.net), s.subnet, ErrExhausted)
}

func (s *subnetState) cidr(a netip.Addr) string { return netip.PrefixFrom(a, s.subnet.Bits()).String() }

// parseHeld returns the address of a CIDR (or bare address) a task or VIP
// holds, if it is in subnet.
func parseHeld(s string) (netip.Addr, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), true
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// releases reports whether t's addresses are free again: its worker
// reported that it ended. Orphaned tasks keep them (their container may
// still run on a lost node).
func releases(t *api.Task) bool {
	switch t.GetStatus().GetState() {
	case api.TaskState_COMPLETE, api.TaskState_SHUTDOWN, api.TaskState_FAILED, api.TaskState_REJECTED:
		return true
	}
	return false
}

// HoldsAddresses reports whether t holds an address on some network.
func HoldsAddresses(t *api.Task) bool {
	for _, a := range t.GetNetworks() {
		if len(a.GetAddresses()) > 0 {
			return true
		}
	}
	return false
}

// NeedsPass reports whether a change to t is worth an allocation pass: it
// waits for addresses, or it ended and still holds some.
func NeedsPass(t *api.Task) bool {
	return wantsAddresses(t) || (releases(t) && HoldsAddresses(t))
}

// wantsAddresses reports whether t is waiting for its addresses: not yet
// assigned, still wanted, attached to networks and not fully allocated.
func wantsAddresses(t *api.Task) bool {
	s := t.GetStatus().GetState()
	return (s == api.TaskState_NEW || s == api.TaskState_PENDING) &&
		t.GetDesiredState() <= api.TaskState_RUNNING && !Allocated(t)
}

// Allocated reports whether t holds an address on every network its spec
// attaches it to, and on the ingress network if it publishes a port
// through the routing mesh: a task is scheduled only then.
func Allocated(t *api.Task) bool {
	if usesIngress(t) && !onIngress(t) {
		return false
	}
	for _, want := range t.GetSpec().GetNetworks() {
		ok := false
		for _, a := range t.GetNetworks() {
			if a.GetNetwork().GetId() == want.GetTarget() && len(a.GetAddresses()) > 0 {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// wantsVIPs is the networks (IDs, in spec order, deduplicated) svc should
// have a VIP on: all its networks in endpoint mode vip, none in dnsrr.
func wantsVIPs(svc *api.Service) []string {
	if svc.GetSpec().GetEndpoint().GetMode() == api.EndpointSpec_DNSRR {
		return nil
	}
	var out []string
	for _, n := range svc.GetSpec().GetTask().GetNetworks() {
		if !slices.Contains(out, n.GetTarget()) {
			out = append(out, n.GetTarget())
		}
	}
	return out
}

// Allocate runs one pass over snap: VIPs for services that lack or no
// longer need them, addresses for waiting tasks, releases for ended ones.
func Allocate(snap Snapshot) Result {
	res := Result{Failed: map[string]string{}}
	nets := map[string]*subnetState{}
	for _, n := range snap.Networks {
		ps := Subnets(n)
		if len(ps) == 0 {
			continue
		}
		st := &subnetState{net: n, subnet: ps[0], inUse: map[netip.Addr]bool{}, next: ps[0].Addr().Next()}
		if g, err := netip.ParseAddr(n.GetIpam().GetConfigs()[0].GetGateway()); err == nil {
			st.inUse[g] = true
		}
		nets[n.GetId()] = st
	}
	hold := func(netID, cidr string) {
		if st := nets[netID]; st != nil {
			if a, ok := parseHeld(cidr); ok {
				st.inUse[a] = true
			}
		}
	}
	for _, svc := range snap.Services {
		for _, v := range svc.GetEndpoint().GetVirtualIps() {
			hold(v.GetNetworkId(), v.GetAddr())
		}
	}
	for _, t := range snap.Tasks {
		for _, a := range t.GetNetworks() {
			for _, addr := range a.GetAddresses() {
				hold(a.GetNetwork().GetId(), addr)
			}
		}
	}
	for _, n := range snap.Nodes {
		for _, a := range n.GetAttachments() {
			for _, addr := range a.GetAddresses() {
				hold(a.GetNetwork().GetId(), addr)
			}
		}
	}
	ingress := IngressNetwork(snap.Networks)
	if ingress != nil && nets[ingress.GetId()] == nil {
		ingress = nil // not allocated: nothing can be given on it
	}
	// A node left without an entry (a full subnet) is one the mesh cannot
	// be entered through; it is tried again at every pass.
	res.Nodes = allocateNodes(snap.Nodes, ingress, nets)

	services := slices.Clone(snap.Services)
	slices.SortFunc(services, func(a, b *api.Service) int { return strings.Compare(a.GetId(), b.GetId()) })
	byID := map[string]*api.Service{}
	svcErr := map[string]string{}
	for _, svc := range services {
		byID[svc.GetId()] = svc
		nsvc, err := allocateVIPs(svc, nets)
		if err != nil {
			svcErr[svc.GetId()] = err.Error()
		}
		if nsvc != nil {
			res.Services = append(res.Services, nsvc)
			byID[svc.GetId()] = nsvc
		}
	}

	tasks := slices.Clone(snap.Tasks)
	slices.SortFunc(tasks, func(a, b *api.Task) int { return strings.Compare(a.GetId(), b.GetId()) })
	for _, t := range tasks {
		switch {
		case releases(t) && HoldsAddresses(t):
			nt := proto.Clone(t).(*api.Task)
			for _, a := range nt.Networks {
				a.Addresses = nil
			}
			res.Tasks = append(res.Tasks, nt)
		case wantsAddresses(t):
			if reason, ok := svcErr[t.GetServiceId()]; ok {
				res.Failed[t.GetId()] = reason
				continue
			}
			nt, err := allocateTask(t, byID[t.GetServiceId()], ingress, nets)
			if err != nil {
				res.Failed[t.GetId()] = err.Error()
				continue
			}
			res.Tasks = append(res.Tasks, nt)
		}
	}
	return res
}

// allocateVIPs returns svc with the VIPs it should have (nil when nothing
// changes). On an error the VIPs already held are kept.
func allocateVIPs(svc *api.Service, nets map[string]*subnetState) (*api.Service, error) {
	want := wantsVIPs(svc)
	have := svc.GetEndpoint().GetVirtualIps()
	var keep []*api.VirtualIP
	changed := false
	for _, v := range have {
		if slices.Contains(want, v.GetNetworkId()) && nets[v.GetNetworkId()] != nil && !slices.ContainsFunc(keep, func(k *api.VirtualIP) bool { return k.GetNetworkId() == v.GetNetworkId() }) {
			keep = append(keep, v)
		} else {
			changed = true // left the network (its address is free next pass)
		}
	}
	var firstErr error
	for _, id := range want {
		if slices.ContainsFunc(keep, func(k *api.VirtualIP) bool { return k.GetNetworkId() == id }) {
			continue
		}
		st := nets[id]
		if st == nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("service %s: network %s is not allocated", serviceName(svc), id))
			continue
		}
		a, err := st.take()
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("service %s: no virtual IP: %w", serviceName(svc), err))
			continue
		}
		keep = append(keep, &api.VirtualIP{NetworkId: id, Addr: st.cidr(a)})
		changed = true
	}
	if !changed {
		return nil, firstErr
	}
	nsvc := proto.Clone(svc).(*api.Service)
	if nsvc.Endpoint == nil {
		nsvc.Endpoint = &api.Endpoint{}
	}
	if nsvc.Endpoint.Spec == nil && svc.GetSpec().GetEndpoint() != nil {
		nsvc.Endpoint.Spec = proto.Clone(svc.GetSpec().GetEndpoint()).(*api.EndpointSpec)
	}
	nsvc.Endpoint.VirtualIps = keep
	return nsvc, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func serviceName(svc *api.Service) string {
	if n := svc.GetSpec().GetAnnotations().GetName(); n != "" {
		return n
	}
	return svc.GetId()
}

// allocateTask gives t an address on each network of its spec. Nothing is
// taken unless all can be given (an error leaves nets as it was).
func allocateTask(t *api.Task, svc *api.Service, ingress *api.Network, nets map[string]*subnetState) (*api.Task, error) {
	nt := proto.Clone(t).(*api.Task)
	var taken []struct {
		st *subnetState
		a  netip.Addr
	}
	undo := func() {
		for _, x := range taken {
			delete(x.st.inUse, x.a)
			if x.a.Less(x.st.next) {
				x.st.next = x.a
			}
		}
	}
	wants := t.GetSpec().GetNetworks()
	if usesIngress(t) {
		if ingress == nil {
			return nil, fmt.Errorf("no ingress network for its published ports")
		}
		// Last, so the task's own networks keep their interface names.
		wants = append(slices.Clone(wants), &api.NetworkAttachmentConfig{Target: ingress.GetId()})
	}
	var atts []*api.NetworkAttachment
	for _, want := range wants {
		if slices.ContainsFunc(atts, func(a *api.NetworkAttachment) bool { return a.GetNetwork().GetId() == want.GetTarget() }) {
			continue
		}
		st := nets[want.GetTarget()]
		if st == nil {
			undo()
			return nil, fmt.Errorf("network %s not found or not allocated", want.GetTarget())
		}
		att := &api.NetworkAttachment{Network: st.net, Aliases: slices.Clone(want.GetAliases())}
		// An address the task already holds on this network is kept.
		for _, old := range t.GetNetworks() {
			if old.GetNetwork().GetId() == want.GetTarget() && len(old.GetAddresses()) > 0 {
				att.Addresses = slices.Clone(old.GetAddresses())
			}
		}
		if len(att.Addresses) == 0 {
			a, err := st.take()
			if err != nil {
				undo()
				return nil, fmt.Errorf("no address for task: %w", err)
			}
			taken = append(taken, struct {
				st *subnetState
				a  netip.Addr
			}{st, a})
			att.Addresses = []string{st.cidr(a)}
		}
		atts = append(atts, att)
	}
	for _, a := range atts {
		a.Network = proto.Clone(a.GetNetwork()).(*api.Network)
	}
	nt.Networks = atts
	if svc != nil && len(svc.GetEndpoint().GetVirtualIps()) > 0 {
		if nt.Endpoint == nil {
			nt.Endpoint = &api.Endpoint{}
		}
		nt.Endpoint.VirtualIps = proto.Clone(svc.GetEndpoint()).(*api.Endpoint).GetVirtualIps()
	}
	if svc != nil && len(IngressPorts(svc.GetEndpoint().GetPorts())) > 0 {
		// The published ports as allocated (a target-only port got its
		// number): every node's mesh learns them from the task's endpoint.
		if nt.Endpoint == nil {
			nt.Endpoint = &api.Endpoint{}
		}
		nt.Endpoint.Ports = proto.Clone(svc.GetEndpoint()).(*api.Endpoint).GetPorts()
	}
	return nt, nil
}
