package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// Tests use addresses from 198.18.0.0/15 only (issue 7).
func testCluster(pool string, size uint32) *api.Cluster {
	return &api.Cluster{Id: "c", DefaultAddressPool: []string{pool}, SubnetSize: size}
}

func newNet(id, name string, subnet, gw string) *api.Network {
	spec := &api.NetworkSpec{Annotations: &api.Annotations{Name: name}}
	if subnet != "" {
		spec.Ipam = &api.IPAMOptions{Configs: []*api.IPAMConfig{{Subnet: subnet, Gateway: gw}}}
	}
	return &api.Network{Id: id, Spec: spec}
}

func mustNet(t *testing.T, snap *Snapshot, id, subnet, gw string) *api.Network {
	t.Helper()
	n, err := AllocateNetwork(*snap, newNet(id, "net-"+id, subnet, gw))
	if err != nil {
		t.Fatalf("allocate network %s: %v", id, err)
	}
	snap.Networks = append(snap.Networks, n)
	return n
}

func TestAllocateNetworkFromPool(t *testing.T) {
	snap := Snapshot{Cluster: testCluster("198.18.0.0/22", 24)}
	a := mustNet(t, &snap, "a", "", "")
	if got := a.GetIpam().GetConfigs()[0]; got.GetSubnet() != "198.18.0.0/24" || got.GetGateway() != "198.18.0.1" || a.GetVni() != FirstVNI {
		t.Fatalf("first network: %v vni %d", got, a.GetVni())
	}
	// A user subnet in the middle of the pool is skipped by the pool.
	mustNet(t, &snap, "u", "198.18.1.0/24", "198.18.1.254")
	b := mustNet(t, &snap, "b", "", "")
	if got := b.GetIpam().GetConfigs()[0].GetSubnet(); got != "198.18.2.0/24" || b.GetVni() != FirstVNI+2 {
		t.Fatalf("third network: %s vni %d", got, b.GetVni())
	}
	mustNet(t, &snap, "c", "", "")
	_, err := AllocateNetwork(snap, newNet("d", "full", "", ""))
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "198.18.0.0/22") {
		t.Fatalf("exhausted pool: %v", err)
	}
	// A removed network frees its subnet and VNI.
	snap.Networks = slices.DeleteFunc(snap.Networks, func(n *api.Network) bool { return n.GetId() == "a" })
	d := mustNet(t, &snap, "d", "", "")
	if d.GetIpam().GetConfigs()[0].GetSubnet() != "198.18.0.0/24" || d.GetVni() != FirstVNI {
		t.Fatalf("reuse after removal: %v", d)
	}
}

func TestAllocateNetworkBadInput(t *testing.T) {
	snap := Snapshot{Cluster: testCluster("198.18.0.0/16", 24)}
	mustNet(t, &snap, "a", "198.18.4.0/22", "")
	for _, c := range []struct{ subnet, gw, want string }{
		{"198.18.5.0/24", "", "overlaps subnet 198.18.4.0/22"},
		{"198.18.0.0/8", "", "host bits"},
		{"nonsense", "", "not an IPv4 CIDR"},
		{"198.18.9.0/24", "198.18.10.1", "not a host address"},
		{"198.18.9.0/24", "198.18.9.255", "not a host address"},
		{"198.18.9.0/31", "", "too small"},
	} {
		_, err := AllocateNetwork(snap, newNet("x", "x", c.subnet, c.gw))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("subnet %s gateway %s: got %v, want %q", c.subnet, c.gw, err, c.want)
		}
	}
}

func TestValidatePool(t *testing.T) {
	for _, c := range []struct {
		pools []string
		size  uint32
		ok    bool
	}{
		{[]string{"198.18.0.0/15"}, 24, true},
		{[]string{"198.18.0.0/16", "198.19.0.0/16"}, 26, true},
		{[]string{"198.18.0.0/16", "198.18.4.0/24"}, 24, false},
		{[]string{"198.18.0.1/16"}, 24, false},
		{[]string{"198.18.0.0/24"}, 16, false},
		{[]string{"198.18.0.0/16"}, 31, false},
	} {
		if err := ValidatePool(c.pools, c.size); (err == nil) != c.ok {
			t.Errorf("%v /%d: %v", c.pools, c.size, err)
		}
	}
}

