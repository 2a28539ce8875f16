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
