package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/worker"
)

// Containers on attachable overlay networks (`run --network OVERLAY` on a
// swarm node, worker or manager). The managers give the container an
// address (Dispatcher.AttachNetwork: recorded in this node's attachments,
// allocated by the leader's allocator), and the node joins it to the
// overlay with the code service tasks use (worker.OverlayNetwork: the
// network's sandbox, a veth, the gossip, DNS at 127.0.0.11, the gateway
// bridge), as a task whose ID is the container's. Its name answers in the
// cluster's DNS; it resolves services. The attachment is given up when the
// container stops; attachments of containers that went while the daemon
// was down are given up once a session shows them (reconcileAttachments).

// clusterAttachWait bounds a container start's wait for its address.
const clusterAttachWait = 30 * time.Second

// callDispatcher runs fn against a manager's Dispatcher: this node's own
// first if it is one (it forwards to the leader), then the others; a
// manager that cannot be reached is skipped.
func (s *swarmNode) callDispatcher(ctx context.Context, fn func(api.DispatcherClient) error) error {
	s.mu.Lock()
	if s.state == nil || s.id == nil {
		s.mu.Unlock()
		return errNotInSwarm
	}
	addrs := s.state.Managers
	if s.state.Role == roleManager {
		addrs = append([]string{s.state.AdvertiseAddr}, addrs...)
	}
	addrs = dedup(addrs)
	id := s.id
	s.mu.Unlock()
	lastErr := errors.New("no manager known")
	for _, a := range addrs {
		conn, err := id.dial(a)
		if err != nil {
			lastErr = err
			continue
		}
		err = api.FromGRPC(fn(api.NewDispatcherClient(conn)))
		conn.Close()
		if err == nil || !errors.Is(err, api.ErrUnavailable) {
			return err
		}
		lastErr = err
	}
	return fmt.Errorf("no manager answered: %w", lastErr)
}

// overlay is the running agent's overlay, or nil.
func (s *swarmNode) overlay() *overlayNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ov
}

// containerAttachments is what the newest session says of this node's
// container attachments, by container ID.
func (s *swarmNode) containerAttachments() map[string]*api.NetworkAttachment {
	s.sessMu.Lock()
	m := s.lastSession
	s.sessMu.Unlock()
	out := map[string]*api.NetworkAttachment{}
	for _, a := range m.GetNode().GetAttachments() {
		if a.GetContainerId() != "" {
			out[a.GetContainerId()] = a
		}
	}
	return out
}

// clusterNetwork resolves ref as an attachable overlay network of the
// swarm, for a container create: its ID and name. found is false when ref
// is no cluster network (or the node is in no swarm); a network that is
// not attachable is an error, in docker's words.
func (d *Daemon) clusterNetwork(ref string) (id, name string, found bool, err error) {
	if d.swarm == nil || !d.swarm.active() {
		return "", "", false, nil
	}
	ctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	var att *api.NetworkAttachment
	err = d.swarm.callDispatcher(ctx, func(c api.DispatcherClient) error {
		r, err := c.AttachNetwork(ctx, &api.AttachNetworkRequest{Network: ref, CheckOnly: true})
		att = r.GetAttachment()
		return err
	})
	switch {
	case errors.Is(err, api.ErrNotFound):
		return "", "", false, nil
	case errors.Is(err, api.ErrFailedPrecondition):
		return "", "", false, withStatus(http.StatusForbidden, fmt.Errorf("Could not attach to network %s: %w", ref, err))
	case err != nil:
		return "", "", false, fmt.Errorf("network %s: %w", ref, err)
	}
	return att.GetNetwork().GetId(), att.GetNetwork().GetSpec().GetAnnotations().GetName(), true, nil
}

// clusterTask is container id's attachment as the overlay takes a task.
func clusterTask(id, name string, att *api.NetworkAttachment) *api.Task {
	return &api.Task{Id: id, Annotations: &api.Annotations{Name: name}, Networks: []*api.NetworkAttachment{att}}
}