func service(id string, nets ...string) *api.Service {
	s := &api.Service{Id: id, Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "svc-" + id}, Task: &api.TaskSpec{}}}
	for _, n := range nets {
		s.Spec.Task.Networks = append(s.Spec.Task.Networks, &api.NetworkAttachmentConfig{Target: n})
	}
	return s
}

func task(id string, svc *api.Service) *api.Task {
	return &api.Task{Id: id, ServiceId: svc.GetId(), Spec: proto.Clone(svc.GetSpec().GetTask()).(*api.TaskSpec),
		DesiredState: api.TaskState_RUNNING, Status: &api.TaskStatus{State: api.TaskState_NEW}}
}

// apply writes a result into snap, as the leader loop writes it to the store.
func apply(snap *Snapshot, res Result) {
	for _, s := range res.Services {
		for i, o := range snap.Services {
			if o.GetId() == s.GetId() {
				snap.Services[i] = s
			}
		}
	}
	for _, t := range res.Tasks {
		for i, o := range snap.Tasks {
			if o.GetId() == t.GetId() {
				snap.Tasks[i] = t
			}
		}
	}
	for _, n := range res.Nodes {
		for i, o := range snap.Nodes {
			if o.GetId() == n.GetId() {
				snap.Nodes[i] = n
			}
		}
	}
}

func TestAllocateTasksAndVIPs(t *testing.T) {
	snap := Snapshot{Cluster: testCluster("198.18.0.0/16", 29)} // 6 hosts: gateway + 5
	n := mustNet(t, &snap, "n", "", "")
	web := service("web", "n")
	snap.Services = []*api.Service{web}
	for i := range 3 {
		snap.Tasks = append(snap.Tasks, task(fmt.Sprint("t", i), web))
	}
	res := Allocate(snap)
	if len(res.Failed) != 0 || len(res.Services) != 1 || len(res.Tasks) != 3 {
		t.Fatalf("result: %+v", res)
	}
	if v := res.Services[0].GetEndpoint().GetVirtualIps(); len(v) != 1 || v[0].GetAddr() != "198.18.0.2/29" || v[0].GetNetworkId() != "n" {
		t.Fatalf("vip: %v", v)
	}
	for i, tk := range res.Tasks {
		want := fmt.Sprintf("198.18.0.%d/29", 3+i)
		if !Allocated(tk) || tk.GetNetworks()[0].GetAddresses()[0] != want || tk.GetNetworks()[0].GetNetwork().GetVni() != n.GetVni() {
			t.Fatalf("task %d: %v", i, tk.GetNetworks())
		}
		if len(tk.GetEndpoint().GetVirtualIps()) != 1 {
			t.Fatalf("task %d endpoint: %v", i, tk.GetEndpoint())
		}
	}
	apply(&snap, res)
	if res := Allocate(snap); len(res.Services)+len(res.Tasks)+len(res.Failed) != 0 {
		t.Fatalf("second pass is not a no-op: %+v", res)
	}
	// Two more tasks: one fits (.6), the last finds the subnet exhausted.
	snap.Tasks = append(snap.Tasks, task("t3", web), task("t4", web))
	res = Allocate(snap)
	if len(res.Tasks) != 1 || res.Tasks[0].GetNetworks()[0].GetAddresses()[0] != "198.18.0.6/29" {
		t.Fatalf("t3: %v", res.Tasks)
	}
	if r := res.Failed["t4"]; !strings.Contains(r, "198.18.0.0/29 is exhausted") || !strings.Contains(r, "net-n") {
		t.Fatalf("t4 reason: %q", r)
	}
	apply(&snap, res)
	// t0 fails: its address is released, and t4 gets it on the next pass.
	snap.Tasks[0] = proto.Clone(snap.Tasks[0]).(*api.Task)
	snap.Tasks[0].Status.State = api.TaskState_FAILED
	res = Allocate(snap)
	if len(res.Tasks) != 1 || res.Tasks[0].GetId() != "t0" || HoldsAddresses(res.Tasks[0]) {
		t.Fatalf("release: %v", res.Tasks)
	}
	apply(&snap, res)
	res = Allocate(snap)
	if len(res.Tasks) != 1 || res.Tasks[0].GetId() != "t4" || res.Tasks[0].GetNetworks()[0].GetAddresses()[0] != "198.18.0.3/29" {
		t.Fatalf("t4 after release: %v %v", res.Tasks, res.Failed)
	}
	// Endpoint mode dnsrr: the VIP goes.
	dns := proto.Clone(snap.Services[0]).(*api.Service)
	dns.Spec.Endpoint = &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}
	snap.Services[0] = dns
	res = Allocate(snap)
	if len(res.Services) != 1 || len(res.Services[0].GetEndpoint().GetVirtualIps()) != 0 {
		t.Fatalf("dnsrr: %v", res.Services)
	}
}

