// Package manager assembles one manager node from the manager packages: the
// raft replica with its store (raftstore), the gRPC services on the shared
// port (Control, Dispatcher, CA, RaftMembership), leader forwarding, and the
// leader-only loops (orchestrators and scheduler, the dispatcher's
// deadlines, membership). It decides nothing itself: decisions are in
// orchestrator, scheduler and controlapi; this package only connects them.
//
// One port (2377 by default, as Swarm) carries everything, over mutual TLS
// with the cluster CA's node certificates. The TLS handshake's ALPN decides
// whether a connection is raft's or gRPC's. Anonymous TLS clients may call
// the CA service only (a joining node, which proves itself with a join
// token); Dispatcher calls need any node certificate of the cluster, all
// others a current manager's. Every call is checked against the store: a
// node removed from it is refused at the handshake and at every call, a
// demoted manager at every manager call, so a certificate stops working
// for what its node may no longer do at once, not at its expiry.
//
// Any manager answers: a follower forwards every call (unary or stream) to
// the leader, with the caller's identity in metadata that the leader trusts
// only from a current manager. Without a leader, reads are answered from the
// follower's own copy and writes fail with ErrNoLeader.
//
// Goroutines: Run owns the gRPC server, the demux's accept loop and the
// leadership watcher, which starts the leader-only loops when this node
// becomes leader and cancels them (waiting for them) when it stops being
// leader. All end when Run's context ends.
package manager

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/manager/controlapi"
	"github.com/shoal-project/shoal/manager/dispatcher"
	"github.com/shoal-project/shoal/manager/heartbeat"
	"github.com/shoal-project/shoal/manager/leader"
	"github.com/shoal-project/shoal/manager/logbroker"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/tap"
)

// Raft timing: shorter than hashicorp/raft's 1 s defaults so that a new
// leader answers well within 3 s of the old one's loss (Swarm took 20 s
// here); 500 ms still leaves room for a loaded 2-core machine. The lease
// (how long a leader goes without hearing from a quorum before it steps
// down) is as long as raft allows, the heartbeat timeout: it does not delay
// an election, and at 250 ms a leader adding the second voter stepped down
// while that voter caught up (seen under -race here).
const (
	raftHeartbeat = 500 * time.Millisecond
	raftElection  = 500 * time.Millisecond
	raftLease     = 500 * time.Millisecond
)

// Config configures a Manager. Everything but the timings is required.
type Config struct {
	NodeID string
	// Dir holds the raft log, stable store and snapshots.
	Dir string
	// Listener is the bound TCP listener of the manager port; the manager
	// owns it from New on.
	Listener net.Listener
	// AdvertiseAddr is host:port other nodes reach this manager at.
	AdvertiseAddr string
	// Root verifies certificates; its key may be nil (joined managers read
	// the key from the replicated cluster object when they sign).
	Root *ca.RootCA
	// Cert and Key are this node's manager certificate (PEM) and key.
	Cert []byte
	Key  *ecdsa.PrivateKey
	// Security, when set, replaces Root, Cert and Key: the node's
	// credentials as its certificate renewals and the cluster's root
	// rotations change them (the daemon shares it with its worker agent).
	// The manager keeps its trusted roots in line with the cluster object.
	Security *ca.Security
	// Bootstrap makes a fresh raft state a one-member cluster (swarm init).
	Bootstrap bool
	// Dial opens a mutual-TLS gRPC connection to another manager.
	Dial func(addr string) (*grpc.ClientConn, error)
	// HeartbeatPeriod of worker sessions (dispatcher default when zero).
	HeartbeatPeriod time.Duration
	Logger          *slog.Logger
	// DEK encrypts the raft log and snapshots (raftstore.DEKSize bytes);
	// nil keeps them in plaintext (unit tests). UnlockKey is the key the
	// daemon sealed it with (nil: in the clear), following the cluster
	// object at version SealedAt; SealDEK seals it again when a newer
	// cluster object has another unlock key (autolock.go), with the data
	// keys then in use: dek seals from now on, old (oldest first) are the
	// keys it replaced, which what they sealed needs. OldDEKs are those
	// older keys at start.
	DEK       []byte
	OldDEKs   [][]byte
	UnlockKey []byte
	SealedAt  uint64
	SealDEK   func(unlockKey []byte, clusterVersion uint64, dek []byte, old [][]byte) error
	// StatsHandler, when set, observes every call the manager serves
	// (gRPC's stats hooks): the scale bench times heartbeats at the
	// managers with it, apart from the agents' side of the round trip.
	StatsHandler stats.Handler
	// InTap, when set, sees every call the moment the server's transport
	// has read its headers, on the connection's reader goroutine and before
	// the call's own goroutine exists (gRPC's tap): the scale bench times
	// a heartbeat's way in up to there apart from the wait for a goroutine
	// to serve it. It must be quick and must not block.
	InTap tap.ServerInHandle
	// BeatConn, when set, is the bound UDP socket of the heartbeat fast
	// path (package heartbeat), which the manager owns from New on; its
	// port is announced to agents. BeatCommand starts the process that
	// answers on it (heartbeat.ServerArg); nil answers in this process.
	BeatConn    *net.UDPConn
	BeatCommand func() *exec.Cmd
}

