// Package dispatcher is the manager side of worker sessions: the server of
// api's Dispatcher gRPC service. It runs on the raft leader only.
//
// A worker's agent opens a Session (its node ID comes from its mTLS
// certificate, through Config.NodeID); the dispatcher marks the node READY
// and sends the session ID, the node and the manager list. The agent then
// sends a Heartbeat every period the response names; a node whose deadline
// (HeartbeatPeriod x MissedHeartbeats) passes is marked DOWN in one store
// transaction, and the orchestrator moves its tasks. Assignments streams the
// node's tasks (a COMPLETE set, then INCREMENTAL changes from a store watch,
// and a new COMPLETE set after the watch overflows). UpdateTaskStatus
// validates reports (the caller's tasks only; stale or backward ones are
// dropped, never an error) and a single batcher goroutine writes them in few
// transactions.
//
// Timing choice: swarmkit beats every 5 s and declares a node down after 3
// missed beats (15 s). shoal's target is that a lost worker's tasks run
// elsewhere in under 5 s, so the default period is 1 s and the grace 3
// periods: a dead node is DOWN about 3 s after its last heartbeat, leaving
// ~2 s for the orchestrator, scheduler and the new node's start. A heartbeat
// is one small unary RPC and no raft write (deadlines live in the leader's
// memory), so 1 s costs little even for thousands of nodes. A node whose
// heartbeats arrive late (a loaded machine) gets a grace scaled by its gaps,
// up to MaxGracePeriods, and one round of the deadline watcher marks at most
// a tenth of the nodes down (deadlines.go; docs/cluster.md "Liveness").
//
// Goroutines: Run starts the deadline watcher and the status batcher and
// returns when its context ends, after both stopped; each RPC's stream ends
// with its session, which ends when replaced, expired or Run stops.
package dispatcher

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Defaults of Config.
const (
	DefaultHeartbeatPeriod  = time.Second
	DefaultMissedHeartbeats = 3
	DefaultBatchInterval    = 100 * time.Millisecond
	DefaultBatchMax         = 10000
)

var (
	// ErrSessionInvalid refuses a call whose session ID is not the node's
	// current session (replaced, expired, or from before a leader change):
	// the agent opens a new Session. Class NotFound, as in swarmkit.
	ErrSessionInvalid = api.Wrap(api.ErrNotFound, errors.New("dispatcher: session invalid"))
	// ErrNotRunning refuses calls while Run is not running (a follower, or
	// a leader still starting): the agent retries, possibly elsewhere.
	ErrNotRunning = api.Wrap(api.ErrUnavailable, errors.New("dispatcher: not running"))
	// ErrUnknownNode refuses a session from a node that has no Node object
	// (never joined, or removed).
	ErrUnknownNode = api.Wrap(api.ErrNotFound, errors.New("dispatcher: node is not a member of the cluster"))
)

// Config is what a Dispatcher needs. Store and NodeID are required.
type Config struct {
	Store *raftstore.MemoryStore
	// NodeID returns the calling node's ID from the RPC's context: in
	// production the CN of the peer's verified mTLS certificate.
	NodeID func(ctx context.Context) (string, error)
	// Managers returns the managers agents may connect to. Nil means: the
	// nodes in the store with a manager status, weight 1 each.
	Managers func() []*api.WeightedPeer
	// RootCA is the PEM sent to agents in every SessionMessage.
	RootCA []byte
	// TrustBundle, when set, gives that PEM at each send instead: it
	// changes during a root rotation.
	TrustBundle func() []byte
	// Clock defaults to the real clock.
	Clock Clock
	// HeartbeatPeriod is how often agents beat (DefaultHeartbeatPeriod).
	HeartbeatPeriod time.Duration
	// MissedHeartbeats is how many periods a node may stay silent before it
	// is marked DOWN (DefaultMissedHeartbeats).
	MissedHeartbeats int
	// BatchInterval and BatchMax bound how long status updates wait and how
	// many are written at once (DefaultBatchInterval, DefaultBatchMax).
	BatchInterval time.Duration
	BatchMax      int
	// WatchBuffer is how many store batches a session's watch may fall
	// behind before it is resynced with a COMPLETE set
	// (raftstore.DefaultWatchBuffer).
	WatchBuffer int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnStatusFlush, if set, is called by the batcher with the number of
	// statuses each flush wrote.
	OnStatusFlush func(n int)
	// Beats, when set, is the heartbeat fast path (package heartbeat's
	// table): each session gets a slot there, announced to its agent with
	// BeatAddr (host:port, UDP), and the beats that arrived through it
	// count when the node's deadline falls due.
	Beats    BeatTable
	BeatAddr string
}