func TestOrphanedTaskKeepsAddress(t *testing.T) {
	snap := Snapshot{Cluster: testCluster("198.18.0.0/16", 24)}
	mustNet(t, &snap, "n", "", "")
	svc := service("s", "n")
	svc.Spec.Endpoint = &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}
	snap.Services = []*api.Service{svc}
	snap.Tasks = []*api.Task{task("a", svc)}
	apply(&snap, Allocate(snap))
	snap.Tasks[0].Status.State = api.TaskState_ORPHANED
	snap.Tasks = append(snap.Tasks, task("b", svc))
	res := Allocate(snap)
	if len(res.Tasks) != 1 || res.Tasks[0].GetId() != "b" || res.Tasks[0].GetNetworks()[0].GetAddresses()[0] != "198.18.0.3/24" {
		t.Fatalf("orphaned task's address was given again: %v", res.Tasks)
	}
}

// TestNoDoubleAllocation is the property test: random sequences of network
// creates and removals, service creates, updates, scales and removals, task
// deaths and reaps, with "leader changes" (the snapshot goes through its
// wire encoding, as a raft snapshot does, and a fresh pass starts from it)
// in between. After every pass: nothing the pass handed out was in use
// before it, and no two holders share an address, a subnet or a VNI.
func TestNoDoubleAllocation(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { propertyRun(t, uint64(seed)) })
	}
}

type holder struct{ kind, id string }

// holdings calls fn for every address the store holds: the test's own
// account, independent of the allocator's.
func holdings(snap Snapshot, fn func(net, cidr string, h holder)) {
	for _, s := range snap.Services {
		for _, v := range s.GetEndpoint().GetVirtualIps() {
			fn(v.GetNetworkId(), v.GetAddr(), holder{"service", s.GetId()})
		}
	}
	for _, tk := range snap.Tasks {
		for _, a := range tk.GetNetworks() {
			for _, addr := range a.GetAddresses() {
				fn(a.GetNetwork().GetId(), addr, holder{"task", tk.GetId()})
			}
		}
	}
}

// inUse is, per network and address, who holds it.
func inUse(snap Snapshot) map[string]map[netip.Addr]holder {
	out := map[string]map[netip.Addr]holder{}
	holdings(snap, func(net, cidr string, h holder) {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			panic(cidr)
		}
		if out[net] == nil {
			out[net] = map[netip.Addr]holder{}
		}
		out[net][p.Addr()] = h
	})
	return out
}

