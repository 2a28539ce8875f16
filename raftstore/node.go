package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// Config configures a Node. ID, Dir and Listener are required.
type Config struct {
	// ID is the raft server ID; shoal uses the node ID.
	ID string
	// Dir holds the log (wal/), the stable store (in the WAL's meta DB) and
	// snapshots (snapshots/). Created if missing.
	Dir string
	// Listener accepts raft connections from peers (TCP, or TLS over TCP).
	// The node owns it from NewNode on and closes it in Close.
	Listener net.Listener
	// Dial connects to peers; nil dials plain TCP.
	Dial DialFunc
	// AdvertiseAddr is the host:port peers reach this node at; empty means
	// the listener's address.
	AdvertiseAddr string
	// Bootstrap makes this node a one-member cluster if Dir holds no raft
	// state yet (swarm init). Without it, a fresh node waits to be added by
	// a leader (AddVoter).
	Bootstrap bool

	// SnapshotThreshold is the number of entries after which a snapshot is
	// taken and the log compacted, so start-up replays at most this much
	// (default 10,000, swarmkit's). TrailingLogs entries are kept after a
	// snapshot for followers slightly behind (default 500).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// SnapshotInterval is how often the threshold is checked (default 30 s).
	SnapshotInterval time.Duration
	// RetainSnapshots is how many snapshot files are kept (default 2).
	RetainSnapshots int

	// Timing; zero means hashicorp/raft's defaults (1 s heartbeat and
	// election timeouts). Tests shorten them.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// MaxBatch bounds the proposals in one raft entry (default 1,024) and
	// MaxInflight the entries proposed but not yet applied (default 4).
	MaxBatch    int
	MaxInflight int

	// Now stamps object times in Update; nil means time.Now.
	Now func() time.Time
	// Logger receives raft's logs; nil logs warnings and errors to stderr.
	Logger hclog.Logger
	// DEK, when set (DEKSize bytes), encrypts every log entry and snapshot
	// written (encrypt.go); entries written in plaintext still read.
	// OldDEKs are the keys DEK replaced (RotateDEK), oldest first: what
	// they sealed still reads.
	DEK     []byte
	OldDEKs [][]byte
}

// ErrClosed is returned by calls on a closed Node.
var ErrClosed = api.Wrap(api.ErrUnavailable, errors.New("raftstore: node closed"))

// Node is one manager's raft replica with its store.
type Node struct {
	cfg   Config
	store *MemoryStore
	raft  *raft.Raft
	wal   *wal.WAL
	meta  *metadb.BoltMetaDB
	trans *raft.NetworkTransport
	snaps *raft.FileSnapshotStore
	obs   *raft.Observer
	obsCh chan raft.Observation

	proposals chan *pendingProposal
	entries   chan *inflightEntry
	slots     chan struct{}

	// closing is closed by Close; every goroutine of the node stops on it.
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	// leaderMu guards leaderChanged, closed and replaced on every leader change.
	leaderMu      sync.Mutex
	leaderChanged chan struct{}

	// onDisk is the last log index this node held when it started: until
	// its store has applied that far, the store lacks what this node had
	// already seen committed (raft applies a restarted node's log only once
	// a leader's commit index reaches it).
	onDisk uint64

	// keys seal the log and snapshots (nil: plaintext).
	keys *keyring
}

type pendingProposal struct {
	p    *api.Proposal
	done chan error // buffered: the waiter never blocks on a gone proposer
}

type inflightEntry struct {
	future raft.ApplyFuture
	batch  []*pendingProposal
}

