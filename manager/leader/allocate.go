package leader

import (
	"context"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/allocator"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// AllocationPendingMessage is the status message of a task that waits for
// its network addresses; the reason is in its Err.
const AllocationPendingMessage = "pending network allocation"

// allocatorLoop gives services their VIPs and tasks their addresses
// (allocator.Allocate) and releases the addresses of ended tasks. Networks
// get their subnet and VNI when created, in the control API. Tasks without
// networks never wait for it: the scheduler takes every task that
// allocator.Allocated says is ready, so a cluster without networks pays
// nothing for this loop.
type allocatorLoop struct {
	cfg Config
}

func newAllocatorLoop(c Config) *loop {
	a := &allocatorLoop{cfg: c}
	return c.newLoop("allocator", []raftstore.Kind{raftstore.KindNetwork, raftstore.KindService, raftstore.KindTask, raftstore.KindNode}, markAllocator, a.pass)
}

// markAllocator: a pass is worth running when a task waits for addresses,
// ended holding some, or gave some up (released or deleted: a task waiting
// on an exhausted subnet may have them now), a service that has or wants
// networks changes, or a network changes.
func markAllocator(ev raftstore.Event, d *dirty) bool {
	switch ev.Kind {
	case raftstore.KindTask:
		t, _ := ev.Object.(*api.Task)
		old, _ := ev.Old.(*api.Task)
		freed := old != nil && allocator.HoldsAddresses(old) && (t == nil || !allocator.HoldsAddresses(t))
		if !freed && (t == nil || !allocator.NeedsPass(t)) {
			return false
		}
	case raftstore.KindNode:
		// A new node needs its ingress entry; a removed one frees it.
		// Other node changes (status, certificate) are not the allocator's.
		n, _ := ev.Object.(*api.Node)
		old, _ := ev.Old.(*api.Node)
		if n != nil && old != nil && proto.Equal(&api.Node{Attachments: n.GetAttachments()}, &api.Node{Attachments: old.GetAttachments()}) {
			return false
		}
	case raftstore.KindService:
		s, _ := ev.Object.(*api.Service)
		old, _ := ev.Old.(*api.Service)
		if !usesNetworks(s) && !usesNetworks(old) {
			return false
		}
	}
	d.all = true
	return true
}

func usesNetworks(s *api.Service) bool {
	return len(s.GetSpec().GetTask().GetNetworks()) > 0 || len(s.GetEndpoint().GetVirtualIps()) > 0 ||
		len(allocator.IngressPorts(s.GetEndpoint().GetPorts())) > 0
}

// pass reads one snapshot, allocates, and writes services first (tasks copy
// their service's VIPs, so they wait for a service write that was refused).
func (a *allocatorLoop) pass(ctx context.Context, _ dirty) (time.Time, error) {
	var snap allocator.Snapshot
	a.cfg.Store.View(func(tx raftstore.ReadTx) {
		tx.ForEach(raftstore.KindNetwork, func(o raftstore.Object) bool {
			snap.Networks = append(snap.Networks, o.(*api.Network))
			return true
		})
		tx.ForEach(raftstore.KindService, func(o raftstore.Object) bool {
			snap.Services = append(snap.Services, o.(*api.Service))
			return true
		})
		tx.ForEach(raftstore.KindTask, func(o raftstore.Object) bool {
			snap.Tasks = append(snap.Tasks, o.(*api.Task))
			return true
		})
		tx.ForEach(raftstore.KindNode, func(o raftstore.Object) bool {
			snap.Nodes = append(snap.Nodes, o.(*api.Node))
			return true
		})
	})
	res := allocator.Allocate(snap)
	if len(res.Nodes) > 0 {
		if err := a.writeNodes(ctx, snap.Nodes, res.Nodes); err != nil {
			return time.Time{}, err
		}
	}
	if len(res.Services) > 0 {
		err := a.cfg.Store.Update(ctx, func(tx raftstore.WriteTx) error {
			for _, s := range res.Services {
				if err := tx.Update(s); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return time.Time{}, fmt.Errorf("write %d services' VIPs: %w", len(res.Services), err)
		}
	}
	now := timestamppb.New(a.cfg.Clock.Now())
	var ops []op
	for _, t := range res.Tasks {
		// A task that waited with a reason is waiting for the scheduler now.
		if t.GetStatus().GetState() == api.TaskState_PENDING && t.GetStatus().GetMessage() == AllocationPendingMessage {
			t.Status.Message, t.Status.Err, t.Status.Timestamp = "allocated", "", now
		}
		ops = append(ops, op{update: t})
	}
	for _, t := range snap.Tasks {
		reason, ok := res.Failed[t.GetId()]
		// Only a new reason is written, as the scheduler does.
		if !ok || (t.GetStatus().GetState() == api.TaskState_PENDING && t.GetStatus().GetErr() == reason) {
			continue
		}
		nt := proto.Clone(t).(*api.Task)
		if nt.Status == nil {
			nt.Status = &api.TaskStatus{}
		}
		nt.Status.State, nt.Status.Message, nt.Status.Err, nt.Status.Timestamp = api.TaskState_PENDING, AllocationPendingMessage, reason, now
		ops = append(ops, op{update: nt})
	}
	return time.Time{}, write(ctx, a.cfg.Store, ops)
}

// writeNodes sets the nodes' attachments as allocated. Node objects are
// written by others too (status, certificates), so each is read again and
// only its attachments are set, if they are still what the pass read: a
// node changed meanwhile under the allocator is left to the next pass.
func (a *allocatorLoop) writeNodes(ctx context.Context, read, changed []*api.Node) error {
	before := map[string]*api.Node{}
	for _, n := range read {
		before[n.GetId()] = n
	}
	err := a.cfg.Store.Update(ctx, func(tx raftstore.WriteTx) error {
		for _, n := range changed {
			cur := tx.GetNode(n.GetId())
			if cur == nil || !proto.Equal(&api.Node{Attachments: cur.GetAttachments()}, &api.Node{Attachments: before[n.GetId()].GetAttachments()}) {
				continue
			}
			nn := proto.Clone(cur).(*api.Node)
			nn.Attachments = n.GetAttachments()
			if err := tx.Update(nn); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %d nodes' ingress addresses: %w", len(changed), err)
	}
	return nil
}