func checkStore(t *testing.T, snap Snapshot) {
	t.Helper()
	seen := map[string]map[netip.Addr]holder{}
	check := func(net, cidr string, h holder) {
		p, _ := netip.ParsePrefix(cidr)
		if seen[net] == nil {
			seen[net] = map[netip.Addr]holder{}
		}
		if o, ok := seen[net][p.Addr()]; ok && o != h {
			t.Fatalf("address %s on network %s held by %v and %v", p.Addr(), net, o, h)
		}
		seen[net][p.Addr()] = h
		for _, n := range snap.Networks {
			if n.GetId() == net {
				s := Subnets(n)[0]
				if !hostOf(s, p.Addr()) || p.Addr().String() == n.GetIpam().GetConfigs()[0].GetGateway() {
					t.Fatalf("address %s of %v is not a free host of %s", p, h, s)
				}
			}
		}
	}
	holdings(snap, check)
	vnis := map[uint32]string{}
	for i, n := range snap.Networks {
		if o, ok := vnis[n.GetVni()]; ok {
			t.Fatalf("VNI %d held by %s and %s", n.GetVni(), o, n.GetId())
		}
		vnis[n.GetVni()] = n.GetId()
		for _, m := range snap.Networks[:i] {
			if Subnets(n)[0].Overlaps(Subnets(m)[0]) {
				t.Fatalf("subnets of %s and %s overlap", n.GetId(), m.GetId())
			}
		}
	}
}

