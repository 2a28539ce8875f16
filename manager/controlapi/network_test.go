package controlapi

import (
	"context"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/allocator"
	"github.com/shoal-project/shoal/raftstore"
)

func netSpec(name, subnet string, opts map[string]string) *api.NetworkSpec {
	s := &api.NetworkSpec{Annotations: &api.Annotations{Name: name}, DriverConfig: &api.Driver{Options: opts}}
	if subnet != "" {
		s.Ipam = &api.IPAMOptions{Configs: []*api.IPAMConfig{{Subnet: subnet}}}
	}
	return s
}

// TestCreateNetworkAllocates: a network comes back with its subnet and VNI;
// bad input and an exhausted pool are one-line errors that store nothing.
func TestCreateNetworkAllocates(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t)
	seed(t, st, &api.Cluster{Id: "c1", Spec: &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}},
		DefaultAddressPool: []string{"198.18.0.0/23"}, SubnetSize: 24})
	create := func(spec *api.NetworkSpec) (*api.Network, error) {
		r, err := s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: spec})
		return r.GetNetwork(), api.FromGRPC(err)
	}
	_, err := create(netSpec("e", "", map[string]string{OptionEncrypted: "false"}))
	wantErr(t, err, api.ErrInvalidArgument, `network e: option encrypted="false": give it without a value (or =true)`)
	a, err := create(netSpec("a", "", nil))
	if err != nil || a.GetIpam().GetConfigs()[0].GetSubnet() != "198.18.0.0/24" || a.GetVni() != allocator.FirstVNI {
		t.Fatalf("a: %v %v", a, err)
	}
	_, err = create(netSpec("b", "198.18.0.128/25", nil))
	wantErr(t, err, api.ErrInvalidArgument, "network b: subnet 198.18.0.128/25 overlaps subnet 198.18.0.0/24 of another network")
	_, err = create(netSpec("b", "", map[string]string{"com.docker.network.driver.overlay.vxlanid_list": "5000"}))
	wantErr(t, err, api.ErrInvalidArgument, `option "com.docker.network.driver.overlay.vxlanid_list" is not supported`)
	_, err = create(netSpec("b", "", map[string]string{OptionMTU: "9"}))
	wantErr(t, err, api.ErrInvalidArgument, "an MTU between 576 and 65535 is required")
	b, err := create(netSpec("b", "", map[string]string{OptionMTU: "1400"}))
	if err != nil || b.GetIpam().GetConfigs()[0].GetSubnet() != "198.18.1.0/24" || b.GetVni() != allocator.FirstVNI+1 {
		t.Fatalf("b: %v %v", b, err)
	}
	_, err = create(netSpec("c", "", nil))
	wantErr(t, err, api.ErrInvalidArgument, "network c: default address pool 198.18.0.0/23 is exhausted: no free /24 subnet left")
	l, _ := s.ListNetworks(ctx, &api.ListNetworksRequest{})
	if len(l.GetNetworks()) != 2 {
		t.Fatalf("a refused create stored something: %v", l.GetNetworks())
	}
	// Removing a frees its subnet and VNI for the next network.
	if _, err := s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "a"}); err != nil {
		t.Fatal(err)
	}
	c, err := create(netSpec("c", "", nil))
	if err != nil || c.GetIpam().GetConfigs()[0].GetSubnet() != "198.18.0.0/24" || c.GetVni() != allocator.FirstVNI {
		t.Fatalf("c: %v %v", c, err)
	}
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "nope"})
	wantErr(t, api.FromGRPC(err), api.ErrNotFound, "nope")
}

// TestRemoveNetworkInUseByTask: a task that still holds an address on the
// network (here an orphaned one, whose container may still run) keeps the
// network, though no service names it any more.
func TestRemoveNetworkInUseByTask(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t)
	seed(t, st, &api.Cluster{Id: "c1", DefaultAddressPool: []string{"198.18.0.0/16"}, SubnetSize: 24})
	r, err := s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: netSpec("app", "", nil)})
	if err != nil {
		t.Fatal(err)
	}
	seed(t, st, &api.Service{Id: "s1", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web"}}},
		&api.Task{Id: "t1", ServiceId: "s1", DesiredState: api.TaskState_RUNNING, Annotations: &api.Annotations{Name: "web.1.t1"},
			Status: &api.TaskStatus{State: api.TaskState_RUNNING}, Networks: []*api.NetworkAttachment{{Network: r.GetNetwork(), Addresses: []string{"198.18.0.2/24"}}}})
	// A task its service still wants: refused at once.
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "app"})
	wantErr(t, api.FromGRPC(err), api.ErrFailedPrecondition, "network app is in use by task web.1.t1")

	// Its service removed, the task is on its way out: the removal waits
	// for it to be gone (docker stack rm), then deletes the network.
	update(t, st, func(tx raftstore.WriteTx) error { return tx.Delete(raftstore.KindService, "s1") })
	go func() {
		time.Sleep(300 * time.Millisecond)
		update(t, st, func(tx raftstore.WriteTx) error { return tx.Delete(raftstore.KindTask, "t1") })
	}()
	began := time.Now()
	if _, err := s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "app"}); err != nil {
		t.Fatalf("removal once the leaving task is gone: %v", err)
	}
	if waited := time.Since(began); waited < 250*time.Millisecond {
		t.Fatalf("removed after %v, while the task still held an address", waited)
	}
	if _, err := s.GetNetwork(ctx, &api.GetNetworkRequest{NetworkId: "app"}); err == nil {
		t.Fatal("the network is still there")
	}

	// A leaving task that does not go (its node is down): refused after the wait.
	old := leavingWait
	leavingWait = 300 * time.Millisecond
	defer func() { leavingWait = old }()
	r, err = s.CreateNetwork(ctx, &api.CreateNetworkRequest{Spec: netSpec("app2", "", nil)})
	if err != nil {
		t.Fatal(err)
	}
	seed(t, st, &api.Task{Id: "t2", Annotations: &api.Annotations{Name: "web.1.t2"}, Status: &api.TaskStatus{State: api.TaskState_ORPHANED},
		Networks: []*api.NetworkAttachment{{Network: r.GetNetwork(), Addresses: []string{"198.18.1.2/24"}}}})
	_, err = s.RemoveNetwork(ctx, &api.RemoveNetworkRequest{NetworkId: "app2"})
	wantErr(t, api.FromGRPC(err), api.ErrFailedPrecondition, "network app2 is in use by task web.1.t2, still stopping")
}

func update(t *testing.T, st *raftstore.MemoryStore, fn func(tx raftstore.WriteTx) error) {
	t.Helper()
	if err := st.Update(context.Background(), fn); err != nil {
		t.Error(err)
	}
}
