package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// Containers on attachable overlays. Swarm makes a "network attachment"
// task per container; here the request is recorded in the calling node's
// attachments (api.Node.attachments with a container ID), where the
// leader's allocator gives it an address as it gives the node its ingress
// entry: one writer of addresses, derived from the store, so never twice.
// The node's session carries the attachments, which is how the node finds
// the ones of containers that went while it was down.

// attachWait bounds how long AttachNetwork waits for the allocator.
const attachWait = 15 * time.Second

// ErrNotAttachable is docker's refusal of a network that is not attachable.
var ErrNotAttachable = errors.New("not manually attachable")

// findNetwork resolves ref (an ID, a name, a unique ID prefix).
func findNetwork(tx raftstore.ReadTx, ref string) (*api.Network, error) {
	var byPrefix []*api.Network
	for _, n := range tx.Networks() {
		if n.GetId() == ref || n.GetSpec().GetAnnotations().GetName() == ref {
			return n, nil
		}
		if strings.HasPrefix(n.GetId(), ref) {
			byPrefix = append(byPrefix, n)
		}
	}
	if len(byPrefix) == 1 && ref != "" {
		return byPrefix[0], nil
	}
	return nil, api.Wrap(api.ErrNotFound, fmt.Errorf("network %s not found", ref))
}

// AttachNetwork implements api.DispatcherServer.
func (d *Dispatcher) AttachNetwork(ctx context.Context, req *api.AttachNetworkRequest) (*api.AttachNetworkResponse, error) {
	att, err := d.attach(ctx, req)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.AttachNetworkResponse{Attachment: att}, nil
}

func (d *Dispatcher) attach(ctx context.Context, req *api.AttachNetworkRequest) (*api.NetworkAttachment, error) {
	nodeID, err := d.cfg.NodeID(ctx)
	if err != nil {
		return nil, err
	}
	var n *api.Network
	d.cfg.Store.View(func(tx raftstore.ReadTx) { n, err = findNetwork(tx, req.GetNetwork()) })
	if err != nil {
		return nil, err
	}
	name := n.GetSpec().GetAnnotations().GetName()
	if !n.GetSpec().GetAttachable() || n.GetSpec().GetIngress() {
		return nil, api.Wrap(api.ErrFailedPrecondition, fmt.Errorf("network %s %w", name, ErrNotAttachable))
	}
	if req.GetCheckOnly() {
		return &api.NetworkAttachment{Network: n}, nil
	}
	cid := req.GetContainerId()
	if cid == "" {
		return nil, api.Wrap(api.ErrInvalidArgument, errors.New("attach network: no container ID"))
	}
	mine := func(a *api.NetworkAttachment) bool {
		return a.GetContainerId() == cid && a.GetNetwork().GetId() == n.GetId()
	}
	// The watch starts before the write, so the allocator's answer is not
	// missed.
	var got *api.NetworkAttachment
	read := func(tx raftstore.ReadTx) {
		if node := tx.GetNode(nodeID); node != nil {
			if i := slices.IndexFunc(node.GetAttachments(), mine); i >= 0 && len(node.GetAttachments()[i].GetAddresses()) > 0 {
				got = node.GetAttachments()[i]
			}
		}
	}
	w := d.cfg.Store.ViewAndWatch(0, read, raftstore.KindNode)
	defer func() { w.Close() }() // w is replaced after an overflow
	if got != nil {
		return got, nil // attached already (a retried request)
	}
	err = d.cfg.Store.Update(ctx, func(tx raftstore.WriteTx) error {
		node := tx.GetNode(nodeID)
		if node == nil {
			return api.Wrap(api.ErrNotFound, fmt.Errorf("node %s not found", nodeID))
		}
		if slices.ContainsFunc(node.GetAttachments(), mine) {
			return nil
		}
		nn := proto.Clone(node).(*api.Node)
		nn.Attachments = append(nn.Attachments, &api.NetworkAttachment{Network: proto.Clone(n).(*api.Network),
			ContainerId: cid, Aliases: slices.Clone(req.GetAliases())})
		return tx.Update(nn)
	})
	if err != nil {
		return nil, fmt.Errorf("attach %s to network %s: %w", cid, name, err)
	}
	timer := time.NewTimer(attachWait)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			// Not left pending: the caller fails, and its retry asks anew.
			d.detach(context.WithoutCancel(ctx), nodeID, cid)
			return nil, api.Wrap(api.ErrUnavailable, fmt.Errorf("network %s: no address for container %s within %s (is its subnet full?)", name, cid, attachWait))
		case _, ok := <-w.C():
			if !ok {
				w.Close()
				w = d.cfg.Store.ViewAndWatch(0, read, raftstore.KindNode)
			} else {
				d.cfg.Store.View(read)
			}
			if got != nil {
				return got, nil
			}
		}
	}
}

// DetachNetwork implements api.DispatcherServer.
func (d *Dispatcher) DetachNetwork(ctx context.Context, req *api.DetachNetworkRequest) (*api.DetachNetworkResponse, error) {
	nodeID, err := d.cfg.NodeID(ctx)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	if req.GetContainerId() == "" {
		return nil, api.ToGRPC(api.Wrap(api.ErrInvalidArgument, errors.New("detach network: no container ID")))
	}
	if err := d.detach(ctx, nodeID, req.GetContainerId()); err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.DetachNetworkResponse{}, nil
}

// detach removes container cid's attachments from node nodeID.
func (d *Dispatcher) detach(ctx context.Context, nodeID, cid string) error {
	return d.cfg.Store.Update(ctx, func(tx raftstore.WriteTx) error {
		node := tx.GetNode(nodeID)
		if node == nil {
			return nil
		}
		keep := slices.DeleteFunc(slices.Clone(node.GetAttachments()), func(a *api.NetworkAttachment) bool { return a.GetContainerId() == cid })
		if len(keep) == len(node.GetAttachments()) {
			return nil
		}
		nn := proto.Clone(node).(*api.Node)
		nn.Attachments = keep
		return tx.Update(nn)
	})
}