// BeatTable is the heartbeat fast path's record of sessions and their
// beats (heartbeat.Table).
type BeatTable interface {
	Assign() (slot uint32, gen uint64, key []byte, err error)
	Release(slot uint32, gen uint64)
	Seen(slot uint32, gen uint64) (at time.Time, count uint64, ok bool)
}

// session is one node's current session.
type session struct {
	id     string
	nodeID string
	ctx    context.Context
	cancel context.CancelFunc
	// beat is the session's slot in the fast path's table (nil: none).
	beat *beatSlot
}

// beatSlot is a session's slot in Config.Beats and how many of its beats
// the deadlines have taken (d.mu guards counted).
type beatSlot struct {
	slot    uint32
	gen     uint64
	key     []byte
	counted uint64
}

// Dispatcher serves api.DispatcherServer. Create with New, run with Run.
type Dispatcher struct {
	api.UnimplementedDispatcherServer

	cfg     Config
	batcher *batcher
	log     *slog.Logger

	// mu guards everything below.
	mu        sync.Mutex
	runCtx    context.Context // nil while Run is not running
	sessions  map[string]*session
	deadlines *deadlines
	// wake tells the deadline watcher that an earlier deadline was added.
	wake chan struct{}

	// statusLocks serialise each node's status writes (READY on session,
	// DOWN on expiry) so that a DOWN decided before a reconnect can never
	// land after that reconnect's READY.
	statusLocks nodeLocks
}

// New checks cfg, fills defaults and returns a Dispatcher that serves once
// Run is running.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.NodeID == nil {
		return nil, api.Wrap(api.ErrInvalidArgument, errors.New("dispatcher: config needs Store and NodeID"))
	}
	if cfg.HeartbeatPeriod < 0 || cfg.MissedHeartbeats < 0 || cfg.BatchInterval < 0 || cfg.BatchMax < 0 || cfg.WatchBuffer < 0 {
		return nil, api.Wrap(api.ErrInvalidArgument, errors.New("dispatcher: negative timing or batch size"))
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.HeartbeatPeriod == 0 {
		cfg.HeartbeatPeriod = DefaultHeartbeatPeriod
	}
	if cfg.MissedHeartbeats == 0 {
		cfg.MissedHeartbeats = DefaultMissedHeartbeats
	}
	if cfg.BatchInterval == 0 {
		cfg.BatchInterval = DefaultBatchInterval
	}
	if cfg.BatchMax == 0 {
		cfg.BatchMax = DefaultBatchMax
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Dispatcher{
		cfg:       cfg,
		log:       cfg.Logger,
		sessions:  make(map[string]*session),
		deadlines: newDeadlines(),
		wake:      make(chan struct{}, 1),
	}
	d.batcher = &batcher{
		store: cfg.Store, clock: cfg.Clock, interval: cfg.BatchInterval, max: cfg.BatchMax,
		in: make(chan statusRequest, 64), onFlush: cfg.OnStatusFlush,
		logf: func(format string, args ...any) { d.log.Warn(fmt.Sprintf(format, args...)) },
	}
	return d, nil
}

// HeartbeatPeriod is the period agents are told to beat at (the
// configured one, or DefaultHeartbeatPeriod).
func (d *Dispatcher) HeartbeatPeriod() time.Duration { return d.cfg.HeartbeatPeriod }

// grace is how long a node that beats every period may stay silent.
func (d *Dispatcher) grace() time.Duration {
	return d.cfg.HeartbeatPeriod * time.Duration(d.cfg.MissedHeartbeats)
}

// MaxGracePeriods caps a slow node's grace, in heartbeat periods: 10 s at the
// default period. An agent waits as long for a heartbeat's answer before it
// leaves a manager (worker.heartbeatTimeout): past it this manager has
// declared the node down anyway.
const MaxGracePeriods = 10

// maxGrace is the longest a node may stay silent.
func (d *Dispatcher) maxGrace() time.Duration {
	return max(d.grace(), d.cfg.HeartbeatPeriod*MaxGracePeriods)
}

// downPerRound is how many silent nodes one round of the deadline watcher
// marks down: a tenth of the nodes with a session, at least one. d.mu held.
func (d *Dispatcher) downPerRound() int {
	return max(1, len(d.sessions)/10)
}

// Run serves until ctx ends (leadership lost, shutdown), then ends every
// session and returns once its goroutines stopped. Nodes the store holds as
// READY get a deadline of twice the grace at start (agents need time to find
// a new leader); those that never open a session here are marked DOWN.
func (d *Dispatcher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.mu.Lock()
	if d.runCtx != nil {
		d.mu.Unlock()
		return api.Wrap(api.ErrFailedPrecondition, errors.New("dispatcher: already running"))
	}
	d.runCtx = ctx
	start := d.cfg.Clock.Now().Add(2 * d.grace())
	d.cfg.Store.View(func(tx raftstore.ReadTx) {
		tx.ForEach(raftstore.KindNode, func(o raftstore.Object) bool {
			if n, ok := o.(*api.Node); ok && n.GetStatus().GetState() == api.NodeStatus_READY {
				d.deadlines.set(n.GetId(), start)
			}
			return true
		})
	})
	d.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.batcher.run(ctx) }()
	go func() { defer wg.Done(); d.watchDeadlines(ctx) }()
	<-ctx.Done()
	wg.Wait()

	d.mu.Lock()
	for id, s := range d.sessions {
		s.cancel()
		delete(d.sessions, id)
	}
	d.deadlines = newDeadlines()
	d.runCtx = nil
	d.mu.Unlock()
	return nil
}

