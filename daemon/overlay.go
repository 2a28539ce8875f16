package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager"
	"github.com/shoal-project/shoal/overlaynet/dns"
	"github.com/shoal-project/shoal/overlaynet/encrypt"
	"github.com/shoal-project/shoal/overlaynet/overlay"
	"github.com/shoal-project/shoal/overlaynet/peers"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
	"github.com/shoal-project/shoal/worker"
)

// overlayReadyWait bounds how long a task detach waits for the overlay to
// start (an orphan's cleanup must not hang the agent on a node whose
// sessions bring no key).
const overlayReadyWait = 30 * time.Second

// overlayRejoin is how often a node that sees a manager missing from its
// gossip members tries to join the managers again.
const overlayRejoin = 2 * time.Second

// taskNetNSDir is where task network namespaces live under the swarm
// directory: the runtime (which the container joins) and the overlay
// (which plumbs it) must agree on it.
func taskNetNSDir(swarmDir string) string { return filepath.Join(swarmDir, "netns") }

// ingressEntryPath is the namespace file of the node's routing-mesh entry
// sandbox.
func ingressEntryPath(swarmDir string) string { return filepath.Join(swarmDir, "ingress-sbox") }

// overlaySettings is what the managers' sessions tell the node about the
// overlay.
type overlaySettings struct {
	keys     [][]byte // newest first
	port     int
	managers []string // gossip hosts of the managers
	// ingress is the node's address on the ingress network (nil: none).
	ingress *api.NetworkAttachment
}

// overlayNode is the node's overlay networking while it is in a swarm: the
// VXLAN sandboxes (overlay.Manager) and the gossip of endpoints
// (peers.Peers). Both start once a session brought a gossip key, since
// gossip is never sent in clear; until then a task attach waits. It is the
// agent's worker.Network.
type overlayNode struct {
	dir    string // the swarm directory
	nodeID string
	addr   net.IP // the advertise address: VTEP and gossip address
	log    *slog.Logger
	// gw is the node's NAT bridge, tasks' way out (nil: none).
	gw *gwBridge

	updates chan struct{}
	ready   chan struct{} // closed once net is set

	mu      sync.Mutex
	want    *overlaySettings // the newest settings from a session
	net     *worker.OverlayNetwork
	members *peers.Peers
	mesh    *worker.Ingress
}

var _ worker.Network = (*overlayNode)(nil)

// newOverlayNode checks the advertise address (host:port); run starts it.
func newOverlayNode(dir, nodeID, advertise string) (*overlayNode, error) {
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		host = advertise
	}
	ip := net.ParseIP(host).To4()
	if ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("overlay: advertise address %q is not a concrete IPv4 address", advertise)
	}
	return &overlayNode{dir: dir, nodeID: nodeID, addr: ip, log: slog.Default(),
		updates: make(chan struct{}, 1), ready: make(chan struct{})}, nil
}

// follow takes a session message's overlay settings without blocking (it
// runs on the agent's session goroutine).
func (o *overlayNode) follow(m *api.SessionMessage) {
	if len(m.GetGossipKeys()) == 0 {
		return
	}
	s := &overlaySettings{keys: m.GetGossipKeys(), port: int(m.GetDataPathPort())}
	for _, a := range m.GetNode().GetAttachments() {
		if a.GetNetwork().GetSpec().GetIngress() {
			s.ingress = a
		}
	}
	for _, p := range m.GetManagers() {
		host, _, err := net.SplitHostPort(p.GetAddr())
		if err == nil && !net.ParseIP(host).Equal(o.addr) {
			s.managers = append(s.managers, host)
		}
	}
	o.mu.Lock()
	o.want = s
	o.mu.Unlock()
	select {
	case o.updates <- struct{}{}:
	default:
	}
}