// NewNode opens (or creates) the raft state in cfg.Dir and starts the node.
// On error everything opened is closed again, the listener included.
func NewNode(cfg Config) (n *Node, err error) {
	if cfg.ID == "" || cfg.Dir == "" || cfg.Listener == nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return nil, api.Wrap(api.ErrInvalidArgument, errors.New("raftstore: node needs an ID, a directory and a listener"))
	}
	setDefaults(&cfg)
	n = &Node{
		cfg:           cfg,
		proposals:     make(chan *pendingProposal, cfg.MaxBatch),
		entries:       make(chan *inflightEntry, cfg.MaxInflight),
		slots:         make(chan struct{}, cfg.MaxInflight),
		closing:       make(chan struct{}),
		leaderChanged: make(chan struct{}),
	}
	n.store = NewMemoryStore(n, cfg.Now)
	var closers []io.Closer
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i].Close()
			}
			cfg.Listener.Close()
		}
	}()

	if err := os.MkdirAll(filepath.Join(cfg.Dir, "wal"), 0o700); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	// raft-wal fsyncs every append before returning, which is what makes an
	// acknowledged write survive a crash.
	// The meta DB is closed here too (WAL.Close closes it since v0.4.1;
	// a second Close is a no-op): its file lock would stop the node from
	// opening again. v0.4.1 also fixes a tail truncation (raft's "clearing
	// log suffix") that left a segment no restart could read
	// (TestWALSurvivesTailTruncation).
	n.meta = &metadb.BoltMetaDB{}
	closers = append(closers, n.meta)
	n.wal, err = wal.Open(filepath.Join(cfg.Dir, "wal"), wal.WithMetaStore(n.meta))
	if err != nil {
		return nil, fmt.Errorf("raftstore: open log %s: %w", cfg.Dir, err)
	}
	closers = append(closers, n.wal)
	n.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.RetainSnapshots, cfg.Logger.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("raftstore: open snapshots %s: %w", cfg.Dir, err)
	}
	if cfg.DEK != nil {
		if n.keys, err = newKeyring(append(slices.Clone(cfg.OldDEKs), cfg.DEK)...); err != nil {
			return nil, err
		}
	}
	logs, snaps := atRest(n.keys, n.wal, n.snaps)
	// The leader reads back the entries it has just written for every
	// append to a follower (the previous entry's term, the new entries),
	// and raft-wal decodes (and atRest decrypts) each read: in the scale
	// bench that was 9% of the CPU. Recent entries are served from memory;
	// the cache sits above the encryption, so it holds what the FSM holds.
	if logs, err = raft.NewLogCache(logCacheEntries, logs); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	sl, err := newStreamLayer(cfg.Listener, cfg.AdvertiseAddr, cfg.Dial)
	if err != nil {
		return nil, err
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: sl, MaxPool: 3, Timeout: 10 * time.Second, Logger: cfg.Logger.Named("transport"),
	})
	closers = append(closers, n.trans)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = cfg.Logger
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.CommitTimeout > 0 {
		rc.CommitTimeout = cfg.CommitTimeout
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, api.Wrap(api.ErrInvalidArgument, fmt.Errorf("raftstore: %w", err))
	}

	if cfg.Bootstrap {
		has, err := raft.HasExistingState(logs, n.wal, snaps)
		if err != nil {
			return nil, fmt.Errorf("raftstore: %w", err)
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: n.trans.LocalAddr()}}}
			if err := raft.BootstrapCluster(rc, logs, n.wal, snaps, n.trans, conf); err != nil {
				return nil, fmt.Errorf("raftstore: bootstrap: %w", err)
			}
		}
	}
	n.raft, err = raft.NewRaft(rc, &fsm{s: n.store}, logs, n.wal, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("raftstore: start raft: %w", err)
	}

	n.onDisk = n.raft.LastIndex()
	n.obsCh = make(chan raft.Observation, 16)
	n.obs = raft.NewObserver(n.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(n.obs)
	n.goFunc(n.observeLeader)
	n.goFunc(n.batch)
	n.goFunc(n.wait)
	return n, nil
}

// logCacheEntries is how many recent log entries stay in memory: enough
// for a follower's pipeline to catch up, small enough that entries of the
// largest batch (2 MiB) cannot pin much memory.
const logCacheEntries = 64

// defaultSnapshotThreshold is swarmkit's snapshot interval (entries).
const defaultSnapshotThreshold = 10000

// KeepOldSnapshots is how many snapshots are kept besides the newest, by
// default (Swarm's keep-old-snapshots; hashicorp/raft fixes it when the
// snapshot store opens, so a running cluster cannot change it).
const KeepOldSnapshots = 1

func setDefaults(c *Config) {
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = defaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 500
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = 30 * time.Second
	}
	if c.RetainSnapshots == 0 {
		c.RetainSnapshots = KeepOldSnapshots + 1
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1024
	}
	if c.MaxInflight <= 0 {
		c.MaxInflight = 4
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	}
}