// restore is a leader change: the new leader's store is the old one's
// snapshot, decoded.
func restore(t *testing.T, snap Snapshot) Snapshot {
	var out Snapshot
	b, err := proto.Marshal(snap.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	out.Cluster = &api.Cluster{}
	if err := proto.Unmarshal(b, out.Cluster); err != nil {
		t.Fatal(err)
	}
	for _, n := range snap.Networks {
		out.Networks = append(out.Networks, roundTrip(t, n, &api.Network{}))
	}
	for _, s := range snap.Services {
		out.Services = append(out.Services, roundTrip(t, s, &api.Service{}))
	}
	for _, tk := range snap.Tasks {
		out.Tasks = append(out.Tasks, roundTrip(t, tk, &api.Task{}))
	}
	return out
}

func roundTrip[M proto.Message](t *testing.T, in M, out M) M {
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func propertyRun(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	// A small pool and small subnets so that exhaustion and reuse happen.
	snap := Snapshot{Cluster: testCluster("198.18.0.0/26", 29)}
	ids := 0
	newID := func(p string) string { ids++; return fmt.Sprint(p, ids) }
	usedBy := func(netID string) bool {
		for _, s := range snap.Services {
			for _, n := range s.GetSpec().GetTask().GetNetworks() {
				if n.GetTarget() == netID {
					return true
				}
			}
		}
		for _, tk := range snap.Tasks {
			for _, a := range tk.GetNetworks() {
				if a.GetNetwork().GetId() == netID {
					return true
				}
			}
		}
		return false
	}
	pickNets := func() []string {
		var out []string
		for _, n := range snap.Networks {
			if r.IntN(2) == 0 {
				out = append(out, n.GetId())
			}
		}
		return out
	}
	for step := range 300 {
		switch k := r.IntN(11); {
		case k == 0: // create a network
			id := newID("n")
			before := map[uint32]bool{}
			for _, n := range snap.Networks {
				before[n.GetVni()] = true
			}
			n, err := AllocateNetwork(snap, newNet(id, id, "", ""))
			if err != nil {
				if !errors.Is(err, ErrExhausted) {
					t.Fatalf("step %d: create network: %v", step, err)
				}
				continue
			}
			if before[n.GetVni()] {
				t.Fatalf("step %d: VNI %d given twice", step, n.GetVni())
			}
			snap.Networks = append(snap.Networks, n)
		case k == 1 && len(snap.Networks) > 0: // remove an unused network
			n := snap.Networks[r.IntN(len(snap.Networks))]
			if !usedBy(n.GetId()) {
				snap.Networks = slices.DeleteFunc(snap.Networks, func(x *api.Network) bool { return x == n })
			}
		case k == 2: // create a service
			s := service(newID("s"), pickNets()...)
			if r.IntN(4) == 0 {
				s.Spec.Endpoint = &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}
			}
			snap.Services = append(snap.Services, s)
		case k == 3 && len(snap.Services) > 0: // update a service's networks
			i := r.IntN(len(snap.Services))
			s := proto.Clone(snap.Services[i]).(*api.Service)
			s.Spec.Task.Networks = nil
			for _, n := range pickNets() {
				s.Spec.Task.Networks = append(s.Spec.Task.Networks, &api.NetworkAttachmentConfig{Target: n})
			}
			snap.Services[i] = s
		case k == 4 && len(snap.Services) > 0: // scale up
			s := snap.Services[r.IntN(len(snap.Services))]
			for range r.IntN(4) + 1 {
				snap.Tasks = append(snap.Tasks, task(newID("t"), s))
			}
		case k == 5 && len(snap.Tasks) > 0: // a task dies (or is orphaned)
			i := r.IntN(len(snap.Tasks))
			tk := proto.Clone(snap.Tasks[i]).(*api.Task)
			tk.Status.State = []api.TaskState{api.TaskState_FAILED, api.TaskState_COMPLETE, api.TaskState_SHUTDOWN, api.TaskState_ORPHANED, api.TaskState_RUNNING}[r.IntN(5)]
			snap.Tasks[i] = tk
		case k == 6 && len(snap.Tasks) > 0: // reap a task (scale down, history)
			i := r.IntN(len(snap.Tasks))
			snap.Tasks = slices.Delete(snap.Tasks, i, i+1)
		case k == 7 && len(snap.Services) > 0: // remove a service and its tasks
			s := snap.Services[r.IntN(len(snap.Services))]
			snap.Services = slices.DeleteFunc(snap.Services, func(x *api.Service) bool { return x == s })
			snap.Tasks = slices.DeleteFunc(snap.Tasks, func(x *api.Task) bool { return x.GetServiceId() == s.GetId() })
		case k == 9: // create a network with a subnet of its own
			id := newID("u")
			sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(r.IntN(16) * 8)}), 29-r.IntN(3))
			n, err := AllocateNetwork(snap, newNet(id, id, sub.Masked().String(), ""))
			if err != nil {
				if !strings.Contains(err.Error(), "overlaps") && !errors.Is(err, ErrExhausted) {
					t.Fatalf("step %d: create network %s: %v", step, sub.Masked(), err)
				}
				continue
			}
			snap.Networks = append(snap.Networks, n)
		case k == 8: // leader change
			snap = restore(t, snap)
		}
		before := inUse(snap)
		res := Allocate(snap)
		for _, s := range res.Services {
			for _, v := range s.GetEndpoint().GetVirtualIps() {
				p, _ := netip.ParsePrefix(v.GetAddr())
				if h, ok := before[v.GetNetworkId()][p.Addr()]; ok && h != (holder{"service", s.GetId()}) {
					t.Fatalf("step %d: VIP %s of %s was in use by %v", step, v.GetAddr(), s.GetId(), h)
				}
			}
		}
		for _, tk := range res.Tasks {
			for _, a := range tk.GetNetworks() {
				for _, addr := range a.GetAddresses() {
					p, _ := netip.ParsePrefix(addr)
					if h, ok := before[a.GetNetwork().GetId()][p.Addr()]; ok && h != (holder{"task", tk.GetId()}) {
						t.Fatalf("step %d: address %s of task %s was in use by %v", step, addr, tk.GetId(), h)
					}
				}
			}
		}
		for id, reason := range res.Failed {
			if !strings.Contains(reason, "exhausted") && !strings.Contains(reason, "not found or not allocated") {
				t.Fatalf("step %d: task %s: unexpected reason %q", step, id, reason)
			}
		}
		apply(&snap, res)
		checkStore(t, snap)
	}
}