// Manager is one running manager.
type Manager struct {
	cfg   Config
	sec   *ca.Security
	raft  *raftstore.Node
	store *raftstore.MemoryStore
	mux   *demux
	grpc  *grpc.Server
	disp  *dispatcher.Dispatcher
	// control is the control API; the leader's orchestrator loop rolls
	// services back through it (failure action rollback).
	control *controlapi.Server
	log     *slog.Logger
	// beats is the heartbeat fast path's table (nil without BeatConn).
	beats *heartbeat.Table
	// streams rechecks the callers of open streams.
	streams streamGuard

	readyMu sync.Mutex    // guards ready
	ready   chan struct{} // closed while this node leads and has caught up (see leaderready.go)

	connMu   sync.Mutex // guards conn, connAddr: the forwarding connection
	conn     *grpc.ClientConn
	connAddr string

	probeMu    sync.Mutex // guards probeConns: the membership loop's connections
	probeConns map[string]*grpc.ClientConn

	lockMu   sync.Mutex // guards lockKey, lockedAt, dek, oldDEKs: the unlock key the DEK is sealed with
	lockKey  []byte
	lockedAt uint64 // the cluster object's version lockKey came from
	dek      []byte
	oldDEKs  [][]byte
	keys     dekRotator // the raft node's keyring (nil without a DEK)
}