// goFunc runs f in a goroutine that Close waits for.
func (n *Node) goFunc(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Store is the node's replicated store; its Update proposes through raft.
func (n *Node) Store() *MemoryStore { return n.store }

// ID is the node's raft server ID.
func (n *Node) ID() string { return n.cfg.ID }

// Addr is the address peers reach this node at.
func (n *Node) Addr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether this node is the raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// RotateDEK makes dek the data key that seals what this node writes from
// now on, and takes a snapshot so that the bulk of the state is sealed
// with it; what older keys sealed still reads (the caller keeps them, and
// passes them as OldDEKs on the next start). A node started without a
// data key cannot start encrypting here.
func (n *Node) RotateDEK(dek []byte) error {
	if n.keys == nil {
		return errors.New("raftstore: rotate data key: this node's raft state is not encrypted")
	}
	if err := n.keys.add(dek); err != nil {
		return fmt.Errorf("raftstore: rotate data key: %w", err)
	}
	// In the background: a snapshot of a large store takes a while, and
	// nothing new to snapshot is no error here.
	n.goFunc(func() {
		if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			n.cfg.Logger.Warn("snapshot after data key rotation", "error", err)
		}
	})
	return nil
}

// Replayed reports whether the store holds at least what this node had on
// disk when it started: a restarted node's store is empty or old until
// then, and must not be read as the cluster's state.
func (n *Node) Replayed() bool { return n.raft.AppliedIndex() >= n.onDisk }

// AppliedIndex is the index of the last log entry this node's store
// applied. raft's own AppliedIndex is not it: raft counts an entry applied
// when it hands it to the FSM goroutine, before the store has it.
func (n *Node) AppliedIndex() uint64 {
	var v uint64
	n.store.View(func(tx ReadTx) { v = tx.Version() })
	return v
}

// WaitApplied waits until this node's store has applied index, or ctx ends.
// A follower learns that an entry is committed only with the leader's next
// append (up to CommitTimeout later, longer around an election); a caller
// that had the leader write something and now reads this store waits here.
// raft offers no notification of an apply, so this polls, from 0.5 ms up to
// 10 ms between looks.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for d := 500 * time.Microsecond; n.AppliedIndex() < index; d = min(2*d, 10*time.Millisecond) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.closing:
			return ErrClosed
		case <-time.After(d):
		}
	}
	return nil
}

// Leader returns the current leader's ID and address, empty if none is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderChanged returns a channel closed at the next change of leader (this
// node or another, or none). Read Leader after it fires, then ask again:
// a broadcast that never blocks raft and that any number of callers can use.
func (n *Node) LeaderChanged() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderChanged
}

func (n *Node) observeLeader() {
	for {
		select {
		case <-n.closing:
			return
		case <-n.obsCh:
			n.leaderMu.Lock()
			close(n.leaderChanged)
			n.leaderChanged = make(chan struct{})
			n.leaderMu.Unlock()
		}
	}
}

// WaitLeader waits until some node is known as leader and returns its ID.
func (n *Node) WaitLeader(ctx context.Context) (string, error) {
	for {
		ch := n.LeaderChanged()
		if id, _ := n.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", ctx.Err()
		case <-n.closing:
			return "", ErrClosed
		case <-time.After(50 * time.Millisecond):
			// The observer may miss the very first observation (it is
			// registered after raft starts); poll a little as well.
		}
	}
}

func (n *Node) notLeader() error {
	id, addr := n.Leader()
	if id == "" {
		return api.Wrap(api.ErrNotLeader, errors.New("raftstore: not the leader (no leader known)"))
	}
	return api.Wrap(api.ErrNotLeader, fmt.Errorf("raftstore: not the leader (leader is %s at %s)", id, addr))
}

// Propose replicates p and returns once it is applied on this node, with
// p's own result (api.ErrConflict for a stale version, ...). Concurrent
// proposals share raft entries: while MaxInflight entries are being
// committed, new proposals queue and the next entry takes all of them, so
// many writers cost few synced disk writes.
//
// Only the leader proposes; elsewhere the error is api.ErrNotLeader (and
// names the leader, for forwarding). If ctx ends or leadership is lost after
// the proposal was handed to raft, the write may still commit: the caller
// must re-read, as with any timeout on a replicated write.
func (n *Node) Propose(ctx context.Context, p *api.Proposal) error {
	if !n.IsLeader() {
		return n.notLeader()
	}
	pp := &pendingProposal{p: p, done: make(chan error, 1)}
	select {
	case n.proposals <- pp:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closing:
		return ErrClosed
	}
	select {
	case err := <-pp.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closing:
		return ErrClosed
	}
}

