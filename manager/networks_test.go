package manager

import (
	"context"
	"fmt"
	"testing"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// holdings is every address held on networks in tm's store: address ->
// holder (a task or service ID). It fails on an address held twice.
func holdings(t *testing.T, tm *testManager) (map[string]string, int) {
	t.Helper()
	held := map[string]string{}
	waiting := 0
	add := func(addr, who string) {
		if o, ok := held[addr]; ok && o != who {
			t.Fatalf("address %s held by %s and %s", addr, o, who)
		}
		held[addr] = who
	}
	tm.m.Store().View(func(tx raftstore.ReadTx) {
		for _, s := range tx.Services() {
			for _, v := range s.GetEndpoint().GetVirtualIps() {
				add(v.GetAddr(), "service "+s.GetId())
			}
			if len(s.GetEndpoint().GetVirtualIps()) == 0 {
				waiting++
			}
		}
		for _, tk := range tx.Tasks() {
			n := 0
			for _, a := range tk.GetNetworks() {
				for _, addr := range a.GetAddresses() {
					add(addr, "task "+tk.GetId())
					n++
				}
			}
			if n == 0 && !tk.GetStatus().GetState().IsTerminal() {
				waiting++
			}
		}
	})
	return held, waiting
}

// TestNoAddressReuseAcrossLeaderChange: tasks and services on a network get
// their addresses from the leader's allocator; after the leader is stopped,
// the new leader's allocator gives new tasks and services addresses no one
// holds, and moves no one's.
func TestNoAddressReuseAcrossLeaderChange(t *testing.T) {
	c := startCluster(t, 3)
	c.waitMembership()
	ctx := context.Background()
	lead := c.leader()
	ctl := c.control(lead)
	nr, err := ctl.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: "app"},
		Ipam: &api.IPAMOptions{Configs: []*api.IPAMConfig{{Subnet: "198.19.252.0/24"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if nr.GetNetwork().GetVni() != 4096 {
		t.Fatalf("network: %v", nr.GetNetwork())
	}
	onNet := func(name string, n uint64) *api.ServiceSpec {
		s := serviceSpec(name)
		s.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: n}}
		s.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "app"}}
		return s
	}
	web, err := ctl.CreateService(ctx, &api.CreateServiceRequest{Spec: onNet("web", 5)})
	if err != nil {
		t.Fatal(err)
	}
	var before map[string]string
	waitFor(t, settle, "web allocated", func() error {
		held, waiting := holdings(t, c.nodes[lead])
		if len(held) != 6 || waiting != 0 {
			return fmt.Errorf("%d addresses held, %d waiting", len(held), waiting)
		}
		before = held
		return nil
	})

	c.nodes[lead].stop()
	nl := c.leader() // among the running managers
	ctl = c.control(nl)
	waitFor(t, settle, "web scaled through the new leader", func() error {
		g, err := ctl.GetService(ctx, &api.GetServiceRequest{ServiceId: web.GetService().GetId()})
		if err != nil {
			return err
		}
		_, err = ctl.UpdateService(ctx, &api.UpdateServiceRequest{ServiceId: g.GetService().GetId(),
			ServiceVersion: g.GetService().GetMeta().GetVersion(), Spec: onNet("web", 10)})
		return err
	})
	if _, err := ctl.CreateService(ctx, &api.CreateServiceRequest{Spec: onNet("api", 3)}); err != nil {
		t.Fatal(err)
	}
	allocated := func(tm *testManager, want int) {
		waitFor(t, settle, fmt.Sprintf("%d addresses, none moved", want), func() error {
			held, waiting := holdings(t, tm)
			if len(held) != want || waiting != 0 {
				return fmt.Errorf("%d addresses held, %d waiting", len(held), waiting)
			}
			for addr, who := range before {
				if held[addr] != who {
					return fmt.Errorf("address %s of %s now held by %q", addr, who, held[addr])
				}
			}
			return nil
		})
	}
	allocated(c.nodes[nl], 15)

	// Snapshots, then every manager restarts: the state comes back from
	// snapshot and log, and the next leader still gives nothing held.
	before, _ = holdings(t, c.nodes[nl])
	c.waitSameStores()
	for _, n := range c.nodes {
		if n.running() {
			if err := n.m.Raft().Snapshot(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			n.stop()
		}
	}
	for _, n := range c.nodes {
		n.restart()
	}
	nl = c.leader()
	ctl = c.control(nl)
	waitFor(t, settle, "db created after the restart", func() error {
		_, err := ctl.CreateService(ctx, &api.CreateServiceRequest{Spec: onNet("db", 2)})
		if err != nil && isClass(api.FromGRPC(err), api.ErrConflict) {
			return nil // an earlier attempt with a lost answer committed
		}
		return err
	})
	allocated(c.nodes[nl], 18)
}