// New opens the raft state and registers the services; Run serves.
func New(cfg Config) (_ *Manager, err error) {
	defer func() {
		if err != nil && cfg.BeatConn != nil {
			cfg.BeatConn.Close()
		}
	}()
	if cfg.Security == nil && cfg.Root != nil && cfg.Cert != nil && cfg.Key != nil {
		sec, err := ca.NewSecurity(cfg.Root, cfg.Cert, cfg.Key)
		if err != nil {
			if cfg.Listener != nil {
				cfg.Listener.Close()
			}
			return nil, fmt.Errorf("manager: %w", err)
		}
		cfg.Security = sec
	}
	if cfg.NodeID == "" || cfg.Dir == "" || cfg.Listener == nil || cfg.Security == nil || cfg.Dial == nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return nil, api.Wrap(api.ErrInvalidArgument, errors.New("manager: incomplete configuration"))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{cfg: cfg, sec: cfg.Security, log: cfg.Logger, lockKey: cfg.UnlockKey, lockedAt: cfg.SealedAt,
		dek: cfg.DEK, oldDEKs: cfg.OldDEKs}
	tlsCfg := m.sec.TLSConfig(m.allowed)
	serverTLS := tlsCfg.Clone()
	// Joining nodes have no certificate yet: the handshake lets them in and
	// the interceptors confine them to the CA service.
	serverTLS.ClientAuth = tls.RequestClientCert
	verify := tlsCfg.VerifyPeerCertificate
	serverTLS.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return nil
		}
		return verify(raw, chains)
	}
	// Raft has no authorisation of its own: only current managers may speak it.
	m.mux = newDemux(cfg.Listener, serverTLS, m.raftPeer)
	raftTLS := tlsCfg.Clone()
	raftTLS.NextProtos = []string{protoRaft}
	m.raft, err = raftstore.NewNode(raftstore.Config{
		ID: cfg.NodeID, Dir: cfg.Dir, Listener: m.mux.raft, AdvertiseAddr: cfg.AdvertiseAddr,
		Bootstrap: cfg.Bootstrap, Dial: dialTLS(raftTLS), DEK: cfg.DEK, OldDEKs: cfg.OldDEKs,
		HeartbeatTimeout: raftHeartbeat, ElectionTimeout: raftElection, LeaderLeaseTimeout: raftLease,
	})
	if err != nil {
		m.mux.close()
		return nil, fmt.Errorf("manager: %w", err)
	}
	m.store = m.raft.Store()
	if cfg.DEK != nil {
		m.keys = m.raft
	}
	dcfg := dispatcher.Config{
		Store: m.store, NodeID: nodeIDOf, TrustBundle: m.trustBundle,
		HeartbeatPeriod: cfg.HeartbeatPeriod, Logger: cfg.Logger,
	}
	if cfg.BeatConn != nil {
		// Without the table the manager still serves, with gRPC heartbeats.
		if m.beats, err = heartbeat.NewTable(heartbeat.DefaultSlots); err != nil {
			m.log.Warn("manager: no heartbeat fast path", "err", err)
			cfg.BeatConn.Close()
			m.cfg.BeatConn = nil
		} else {
			// Agents beat at this manager's advertised host, on the UDP
			// socket's port, whichever manager their session came through.
			host, _, herr := net.SplitHostPort(cfg.AdvertiseAddr)
			if herr != nil {
				host = cfg.AdvertiseAddr
			}
			dcfg.Beats = m.beats
			dcfg.BeatAddr = net.JoinHostPort(host, strconv.Itoa(cfg.BeatConn.LocalAddr().(*net.UDPAddr).Port))
		}
	}
	m.disp, err = dispatcher.New(dcfg)
	if err != nil {
		m.closeBeats()
		m.raft.Close()
		return nil, fmt.Errorf("manager: %w", err)
	}
	if m.beats != nil {
		m.beats.SetPeriod(m.disp.HeartbeatPeriod())
	}
	opts := []grpc.ServerOption{grpc.Creds(doneTLS{}),
		grpc.UnaryInterceptor(m.unaryInterceptor), grpc.StreamInterceptor(m.streamInterceptor),
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow)}
	if cfg.StatsHandler != nil {
		opts = append(opts, grpc.StatsHandler(cfg.StatsHandler))
	}
	if cfg.InTap != nil {
		opts = append(opts, grpc.InTapHandle(cfg.InTap))
	}
	m.grpc = grpc.NewServer(opts...)
	m.control = controlapi.NewServer(m.store, nil, nil)
	api.RegisterControlServer(m.grpc, m.control)
	api.RegisterDispatcherServer(m.grpc, m.disp)
	api.RegisterCAServer(m.grpc, &caServer{m: m})
	api.RegisterRaftMembershipServer(m.grpc, &membershipServer{m: m})
	api.RegisterLogBrokerServer(m.grpc, logbroker.New(m.store, nodeIDOf))
	// Only now: the handshake's check (allowed) reads m.store.
	m.mux.start()
	return m, nil
}

// Store is the manager's replicated store (read it with View).
func (m *Manager) Store() *raftstore.MemoryStore { return m.store }

// Raft is the manager's raft node.
func (m *Manager) Raft() *raftstore.Node { return m.raft }

// Run serves until ctx ends, then stops the services and raft.
func (m *Manager) Run(ctx context.Context) error {
	// Cancelled also when Serve ends by itself, so that the leadership
	// watcher stops then too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- m.grpc.Serve(m.mux.grpc) }()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.whileLeader(ctx) }()
	go func() { defer wg.Done(); m.followCluster(ctx) }()
	if m.beats != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			heartbeat.Run(ctx, m.cfg.BeatConn, m.beats, m.cfg.BeatCommand, m.log)
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			err = nil
		}
	}
	cancel()
	wg.Wait()
	stopped := make(chan struct{})
	go func() { m.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		m.grpc.Stop() // streams (sessions) would hold GracefulStop forever
	}
	m.connMu.Lock()
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
	m.connMu.Unlock()
	m.probeMu.Lock()
	for _, c := range m.probeConns {
		c.Close()
	}
	m.probeConns = nil
	m.probeMu.Unlock()
	if cerr := m.raft.Close(); cerr != nil && err == nil {
		err = cerr
	}
	m.mux.close()
	m.closeBeats()
	return err
}