// watchDeadlines marks nodes DOWN when their heartbeat deadline passes.
func (d *Dispatcher) watchDeadlines(ctx context.Context) {
	for {
		d.mu.Lock()
		next, ok := d.deadlines.next()
		d.mu.Unlock()
		var timer <-chan time.Time
		if ok {
			timer = d.cfg.Clock.After(next.Sub(d.cfg.Clock.Now()))
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
			continue
		case <-timer:
		}
		now := d.cfg.Clock.Now()
		d.mu.Lock()
		d.countFastBeats()
		expired := d.deadlines.ration(d.deadlines.expired(now), d.downPerRound(), now.Add(d.cfg.HeartbeatPeriod))
		for _, n := range expired {
			if s := d.sessions[n]; s != nil {
				s.cancel()
				delete(d.sessions, n)
			}
		}
		d.mu.Unlock()
		if len(expired) == 0 {
			continue
		}
		if err := d.markDown(ctx, expired); err != nil {
			if ctx.Err() != nil {
				return
			}
			d.log.Warn("dispatcher: marking nodes down", "nodes", expired, "err", err)
			// Try again a period from now, unless the node came back.
			retry := d.cfg.Clock.Now().Add(d.cfg.HeartbeatPeriod)
			d.mu.Lock()
			for _, n := range expired {
				if d.sessions[n] == nil {
					d.deadlines.set(n, retry)
				}
			}
			d.mu.Unlock()
		}
	}
}

// countFastBeats takes the beats that arrived through the fast path since
// the last look as heartbeats (at the time the last of them arrived). It
// runs when a deadline falls due, before the expired nodes are picked:
// the table is read then, not at every beat. d.mu held.
func (d *Dispatcher) countFastBeats() {
	if d.cfg.Beats == nil {
		return
	}
	for node, s := range d.sessions {
		b := s.beat
		if b == nil {
			continue
		}
		at, count, ok := d.cfg.Beats.Seen(b.slot, b.gen)
		if !ok || count <= b.counted {
			continue
		}
		d.deadlines.counted(node, at, count-b.counted, d.cfg.HeartbeatPeriod, d.grace(), d.maxGrace())
		b.counted = count
	}
}