// run applies the settings sessions bring until ctx ends, then leaves the
// gossip (the others withdraw this node's endpoints at once). Sandboxes and
// task namespaces stay: running containers keep their connectivity, and a
// restart adopts them.
func (o *overlayNode) run(ctx context.Context) {
	stopGossip := func() {}
	// A join waits up to memberlist's TCP timeout for a manager that is
	// down: it runs beside the loop, one at a time, and is waited for
	// before the gossip stops.
	var joins sync.WaitGroup
	var joining atomic.Bool
	defer joins.Wait()
	defer func() {
		o.mu.Lock()
		n := o.net
		o.mu.Unlock()
		if n != nil {
			n.Overlay.CloseTunnels()
		}
		if p := o.gossip(); p != nil {
			if err := p.Leave(time.Second); err != nil {
				o.log.Debug("overlay: leave gossip", "err", err)
			}
		}
		stopGossip()
	}()
	var applied *overlaySettings
	lastErr := "" // a start failure is logged once, not at every retry
	tick := time.NewTicker(overlayRejoin)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-o.updates:
		case <-tick.C:
		}
		o.mu.Lock()
		want := o.want
		o.mu.Unlock()
		if want == nil {
			continue
		}
		if o.gossip() == nil {
			// Not ended by ctx: the deferred Leave needs gossip up.
			gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			if err := o.start(gctx, want); err != nil {
				cancel()
				if err.Error() != lastErr {
					lastErr = err.Error()
					o.log.Error("overlay: cannot start; tasks on overlay networks wait", "err", err)
				}
				continue
			}
			stopGossip = cancel
			applied = want
		}
		p := o.gossip()
		if want != applied && !slices.EqualFunc(want.keys, applied.keys, bytes.Equal) {
			if err := p.SetKeys(want.keys); err != nil {
				o.log.Error("overlay: gossip keys", "err", err)
			}
			// Encrypted networks' tunnels follow the newest key.
			if err := o.net.Overlay.Rekey(o.dataKey); err != nil {
				o.log.Error("overlay: encrypted networks' keys", "err", err)
			} else if len(want.keys) > 0 && len(applied.keys) > 0 && !bytes.Equal(want.keys[0], applied.keys[0]) {
				// A rotation (not the previous key's drop after the
				// overlap): said once per rotation, for operators and tests.
				o.log.Info("overlay: new cluster data key: gossip and encrypted networks' tunnels re-keyed")
			}
		}
		applied = want
		o.mu.Lock()
		mesh := o.mesh
		o.mu.Unlock()
		mesh.SetEntry(want.ingress)
		// A manager this node gave up for dead (or a partition's other
		// side) is joined again, which is a full state exchange: waiting for
		// memberlist's own push-pull left a healed partition without an
		// overlay path for up to a minute.
		if missing := p.Missing(want.managers); len(missing) > 0 && joining.CompareAndSwap(false, true) {
			joins.Add(1)
			go func() {
				defer joins.Done()
				defer joining.Store(false)
				if err := p.Join(missing); err != nil {
					o.log.Debug("overlay: join gossip", "err", err)
				}
			}()
		}
	}
}

// start makes the overlay manager (adopting the sandboxes of an earlier
// run) and the gossip member.
func (o *overlayNode) start(ctx context.Context, s *overlaySettings) error {
	ov, err := overlay.New(overlay.Config{Root: filepath.Join(o.dir, "overlay"), LocalIP: o.addr, DataPort: s.port})
	if err != nil {
		return err
	}
	// Names that are not the cluster's go to the host's resolvers.
	resolv, err := os.ReadFile(hostResolvConf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("overlay: service discovery: %w", err)
	}
	disc := worker.NewDiscovery(ctx, dns.HostUpstreams(resolv))
	mesh, err := worker.NewIngress(ov, ingressEntryPath(o.dir))
	if err != nil {
		return err
	}
	changed := func() { disc.Changed(); mesh.Changed() }
	p, err := peers.Start(ctx, peers.Config{NodeName: o.nodeID, BindAddr: o.addr, VTEP: o.addr, Port: manager.GossipPort,
		Keys: s.keys, Program: ov, Changed: changed, LogOutput: gossipLog{o.log}})
	if err != nil {
		return err
	}
	mesh.Source = p
	n := &worker.OverlayNetwork{Overlay: ov, Peers: p, NetNSDir: taskNetNSDir(o.dir), Discovery: disc, Ingress: mesh,
		DataKey: o.dataKey}
	if o.gw != nil {
		// A bridge that cannot be adopted fails the tasks that need it
		// (Join opens it again), not the overlay of every task.
		if err := o.gw.adopt(ctx); err != nil {
			o.log.Error("overlay: adopt the gateway bridge", "err", err)
		}
		n.Gateway = o.gw
	}
	disc.Source = p
	go disc.Run(ctx)
	go mesh.Run(ctx)
	o.mu.Lock()
	o.members = p
	o.net = n
	o.mesh = mesh
	o.mu.Unlock()
	close(o.ready)
	o.log.Info("overlay: started", "vtep", o.addr, "data-port", s.port)
	return nil
}