// closeBeats releases the heartbeat fast path's table and socket (Run's
// heartbeat.Run has returned, or never ran).
func (m *Manager) closeBeats() {
	if m.beats != nil {
		m.beats.Close()
		m.beats = nil
	}
	if m.cfg.BeatConn != nil {
		m.cfg.BeatConn.Close()
	}
}

// whileLeader runs the leader-only loops during each term this node leads.
func (m *Manager) whileLeader(ctx context.Context) {
	for ctx.Err() == nil {
		changed := m.raft.LeaderChanged()
		if !m.raft.IsLeader() {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		// A new leader's store may not have applied what earlier terms
		// committed yet (hashicorp/raft applies that once this term commits
		// an entry): the loops must not decide on that old state (the
		// membership loop would remove the managers it does not see yet
		// from raft, the orchestrator create tasks that exist).
		if err := m.caughtUp(lctx); err != nil {
			cancel()
			if ctx.Err() == nil {
				m.log.Debug("manager: new leader cannot commit", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
			continue
		}
		var wg sync.WaitGroup
		run := func(name string, f func(context.Context) error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(lctx); err != nil && lctx.Err() == nil {
					m.log.Warn("manager: leader loop ended", "loop", name, "err", err)
				}
			}()
		}
		m.setCaughtUp(true)
		m.log.Info("manager: this node is the leader", "node", m.cfg.NodeID)
		run("dispatcher", m.disp.Run)
		run("orchestrator+scheduler", leader.Config{Store: m.store, Logger: m.log, Rollback: m.control.Rollback}.Run)
		run("membership", m.reconcileMembership)
		run("root rotation", m.reconcileRootRotation)
		run("gossip keys", m.reconcileGossipKeys)
		for lctx.Err() == nil && m.raft.IsLeader() {
			select {
			case <-lctx.Done():
			case <-changed:
			case <-time.After(100 * time.Millisecond):
			}
			changed = m.raft.LeaderChanged()
		}
		m.setCaughtUp(false)
		cancel()
		wg.Wait()
		m.log.Warn("manager: leadership lost; orchestration and scheduling stop here until a leader is elected", "node", m.cfg.NodeID)
	}
}

// caughtUp returns once this leader has applied every entry committed
// before: it commits an empty proposal, and raft applies in order.
func (m *Manager) caughtUp(ctx context.Context) error {
	return m.raft.Propose(ctx, &api.Proposal{})
}

// allowed refuses certificates of nodes that are not (or no longer) in the
// cluster, at the handshake (see check).
func (m *Manager) allowed(id ca.NodeIdentity) error {
	return m.check(id.NodeID, inStore)
}

// raftPeer admits a raft connection of a verified peer certificate and
// returns the check raft's reads repeat (see demux): raft has no
// authorisation of its own, and a connection lives as long as raft uses it.
func (m *Manager) raftPeer(c *x509.Certificate) (func() error, error) {
	id, err := m.sec.Root().Identify(c, m.now())
	if err != nil {
		return nil, err
	}
	if id.Role != ca.RoleManager {
		return nil, fmt.Errorf("node %s is not a manager", id.NodeID)
	}
	recheck := func() error { return m.raftMember(id.NodeID) }
	return recheck, recheck()
}

// raftMember accepts raft from a node that is a manager in the store now
// (a raft member, or promoted and joining), and from one the store does not
// hold yet but raft's configuration does: a follower replaying the log
// appends configurations before it applies the nodes they name. Demoted and
// removed managers are taken out of raft by the leader within a
// membershipPeriod, and are refused from then on.
func (m *Manager) raftMember(id string) error {
	err := m.check(id, func(n *api.Node) error {
		if n.GetRole() != api.NodeRole_MANAGER && n.GetSpec().GetDesiredRole() != api.NodeRole_MANAGER {
			return fmt.Errorf("node %s is %w", id, errNotCurrentManager)
		}
		return nil
	})
	if err == nil || errors.Is(err, errNotCurrentManager) {
		return err
	}
	members, merr := m.raft.Members()
	if merr != nil {
		return errors.Join(err, merr)
	}
	for _, mb := range members {
		if mb.GetRaftId() == id {
			return nil
		}
	}
	return err
}