// markDown writes DOWN for nodes, in one transaction, skipping any that
// opened a new session meanwhile.
func (d *Dispatcher) markDown(ctx context.Context, nodes []string) error {
	defer d.statusLocks.lock(nodes...)()
	var down []string
	err := d.updateNodes(ctx, func(tx raftstore.WriteTx) error {
		down = down[:0]
		for _, id := range nodes {
			d.mu.Lock()
			back := d.sessions[id] != nil
			d.mu.Unlock()
			n := tx.GetNode(id)
			if back || n == nil || n.GetStatus().GetState() == api.NodeStatus_DOWN {
				continue
			}
			n.Status = &api.NodeStatus{State: api.NodeStatus_DOWN, Message: "heartbeat failure", Addr: n.GetStatus().GetAddr()}
			if err := tx.Update(n); err != nil {
				return err
			}
			down = append(down, id)
		}
		return nil
	})
	if err == nil {
		// One line per transition: make bench counts them.
		for _, id := range down {
			d.log.Info("dispatcher: node down", "node", id, "reason", "heartbeat failure")
		}
	}
	return err
}

// updateNodes runs a store update, retrying when it lost a version race
// with another writer of the same node (controlapi updating its spec).
func (d *Dispatcher) updateNodes(ctx context.Context, fn func(raftstore.WriteTx) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = d.cfg.Store.Update(ctx, fn); !errors.Is(err, api.ErrConflict) {
			return err
		}
	}
	return err
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// openSession makes (or resumes, if resumeID is the node's current session)
// the node's session, replacing any other, and starts its deadline.
func (d *Dispatcher) openSession(nodeID, resumeID string) (*session, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runCtx == nil {
		return nil, ErrNotRunning
	}
	old := d.sessions[nodeID]
	if old != nil && resumeID != "" && old.id == resumeID && old.ctx.Err() == nil {
		d.deadlines.set(nodeID, d.cfg.Clock.Now().Add(d.grace()))
		return old, nil
	}
	if old != nil {
		old.cancel()
	}
	ctx, cancel := context.WithCancel(d.runCtx)
	s := &session{id: newSessionID(), nodeID: nodeID, ctx: ctx, cancel: cancel}
	if d.cfg.Beats != nil {
		// A table without room leaves the session to gRPC heartbeats.
		if slot, gen, key, err := d.cfg.Beats.Assign(); err == nil {
			s.beat = &beatSlot{slot: slot, gen: gen, key: key}
			beats := d.cfg.Beats
			context.AfterFunc(ctx, func() { beats.Release(slot, gen) })
		} else {
			d.log.Warn("dispatcher: no heartbeat fast path for session", "node", nodeID, "err", err)
		}
	}
	d.sessions[nodeID] = s
	// The agent cannot beat before it has the session ID, which it gets
	// after the READY write: until then the longest grace, so that a write
	// slowed by a busy leader does not expire the session it opens (Session
	// starts the usual grace once the ID is sent).
	d.deadlines.set(nodeID, d.cfg.Clock.Now().Add(d.maxGrace()))
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return s, nil
}