// gossipLog passes memberlist's log lines ("... [LEVEL] memberlist: msg")
// to the daemon's log at their level, so that a partition or a refused key
// shows in it.
type gossipLog struct{ l *slog.Logger }

func (g gossipLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if i := strings.Index(line, "["); i >= 0 {
		line = line[i:]
	}
	level := slog.LevelDebug
	switch {
	case strings.HasPrefix(line, "[ERR]"):
		level = slog.LevelError
	case strings.HasPrefix(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.HasPrefix(line, "[INFO]"):
		level = slog.LevelInfo
	}
	g.l.Log(context.Background(), level, "gossip: "+line)
	return len(p), nil
}

// dataKey is encrypted network vni's key from the newest cluster key the
// sessions brought (nil before the first).
func (o *overlayNode) dataKey(vni uint32) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.want == nil || len(o.want.keys) == 0 {
		return nil
	}
	return encrypt.NetworkKey(o.want.keys[0], vni)
}

func (o *overlayNode) gossip() *peers.Peers {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.members
}

// wait returns the running overlay once it has started.
func (o *overlayNode) wait(ctx context.Context) (*worker.OverlayNetwork, error) {
	select {
	case <-o.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("overlay networking not started (no gossip key from the managers yet): %w", ctx.Err())
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.net, nil
}

// Attach implements worker.Network; it waits for the overlay to start.
func (o *overlayNode) Attach(ctx context.Context, t *api.Task) error {
	if len(t.GetNetworks()) == 0 {
		return nil
	}
	n, err := o.wait(ctx)
	if err != nil {
		return fmt.Errorf("attach task %s: %w", t.GetId(), err)
	}
	return n.Attach(ctx, t)
}

// Serve implements worker.ServingNetwork; before the overlay started no
// task is attached, so there is nothing to serve.
func (o *overlayNode) Serve(ctx context.Context, t *api.Task, on bool) error {
	o.mu.Lock()
	n := o.net
	o.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.Serve(ctx, t, on)
}

// Detach implements worker.Network; it waits for the overlay to start, a
// bounded time.
func (o *overlayNode) Detach(ctx context.Context, t *api.Task) error {
	wctx, cancel := context.WithTimeout(ctx, overlayReadyWait)
	defer cancel()
	n, err := o.wait(wctx)
	if err != nil {
		return fmt.Errorf("detach task %s: %w", t.GetId(), err)
	}
	return n.Detach(ctx, t)
}

// removeOverlay takes the node's overlay down when it leaves the swarm,
// once its task containers are gone: each task's endpoints and namespace,
// and with the last endpoint of a network its sandbox (VXLAN device
// first), then the node's NAT bridge (gwSubnet is the daemon's
// --gwbridge-subnet). It must run before the swarm directory is removed,
// which the namespaces' mounts would otherwise keep (and their links leak).
func removeOverlay(ctx context.Context, dir, advertise, gwSubnet string) error {
	netnsDir := taskNetNSDir(dir)
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("overlay: list task namespaces: %w", err)
	}
	o, err := newOverlayNode(dir, "", advertise)
	if err != nil {
		return err
	}
	// New also removes the sandboxes left without an endpoint.
	ov, err := overlay.New(overlay.Config{Root: filepath.Join(dir, "overlay"), LocalIP: o.addr})
	if err != nil {
		return err
	}
	errs := []error{worker.RemoveIngress(ctx, ov, ingressEntryPath(dir))}
	for _, e := range ents {
		path := filepath.Join(netnsDir, e.Name())
		id := strings.TrimPrefix(e.Name(), "task-")
		if worker.TaskNetNSPath(netnsDir, id) != path {
			continue // not a task's namespace
		}
		errs = append(errs, ov.DetachAll(id), sandbox.Remove(path))
	}
	errs = append(errs, newGWBridge(dir, gwSubnet).remove(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	return nil
}