// attachCluster gives container c its address on its cluster network and
// joins it there; it returns the namespace the container joins and what
// inspect shows. On error nothing is left attached.
func (d *Daemon) attachCluster(ctx context.Context, c containers.Container) (string, containers.NetworkSettings, error) {
	ov := d.swarm.overlay()
	if ov == nil {
		return "", containers.NetworkSettings{}, fmt.Errorf("network %s: this node is not in a swarm", c.Config.NetworkMode)
	}
	actx, cancel := context.WithTimeout(ctx, clusterAttachWait)
	defer cancel()
	var att *api.NetworkAttachment
	err := d.swarm.callDispatcher(actx, func(dc api.DispatcherClient) error {
		r, err := dc.AttachNetwork(actx, &api.AttachNetworkRequest{Network: c.Config.ClusterNetwork, ContainerId: c.ID, Aliases: c.Config.ClusterAliases})
		att = r.GetAttachment()
		return err
	})
	if err != nil {
		return "", containers.NetworkSettings{}, fmt.Errorf("attach %s to network %s: %w", c.ID[:12], c.Config.NetworkMode, err)
	}
	ip, subnet, perr := net.ParseCIDR(firstAddr(att))
	if perr != nil || ip.To4() == nil {
		d.detachCluster(context.WithoutCancel(ctx), c.ID)
		return "", containers.NetworkSettings{}, fmt.Errorf("attach %s to network %s: the managers gave no usable address (%q)", c.ID[:12], c.Config.NetworkMode, firstAddr(att))
	}
	t := clusterTask(c.ID, strings.TrimPrefix(c.Name, "/"), att)
	d.clusterMu.Lock()
	d.clusterAtts[c.ID] = att
	d.clusterMu.Unlock()
	if err := ov.Attach(actx, t); err != nil {
		d.detachCluster(context.WithoutCancel(ctx), c.ID)
		return "", containers.NetworkSettings{}, err
	}
	// Served at once: names lead to it from now on (it starts next).
	if err := ov.Serve(actx, t, true); err != nil {
		d.detachCluster(context.WithoutCancel(ctx), c.ID)
		return "", containers.NetworkSettings{}, err
	}
	prefix, _ := subnet.Mask.Size()
	s := containers.NetworkSettings{IPAddress: ip.String(), IPPrefixLen: prefix, MacAddress: overlay.MACFromIP(ip).String()}
	return worker.TaskNetNSPath(taskNetNSDir(d.swarm.files.dir), c.ID), s, nil
}

func firstAddr(a *api.NetworkAttachment) string {
	if len(a.GetAddresses()) == 0 {
		return ""
	}
	return a.GetAddresses()[0]
}

// detachCluster takes container id off its cluster network, on this node
// and at the managers; what is gone already is fine. A manager that cannot
// be reached leaves the attachment in the store until a later session shows
// it again (reconcileAttachments).
func (d *Daemon) detachCluster(ctx context.Context, id string) {
	d.clusterMu.Lock()
	att := d.clusterAtts[id]
	delete(d.clusterAtts, id)
	d.clusterMu.Unlock()
	if d.swarm == nil {
		return
	}
	if att == nil {
		att = d.swarm.containerAttachments()[id]
	}
	if ov := d.swarm.overlay(); ov != nil && att != nil {
		if err := ov.Detach(ctx, clusterTask(id, "", att)); err != nil {
			slog.Warn("detach a container from its cluster network", "container", id, "err", err)
		}
	}
	if att == nil && !d.swarm.active() {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := d.swarm.callDispatcher(dctx, func(dc api.DispatcherClient) error {
		_, err := dc.DetachNetwork(dctx, &api.DetachNetworkRequest{ContainerId: id})
		return err
	})
	if err != nil {
		slog.Warn("give up a container's cluster network address", "container", id, "err", err)
	}
}

// reconcileAttachments gives up the attachments of this node's containers
// that are gone or no longer running (removed, or exited while the daemon
// was down); a container whose network is being set up (its lock held) is
// left alone. It runs beside the caller, one at a time.
func (d *Daemon) reconcileAttachments(atts []*api.NetworkAttachment) {
	var ids []string
	for _, a := range atts {
		if a.GetContainerId() != "" {
			ids = append(ids, a.GetContainerId())
		}
	}
	if len(ids) == 0 || !d.reconciling.CompareAndSwap(false, true) {
		return
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.reconciling.Store(false)
		for _, id := range ids {
			unlock, ok := d.netTryLock(id)
			if !ok {
				continue // being started or stopped: that path decides
			}
			c, err := d.containers.Get(id)
			if errors.Is(err, containers.ErrNotFound) || (err == nil && !c.State.Running) {
				d.detachCluster(d.ctx, id)
			}
			unlock()
		}
	}()
}

// active reports whether the node is in a swarm.
func (s *swarmNode) active() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state != nil
}

// setupClusterNetwork is setupNetworkLocked for a container on a cluster
// network.
func (d *Daemon) setupClusterNetwork(ctx context.Context, c containers.Container) error {
	path, s, err := d.attachCluster(ctx, c)
	if err != nil {
		return err
	}
	return d.containers.SetNetwork(c.ID, path, s)
}

// releaseCluster gives up container id's cluster network, if it has one.
func (d *Daemon) releaseCluster(id string) {
	d.clusterMu.Lock()
	_, ok := d.clusterAtts[id]
	d.clusterMu.Unlock()
	if !ok && d.swarm != nil {
		_, ok = d.swarm.containerAttachments()[id]
	}
	if ok {
		d.detachCluster(context.Background(), id)
	}
}

// adoptCluster joins a running container on a cluster network again after
// a daemon restart (its resolver and its place in the gossip went with the
// old daemon; its namespace and address stayed), once the node's overlay
// runs again.
func (d *Daemon) adoptCluster(c containers.Container) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for range 600 {
			if d.swarm != nil && d.swarm.overlay() != nil {
				break
			}
			select {
			case <-d.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		unlock := d.netLock(c.ID)
		defer unlock()
		if cur, err := d.containers.Get(c.ID); err != nil || !cur.State.Running {
			return // it stopped meanwhile: its watcher releases it
		}
		if _, _, err := d.attachCluster(d.ctx, c); err != nil {
			slog.Warn("join a running container to its cluster network again", "container", c.ID, "err", err)
		}
	}()
}
