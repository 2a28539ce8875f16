package leader

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/allocator"
	"github.com/shoal-project/shoal/raftstore"
)

func createNetwork(t *testing.T, s *raftstore.MemoryStore, name, subnet string) *api.Network {
	t.Helper()
	n := &api.Network{Id: raftstore.NewID(), Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: name},
		Ipam: &api.IPAMOptions{Configs: []*api.IPAMConfig{{Subnet: subnet}}}}}
	err := s.Update(context.Background(), func(tx raftstore.WriteTx) error {
		an, err := allocator.AllocateNetwork(allocator.Snapshot{Networks: tx.Networks()}, n)
		if err != nil {
			return err
		}
		n = an
		return tx.Create(n)
	})
	if err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	return n
}

// TestAllocatorLoop: tasks on a network get an address each and are
// scheduled only then; the service gets a VIP; on a network with no address
// left the tasks stay pending with the reason and are not scheduled.
func TestAllocatorLoop(t *testing.T) {
	s := start(t)
	addNodes(t, s, 2)
	app := createNetwork(t, s, "app", "198.18.0.0/24")
	tiny := createNetwork(t, s, "tiny", "198.18.1.0/30") // gateway + one address: the VIP's
	web := newService("web", 3)
	web.Spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: app.GetId()}}
	webID := createService(t, s, web)
	full := newService("full", 2)
	full.Spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: tiny.GetId()}}
	fullID := createService(t, s, full)

	eventually(t, 5*time.Second, func() (bool, string) {
		var seen []string
		ok := true
		s.View(func(tx raftstore.ReadTx) {
			addrs := map[string]bool{}
			for _, tk := range tx.TasksOfService(webID) {
				st := tk.GetStatus().GetState()
				a := ""
				if len(tk.GetNetworks()) == 1 && len(tk.GetNetworks()[0].GetAddresses()) == 1 {
					a = tk.GetNetworks()[0].GetAddresses()[0]
				}
				seen = append(seen, fmt.Sprintf("%s %s", st, a))
				if st != api.TaskState_ASSIGNED || a == "" || addrs[a] || !strings.HasPrefix(a, "198.18.0.") {
					ok = false
				}
				addrs[a] = true
			}
			vips := tx.GetService(webID).GetEndpoint().GetVirtualIps()
			seen = append(seen, fmt.Sprint("vips ", vips))
			if len(vips) != 1 || addrs[vips[0].GetAddr()] || len(addrs) != 3 {
				ok = false
			}
			for _, tk := range tx.TasksOfService(fullID) {
				st := tk.GetStatus()
				seen = append(seen, fmt.Sprintf("full %s %q", st.GetState(), st.GetErr()))
				if st.GetState() != api.TaskState_PENDING || tk.GetNodeId() != "" ||
					!strings.Contains(st.GetErr(), "network tiny: subnet 198.18.1.0/30 is exhausted") {
					ok = false
				}
			}
			if len(tx.TasksOfService(fullID)) != 2 {
				ok = false
			}
		})
		return ok, strings.Join(seen, "; ")
	})
}

// TestAllocatorLoopReusesFreedAddress: a task waiting on an exhausted subnet
// gets the address a VIP or a deleted task gives up, without any other change.
func TestAllocatorLoopReusesFreedAddress(t *testing.T) {
	s := start(t)
	addNodes(t, s, 1)
	tiny := createNetwork(t, s, "tiny", "198.18.1.0/30") // gateway + one address
	svc := newService("one", 2)
	svc.Spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: tiny.GetId()}}
	id := createService(t, s, svc)
	holder := func() (string, string) {
		var who, seen string
		s.View(func(tx raftstore.ReadTx) {
			if v := tx.GetService(id).GetEndpoint().GetVirtualIps(); len(v) > 0 {
				who = "vip " + v[0].GetAddr()
			}
			for _, tk := range tx.TasksOfService(id) {
				seen += fmt.Sprintf("%s %s %v %q; ", tk.GetId(), tk.GetStatus().GetState(), tk.GetNetworks(), tk.GetStatus().GetErr())
				if allocator.HoldsAddresses(tk) {
					who = tk.GetId()
				}
			}
		})
		return who, seen
	}
	eventually(t, 5*time.Second, func() (bool, string) { who, seen := holder(); return who == "vip 198.18.1.2/30", seen })
	// dnsrr: the VIP goes, and one task gets its address.
	update(t, s, func(tx raftstore.ReadTx) *api.Service { return tx.GetService(id) }, func(x *api.Service) {
		x.Spec.Endpoint = &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}
	})
	var first string
	eventually(t, 5*time.Second, func() (bool, string) {
		who, seen := holder()
		first = who
		return who != "" && !strings.HasPrefix(who, "vip"), seen
	})
	// The holder is deleted (reaped): the other task gets the address.
	if err := s.Update(context.Background(), func(tx raftstore.WriteTx) error { return tx.Delete(raftstore.KindTask, first) }); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() (bool, string) { who, seen := holder(); return who != "" && who != first, seen })
}

// TestMarkAllocatorFreed: giving addresses up (a release or a deletion) is
// worth a pass, since a task may wait on an exhausted subnet; a running
// task's status report is not.
func TestMarkAllocatorFreed(t *testing.T) {
	spec := &api.TaskSpec{Networks: []*api.NetworkAttachmentConfig{{Target: "n"}}}
	held := []*api.NetworkAttachment{{Network: &api.Network{Id: "n"}, Addresses: []string{"198.18.1.2/30"}}}
	running := &api.Task{Id: "t", Spec: spec, Networks: held, DesiredState: api.TaskState_RUNNING, Status: &api.TaskStatus{State: api.TaskState_RUNNING}}
	released := &api.Task{Id: "t", Spec: spec, Networks: []*api.NetworkAttachment{{Network: &api.Network{Id: "n"}}},
		DesiredState: api.TaskState_SHUTDOWN, Status: &api.TaskStatus{State: api.TaskState_FAILED}}
	for _, c := range []struct {
		what     string
		old, now *api.Task
		want     bool
	}{
		{"deleted", running, nil, true},
		{"released", running, released, true},
		{"status report", running, running, false},
	} {
		var d dirty
		ev := raftstore.Event{Kind: raftstore.KindTask}
		if c.old != nil {
			ev.Old = c.old
		}
		if c.now != nil {
			ev.Object = c.now
		}
		if got := markAllocator(ev, &d); got != c.want {
			t.Errorf("%s: mark = %v, want %v", c.what, got, c.want)
		}
	}
}