// batch is the goroutine that turns queued proposals into raft entries.
func (n *Node) batch() {
	defer close(n.entries)
	for {
		var first *pendingProposal
		select {
		case first = <-n.proposals:
		case <-n.closing:
			return
		}
		// Wait for an in-flight slot first: proposals that arrive meanwhile
		// join this entry.
		select {
		case n.slots <- struct{}{}:
		case <-n.closing:
			first.done <- ErrClosed
			return
		}
		batch := []*pendingProposal{first}
		size := proto.Size(first.p)
	drain:
		for len(batch) < n.cfg.MaxBatch && size < MaxProposalBytes {
			select {
			case pp := <-n.proposals:
				batch = append(batch, pp)
				size += proto.Size(pp.p)
			default:
				break drain
			}
		}
		pb := &api.ProposalBatch{Proposals: make([]*api.Proposal, len(batch))}
		for i, pp := range batch {
			pb.Proposals[i] = pp.p
		}
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
		if err != nil {
			for _, pp := range batch {
				pp.done <- api.Wrap(api.ErrInvalidArgument, fmt.Errorf("raftstore: encode proposal: %w", err))
			}
			<-n.slots
			continue
		}
		e := &inflightEntry{future: n.raft.Apply(data, 0), batch: batch}
		select {
		case n.entries <- e: // never blocks: entries has MaxInflight room, as slots
		case <-n.closing:
			return
		}
	}
}

// wait is the goroutine that answers proposers as their entries apply, in
// raft order.
func (n *Node) wait() {
	for e := range n.entries {
		err := e.future.Error()
		var results []error
		if err == nil {
			switch r := e.future.Response().(type) {
			case []error:
				results = r
			case error:
				err = r
			}
			if err == nil && len(results) != len(e.batch) {
				err = fmt.Errorf("raftstore: entry has %d results for %d proposals", len(results), len(e.batch))
			}
		}
		for i, pp := range e.batch {
			switch {
			case err != nil:
				pp.done <- raftError(err)
			default:
				pp.done <- results[i]
			}
		}
		<-n.slots
	}
}

// raftError classifies hashicorp/raft's errors.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return api.Wrap(api.ErrNotLeader, fmt.Errorf("raftstore: %w", err))
	case errors.Is(err, raft.ErrLeadershipLost):
		// The entry may yet commit under the next leader.
		return api.Wrap(api.ErrUnavailable, fmt.Errorf("raftstore: outcome unknown: %w", err))
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	}
	return api.Wrap(api.ErrUnavailable, fmt.Errorf("raftstore: %w", err))
}

// AddVoter adds a manager to the raft configuration (leader only). Adding
// a member that is already there with the same address is a no-op.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if id == "" || addr == "" {
		return api.Wrap(api.ErrInvalidArgument, errors.New("raftstore: add voter: empty id or address"))
	}
	return n.awaitIndex(ctx, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx)))
}

// RemoveServer removes a manager from the raft configuration (leader only).
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	return n.awaitIndex(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)))
}

func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 0
}

func (n *Node) awaitIndex(ctx context.Context, f raft.IndexFuture) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }() // ends when raft answers; raft answers every future, also on shutdown
	select {
	case err := <-done:
		if err != nil {
			return raftError(err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Members returns the raft configuration.
func (n *Node) Members() ([]*api.RaftMember, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raftError(err)
	}
	var out []*api.RaftMember
	for _, s := range f.Configuration().Servers {
		out = append(out, &api.RaftMember{RaftId: string(s.ID), NodeId: string(s.ID),
			Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// SnapshotThreshold is the number of entries between snapshots now.
func (n *Node) SnapshotThreshold() uint64 {
	return n.raft.ReloadableConfig().SnapshotThreshold
}

// SetSnapshotThreshold changes the number of entries between snapshots
// while raft runs (`swarm update --snapshot-interval`); 0 restores the
// default.
func (n *Node) SetSnapshotThreshold(entries uint64) error {
	if entries == 0 {
		entries = defaultSnapshotThreshold
	}
	rc := n.raft.ReloadableConfig()
	rc.SnapshotThreshold = entries
	if err := n.raft.ReloadConfig(rc); err != nil {
		return fmt.Errorf("raftstore: snapshot threshold %d: %w", entries, err)
	}
	return nil
}

// Snapshot takes a snapshot now and compacts the log (normally done by
// SnapshotThreshold; `swarm update` and tests may force one).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raftstore: snapshot: %w", err)
	}
	return nil
}

// Close stops raft, the node's goroutines, the transport and the log. A
// leader does not hand over leadership first; the others elect a new one.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		err := n.raft.Shutdown().Error()
		close(n.closing)
		n.raft.DeregisterObserver(n.obs)
		n.wg.Wait()
		err = errors.Join(err, n.trans.Close(), n.wal.Close(), n.meta.Close())
		if err != nil {
			n.closeErr = fmt.Errorf("raftstore: close: %w", err)
		}
	})
	return n.closeErr
}