// current returns the caller's node ID and its session, if sessionID is
// that node's current session.
func (d *Dispatcher) current(ctx context.Context, sessionID string) (string, *session, error) {
	nodeID, err := d.cfg.NodeID(ctx)
	if err != nil {
		return "", nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.runCtx == nil {
		return "", nil, ErrNotRunning
	}
	s := d.sessions[nodeID]
	if s == nil || s.id != sessionID || s.ctx.Err() != nil {
		return "", nil, fmt.Errorf("node %s session %q: %w", nodeID, sessionID, ErrSessionInvalid)
	}
	return nodeID, s, nil
}

// peerHost is the address the call came from, without the port.
func peerHost(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	addr := p.Addr.String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// Session implements api.DispatcherServer.
func (d *Dispatcher) Session(req *api.SessionRequest, stream api.Dispatcher_SessionServer) error {
	ctx := stream.Context()
	nodeID, err := d.cfg.NodeID(ctx)
	if err != nil {
		return api.ToGRPC(err)
	}
	var exists bool
	d.cfg.Store.View(func(tx raftstore.ReadTx) { exists = tx.GetNode(nodeID) != nil })
	if !exists {
		return api.ToGRPC(fmt.Errorf("node %s: %w", nodeID, ErrUnknownNode))
	}
	s, err := d.openSession(nodeID, req.GetSessionId())
	if err != nil {
		return api.ToGRPC(err)
	}
	if err := d.markReady(ctx, s, req.GetDescription(), peerHost(ctx)); err != nil {
		return api.ToGRPC(err)
	}

	// Watch nodes and the cluster: a change to this node, to the manager
	// set or to the overlay's gossip keys is sent on.
	var node *api.Node
	var managers []*api.WeightedPeer
	var overlay overlaySettings
	read := func(tx raftstore.ReadTx) {
		node, managers = tx.GetNode(nodeID), d.managers(tx)
		if cs := tx.Clusters(); len(cs) > 0 {
			overlay = overlayOf(cs[0])
		}
	}
	w := d.cfg.Store.ViewAndWatch(0, read, raftstore.KindNode, raftstore.KindCluster)
	defer func() { w.Close() }() // w is replaced after an overflow
	send := func() error {
		root := d.cfg.RootCA
		if d.cfg.TrustBundle != nil {
			root = d.cfg.TrustBundle()
		}
		m := &api.SessionMessage{SessionId: s.id, Node: node, Managers: managers, RootCa: root,
			GossipKeys: overlay.keys, DataPathPort: overlay.port}
		if s.beat != nil && d.cfg.BeatAddr != "" {
			m.BeatAddr, m.BeatSlot, m.BeatGeneration, m.BeatKey = d.cfg.BeatAddr, s.beat.slot, s.beat.gen, s.beat.key
		}
		return stream.Send(m)
	}
	if err := send(); err != nil {
		return err
	}
	d.started(s)
	for {
		select {
		case <-ctx.Done():
			// The agent went away; the session stays until its heartbeat
			// deadline, so a quick reconnect can resume it.
			return ctx.Err()
		case <-s.ctx.Done():
			return api.ToGRPC(fmt.Errorf("node %s: %w", nodeID, ErrSessionInvalid))
		case b, ok := <-w.C():
			if !ok {
				// Overflow or restore: re-read and carry on.
				w = d.cfg.Store.ViewAndWatch(0, read, raftstore.KindNode, raftstore.KindCluster)
				if err := send(); err != nil {
					return err
				}
				continue
			}
			changed, managersMayChange := false, d.cfg.Managers != nil
			for _, e := range b.Events {
				if e.Object == nil && e.Old != nil && e.Old.GetId() == nodeID {
					// Removed from the cluster: end the session.
					d.endSession(s)
					return api.ToGRPC(fmt.Errorf("node %s: %w", nodeID, ErrUnknownNode))
				}
				if c, ok := e.Object.(*api.Cluster); ok {
					if o := overlayOf(c); !o.equal(overlay) {
						overlay, changed = o, true
					}
					continue
				}
				if e.Object != nil && e.Object.GetId() == nodeID {
					node, changed = e.Object.(*api.Node), true
				}
				managersMayChange = managersMayChange || isManager(e.Object) || isManager(e.Old)
			}
			if managersMayChange {
				var m []*api.WeightedPeer
				d.cfg.Store.View(func(tx raftstore.ReadTx) { m = d.managers(tx) })
				if !samePeers(m, managers) {
					managers, changed = m, true
				}
			}
			if changed {
				if err := send(); err != nil {
					return err
				}
			}
		}
	}
}

// overlaySettings is what a session tells a node of the cluster's overlay.
type overlaySettings struct {
	keys [][]byte // newest first
	port uint32
}

func overlayOf(c *api.Cluster) overlaySettings {
	o := overlaySettings{port: c.GetDataPathPort()}
	for _, k := range c.GetGossipKeys() {
		o.keys = append(o.keys, k.GetKey())
	}
	return o
}

func (o overlaySettings) equal(p overlaySettings) bool {
	return o.port == p.port && slices.EqualFunc(o.keys, p.keys, bytes.Equal)
}

// isManager reports whether o is a node with a manager status: only changes
// to those can change the manager list, so only they cost a recomputation
// (a scan of all nodes, for every session).
func isManager(o raftstore.Object) bool {
	n, ok := o.(*api.Node)
	return ok && n.GetManagerStatus() != nil
}

// started gives s, if still its node's session, the usual grace from now:
// the agent has its session ID and beats from here on.
func (d *Dispatcher) started(s *session) {
	now := d.cfg.Clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sessions[s.nodeID] == s {
		d.deadlines.set(s.nodeID, now.Add(d.grace()))
		select { // the watcher may be sleeping until a later deadline
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// endSession ends s if it is still its node's session (the node was removed).
func (d *Dispatcher) endSession(s *session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sessions[s.nodeID] == s {
		delete(d.sessions, s.nodeID)
		d.deadlines.remove(s.nodeID)
	}
	s.cancel()
}

// markReady records the session's node as READY, with its description and
// address, unless the session was replaced or expired meanwhile.
func (d *Dispatcher) markReady(ctx context.Context, s *session, desc *api.NodeDescription, addr string) error {
	defer d.statusLocks.lock(s.nodeID)()
	if s.ctx.Err() != nil {
		return fmt.Errorf("node %s: %w", s.nodeID, ErrSessionInvalid)
	}
	return d.updateNodes(ctx, func(tx raftstore.WriteTx) error {
		n := tx.GetNode(s.nodeID)
		if n == nil {
			return fmt.Errorf("node %s: %w", s.nodeID, ErrUnknownNode)
		}
		if n.GetStatus().GetState() == api.NodeStatus_READY && n.GetStatus().GetAddr() == addr &&
			(desc == nil || proto.Equal(desc, n.GetDescription())) {
			return nil // a resumed session: nothing to write
		}
		n.Status = &api.NodeStatus{State: api.NodeStatus_READY, Addr: addr}
		if desc != nil {
			n.Description = desc
		}
		return tx.Update(n)
	})
}

// managers returns the manager list for agents, from Config.Managers or
// from the nodes in tx.
func (d *Dispatcher) managers(tx raftstore.ReadTx) []*api.WeightedPeer {
	if d.cfg.Managers != nil {
		return d.cfg.Managers()
	}
	var nodes []*api.Node
	tx.ForEach(raftstore.KindNode, func(o raftstore.Object) bool {
		if isManager(o) {
			nodes = append(nodes, o.(*api.Node))
		}
		return true
	})
	return managersOf(nodes)
}

// managersOf lists the nodes with a manager status and an address, in ID
// order, each of weight 1.
func managersOf(nodes []*api.Node) []*api.WeightedPeer {
	var out []*api.WeightedPeer
	for _, n := range nodes {
		if ms := n.GetManagerStatus(); ms != nil && ms.GetAddr() != "" {
			out = append(out, &api.WeightedPeer{NodeId: n.GetId(), Addr: ms.GetAddr(), Weight: 1})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeId < out[j].NodeId })
	return out
}

func samePeers(a, b []*api.WeightedPeer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].GetNodeId() != b[i].GetNodeId() || a[i].GetAddr() != b[i].GetAddr() || a[i].GetWeight() != b[i].GetWeight() {
			return false
		}
	}
	return true
}

// Heartbeat implements api.DispatcherServer: it moves the node's deadline
// and tells the agent when to beat next. It touches nothing but the
// in-memory session and deadline, under one short hold of d.mu: no store
// read, no raft write, nothing that waits for an assignment stream. (The
// manager's interceptor authorizes the caller beforehand from
// raftstore.PeekNode, which takes no lock either.) The mutex profile of the
// scale benchmark had heartbeats queued on d.mu, then taken twice per call.
func (d *Dispatcher) Heartbeat(ctx context.Context, req *api.HeartbeatRequest) (*api.HeartbeatResponse, error) {
	nodeID, err := d.cfg.NodeID(ctx)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	now := d.cfg.Clock.Now()
	d.mu.Lock()
	running := d.runCtx != nil
	s := d.sessions[nodeID]
	valid := running && s != nil && s.id == req.GetSessionId() && s.ctx.Err() == nil
	if valid {
		d.deadlines.beat(nodeID, now, d.cfg.HeartbeatPeriod, d.grace(), d.maxGrace())
	}
	d.mu.Unlock()
	switch {
	case !running:
		return nil, api.ToGRPC(ErrNotRunning)
	case !valid:
		return nil, api.ToGRPC(fmt.Errorf("node %s session %q: %w", nodeID, req.GetSessionId(), ErrSessionInvalid))
	}
	return &api.HeartbeatResponse{Period: durationpb.New(d.cfg.HeartbeatPeriod)}, nil
}

// UpdateTaskStatus implements api.DispatcherServer. Valid updates are queued
// for the batcher and the call returns once they are committed (batched with
// other nodes' reports): an error means the agent must report again. A task
// of another node refuses the whole request.
func (d *Dispatcher) UpdateTaskStatus(ctx context.Context, req *api.UpdateTaskStatusRequest) (*api.UpdateTaskStatusResponse, error) {
	nodeID, s, err := d.current(ctx, req.GetSessionId())
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	var ups []pendingUpdate
	var refused error
	d.cfg.Store.View(func(tx raftstore.ReadTx) {
		for _, u := range req.GetUpdates() {
			var t *api.Task
			if u.GetTaskId() != "" {
				t = tx.GetTask(u.GetTaskId())
			}
			v, err := validateUpdate(nodeID, t, u)
			switch v {
			case refuse:
				refused = err
				return
			case accept:
				ups = append(ups, pendingUpdate{nodeID: nodeID, taskID: u.GetTaskId(), status: u.GetStatus()})
			}
		}
	})
	if refused != nil {
		return nil, api.ToGRPC(refused)
	}
	if len(ups) > 0 {
		// Stop waiting for the batcher when the call or the session ends.
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(s.ctx, cancel)()
		if err := d.batcher.add(actx, ups); err != nil {
			return nil, api.ToGRPC(api.Wrap(api.ErrUnavailable, fmt.Errorf("store task statuses: %w", err)))
		}
	}
	return &api.UpdateTaskStatusResponse{}, nil
}

// Assignments implements api.DispatcherServer.
func (d *Dispatcher) Assignments(req *api.AssignmentsRequest, stream api.Dispatcher_AssignmentsServer) error {
	nodeID, s, err := d.current(stream.Context(), req.GetSessionId())
	if err != nil {
		return api.ToGRPC(err)
	}
	for {
		err := d.streamAssignments(stream.Context(), s, nodeID, stream)
		if errors.Is(err, raftstore.ErrWatchOverflow) || errors.Is(err, raftstore.ErrWatchRestored) {
			continue // resend a complete set from a fresh read
		}
		return api.ToGRPC(err)
	}
}

// streamAssignments sends a COMPLETE set, then INCREMENTAL changes until the
// stream or session ends or the watch does (its error is returned).
func (d *Dispatcher) streamAssignments(ctx context.Context, s *session, nodeID string, stream api.Dispatcher_AssignmentsServer) error {
	set := newAssignmentSet(nodeID)
	var tasks []*api.Task
	var version uint64
	// A watch of this node's tasks only: publishing a task event then costs
	// the watchers of its node, not one per node in the cluster.
	w := d.cfg.Store.ViewAndWatchTasksOnNode(d.cfg.WatchBuffer, func(tx raftstore.ReadTx) {
		tasks, version = tx.TasksOnNode(nodeID), tx.Version()
	}, nodeID)
	defer w.Close()
	last := versionString(version)
	all := set.complete(tasks)
	withSecrets(d.cfg.Store, all)
	for _, m := range messages(api.AssignmentsMessage_COMPLETE, "", last, all, maxMessageBytes) {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	for {
		var batches []raftstore.Batch
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return fmt.Errorf("node %s: %w", nodeID, ErrSessionInvalid)
		case b, ok := <-w.C():
			if !ok {
				return w.Err()
			}
			batches = append(batches, b)
		}
		// Coalesce what else is already queued into one message.
	drain:
		for {
			select {
			case b, ok := <-w.C():
				if !ok {
					return w.Err()
				}
				batches = append(batches, b)
			default:
				break drain
			}
		}
		var changes []*api.AssignmentChange
		for _, b := range batches {
			changes = append(changes, set.observeBatch(b.Events)...)
		}
		if len(changes) == 0 {
			continue
		}
		withSecrets(d.cfg.Store, changes)
		next := versionString(batches[len(batches)-1].Version)
		for _, m := range messages(api.AssignmentsMessage_INCREMENTAL, last, next, changes, maxMessageBytes) {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		last = next
	}
}
