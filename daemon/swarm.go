package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager"
	"github.com/shoal-project/shoal/worker"
	"google.golang.org/grpc"
)

// DefaultSwarmPort is the managers' port, as Swarm's.
const DefaultSwarmPort = 2377

// Docker's answers for a node in the wrong swarm state (all 503).
var (
	errNotInSwarm = withStatus(http.StatusServiceUnavailable, errors.New(`This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`))
	errInSwarm    = withStatus(http.StatusServiceUnavailable, errors.New(`This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.`))
	errWorkerNode = withStatus(http.StatusServiceUnavailable, errors.New(`This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.`))
)

// swarmNode is this daemon's membership in a swarm: its identity on disk,
// the manager it runs when it is a manager, and the worker agent that runs
// its tasks (on managers too, as in Swarm). mu serialises init, join, leave
// and role changes, and guards the fields below it.
type swarmNode struct {
	files    swarmFiles
	nodeName string
	runtime  worker.Runtime
	// secrets hands the secrets and configs sent with tasks to the runtime.
	secrets *worker.Secrets
	// ctx is the daemon's: the manager and the agent end with it.
	ctx context.Context

	mu        sync.Mutex
	state     *swarmState
	id        *identity
	mgr       *manager.Manager
	stopMgr   func()
	conn      *grpc.ClientConn // to this node's manager, for the REST routes
	stopAgent func()
	// ov is the running agent's overlay (nil while no agent runs).
	ov *overlayNode
	// onAttachments, if set, is given the node's attachments after each
	// session message (containers on attachable networks; it must not
	// block).
	onAttachments func([]*api.NetworkAttachment)

	// registryPort is the cluster registry's port on this node while it
	// is a manager (0: none; registryserve.go).
	registryPort int
	// registryGC is its garbage collection.
	registryGC RegistryGC
	// gwSubnet is the subnet of the node's NAT bridge for overlay tasks
	// (--gwbridge-subnet; "" is the default).
	gwSubnet string

	// sessMu guards lastSession, the newest session message, which
	// watch takes when sessions signals.
	sessMu      sync.Mutex
	lastSession *api.SessionMessage
	sessions    chan struct{}

	// certs renews the node's certificate while the agent runs.
	certs *certRenewal

	// locked: a restarted manager whose raft data key is sealed waits for
	// `swarm unlock` (swarmdek.go); nothing of the swarm runs meanwhile.
	// unlockKey is the key its data key is sealed with (nil: in the clear).
	locked    bool
	unlockKey []byte

	// dek is the running manager's raft data key, which its TLS key is
	// sealed with on disk (swarmkey.go); nil on a worker. An atomic, as
	// certificate renewals read it without mu.
	dek atomic.Pointer[[]byte]
}

func newSwarmNode(ctx context.Context, dir, nodeName string, rt worker.Runtime) *swarmNode {
	s := &swarmNode{files: swarmFiles{dir: dir}, nodeName: nodeName, runtime: rt, ctx: ctx, sessions: make(chan struct{}, 1)}
	s.certs = newCertRenewal(s.files, s.sealKey)
	go s.watch()
	return s
}

// resume starts what the persisted state says this node runs.
func (s *swarmNode) resume() error {
	st, err := s.files.loadState()
	if err != nil || st == nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = st
	var keys dataKeys
	if st.Role == roleManager {
		locked, err := s.files.dekLocked()
		if err != nil {
			return fmt.Errorf("restart manager: %w", err)
		}
		if locked {
			// The node key is sealed too: unlock loads the identity.
			s.locked = true
			slog.Warn("swarm is locked: run `swarm unlock` to start this manager")
			return nil
		}
		if keys, _, err = s.files.loadDEK(nil); err != nil {
			return fmt.Errorf("restart manager: %w", err)
		}
	}
	if s.id, err = s.files.loadIdentity(keys.all()...); err != nil {
		return err
	}
	if st.Role == roleManager {
		if err := s.startManager(false); err != nil {
			return fmt.Errorf("restart manager: %w", err)
		}
	}
	return s.startAgent()
}

// stop ends the agent and the manager (containers keep running).
func (s *swarmNode) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopAll()
}

func (s *swarmNode) stopAll() {
	if s.stopAgent != nil {
		s.stopAgent()
		s.stopAgent, s.ov = nil, nil
	}
	s.stopManager()
}

func (s *swarmNode) stopManager() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	if s.stopMgr != nil {
		s.unlockKey = s.mgr.UnlockKey() // a restart opens the data key with it
		s.stopMgr()
		s.stopMgr, s.mgr = nil, nil
	}
}

// startManager binds the manager port and runs the manager. Called with mu held.
func (s *swarmNode) startManager(bootstrap bool) error {
	ln, err := listenManager(s.state.ListenAddr)
	if err != nil {
		return err
	}
	return s.runManager(ln, bootstrap)
}

// listenManager binds the manager port; a bad or taken address is the
// client's mistake (400), as in dockerd.
func listenManager(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, withStatus(http.StatusBadRequest, fmt.Errorf("failed to listen on %s: %v", addr, err))
	}
	return ln, nil
}

func (s *swarmNode) runManager(ln net.Listener, bootstrap bool) error {
	clientTLS, err := s.id.clientTLS()
	if err != nil {
		ln.Close()
		return err
	}
	keys, sealedAt, err := s.files.loadDEK(s.unlockKey)
	if err != nil {
		ln.Close()
		return err
	}
	// Sealed with this data key from now on (a new manager's key was
	// written in the clear, as a worker's).
	if err := s.files.saveIdentity(s.id, keys.dek); err != nil {
		ln.Close()
		return err
	}
	s.dek.Store(&keys.dek)
	id := s.id
	beatConn, beatCmd := heartbeatEndpoint(ln)
	m, err := manager.New(manager.Config{
		NodeID: s.state.NodeID, Dir: s.files.raft(), Listener: ln, AdvertiseAddr: s.state.AdvertiseAddr,
		Security: s.id.sec, Bootstrap: bootstrap, BeatConn: beatConn, BeatCommand: beatCmd,
		Dial:      func(addr string) (*grpc.ClientConn, error) { return manager.Dial(addr, clientTLS) },
		DEK:       keys.dek,
		OldDEKs:   keys.old,
		UnlockKey: s.unlockKey,
		SealedAt:  sealedAt,
		SealDEK: func(key []byte, version uint64, dek []byte, old [][]byte) error {
			return s.sealDEK(id, dataKeys{dek: dek, old: old}, key, version)
		},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil {
			slog.Error("manager stopped", "err", err)
		}
	}()
	conn, err := manager.Dial(s.state.AdvertiseAddr, clientTLS)
	if err != nil {
		cancel()
		<-done
		return err
	}
	stopRegistry := func() {}
	if s.registryPort > 0 {
		// The manager runs without its registry rather than not at all:
		// the port may be taken (several daemons on one host).
		stop, err := startRegistry(ctx, s.files.registry(), s.state.AdvertiseAddr, s.registryPort, s.registryGC, s.state.NodeID, s.id.sec, m)
		if err != nil {
			slog.Error("cluster registry not served", "err", err)
		} else {
			stopRegistry = stop
		}
	}
	s.mgr, s.conn = m, conn
	s.stopMgr = func() { stopRegistry(); cancel(); <-done }
	return nil
}

// sealKey is the key the node's TLS key is sealed with on disk: the
// running manager's data key, nil on a worker.
func (s *swarmNode) sealKey() []byte {
	if p := s.dek.Load(); p != nil {
		return *p
	}
	return nil
}

// dispatcherConn is a gRPC connection as the agent uses it.
type dispatcherConn struct {
	api.DispatcherClient
	api.LogBrokerClient
	*grpc.ClientConn
}

// startAgent runs the worker agent against the known managers. Called with mu held.
func (s *swarmNode) startAgent() error {
	managers := s.state.Managers
	if s.state.Role == roleManager {
		// Its own manager first: no network hop, and it forwards to the leader.
		managers = append([]string{s.state.AdvertiseAddr}, managers...)
	}
	id := s.id
	ov, err := newOverlayNode(s.files.dir, s.state.NodeID, s.state.AdvertiseAddr)
	if err != nil {
		return err
	}
	ov.gw = newGWBridge(s.files.dir, s.gwSubnet)
	s.ov = ov
	a, err := worker.New(worker.Config{
		Managers: dedup(managers),
		Dial: func(ctx context.Context, addr string) (worker.Conn, error) {
			c, err := id.dial(addr)
			if err != nil {
				return nil, err
			}
			return dispatcherConn{api.NewDispatcherClient(c), api.NewLogBrokerClient(c), c}, nil
		},
		Runtime:     s.runtime,
		Secrets:     s.secrets,
		Network:     ov,
		Description: s.description(),
		RetryDelay:  200 * time.Millisecond,
		OnSession: func(m *api.SessionMessage) {
			s.onSession(m)
			ov.follow(m)
			s.certs.follow(id, m)
		},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		s.certs.run(ctx, id, dedup(managers), s.state.AdvertiseAddr)
	}()
	overlayDone := make(chan struct{})
	go func() {
		defer close(overlayDone)
		ov.run(ctx)
	}()
	s.stopAgent = func() { cancel(); <-done; <-renewed; <-overlayDone }
	return nil
}

// description is what the node tells the managers about itself.
func (s *swarmNode) description() *api.NodeDescription {
	return &api.NodeDescription{
		Hostname:  s.nodeName,
		Platform:  &api.Platform{Architecture: machine(), Os: "linux"}, // x86_64, as dockerd's
		Resources: &api.Resources{NanoCpus: int64(runtime.NumCPU()) * 1e9, MemoryBytes: memTotal()},
		Engine:    &api.EngineDescription{EngineVersion: Version},
	}
}

// onSession is the agent's callback: it hands the message to watch without
// blocking, because the agent calls it from a session goroutine that
// stopAgent (under mu) waits for.
func (s *swarmNode) onSession(m *api.SessionMessage) {
	s.sessMu.Lock()
	s.lastSession = m
	s.sessMu.Unlock()
	select {
	case s.sessions <- struct{}{}:
	default:
	}
}

// watch follows the managers' view of this node until ctx ends: the
// manager list (kept for restarts) and its role (promotion, demotion).
func (s *swarmNode) watch() {
	// A role change that failed is tried again from the newest session
	// message, also when no new one comes.
	retry := time.NewTicker(roleRetry)
	defer retry.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.sessions:
		case <-retry.C:
			if !s.roleMismatch() {
				continue
			}
		}
		s.sessMu.Lock()
		m := s.lastSession
		s.sessMu.Unlock()
		s.follow(m)
		if s.onAttachments != nil {
			s.onAttachments(m.GetNode().GetAttachments())
		}
	}
}

// roleRetry is how often watch looks again at a role change that failed.
const roleRetry = 5 * time.Second

// roleMismatch reports whether the newest session asks this node for a
// role it does not have (a role change that failed).
func (s *swarmNode) roleMismatch() bool {
	s.sessMu.Lock()
	m := s.lastSession
	s.sessMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil || m == nil || m.GetNode().GetId() != s.state.NodeID {
		return false
	}
	want := m.GetNode().GetSpec().GetDesiredRole()
	return (s.state.Role == roleWorker) == (want == api.NodeRole_MANAGER)
}

func (s *swarmNode) follow(m *api.SessionMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil || m.GetNode().GetId() != s.state.NodeID {
		return
	}
	var addrs []string
	for _, p := range m.GetManagers() {
		if p.GetAddr() != "" {
			addrs = append(addrs, p.GetAddr())
		}
	}
	slices.Sort(addrs)
	if len(addrs) > 0 && !slices.Equal(addrs, s.state.Managers) {
		s.state.Managers = addrs
		if err := s.files.save(s.state); err != nil {
			slog.Warn("swarm: save manager list", "err", err)
		}
	}
	n := m.GetNode()
	switch {
	case s.state.Role == roleWorker && n.GetSpec().GetDesiredRole() == api.NodeRole_MANAGER:
		s.changeRole(roleManager)
	case s.state.Role == roleManager && n.GetSpec().GetDesiredRole() == api.NodeRole_WORKER && n.GetRole() == api.NodeRole_WORKER:
		s.changeRole(roleWorker)
	}
}

// advertiseFor picks the address this node is reached at: the one given
// (with the listen port when it has none), else the local address of the
// route to remote, else the listen address when it names one.
func advertiseFor(given, listen, remote string) (string, error) {
	_, lport, err := net.SplitHostPort(listen)
	if err != nil {
		return "", withStatus(http.StatusBadRequest, fmt.Errorf("invalid listen address %q: %v", listen, err))
	}
	if given != "" {
		if _, _, err := net.SplitHostPort(given); err == nil {
			return given, nil
		}
		if net.ParseIP(given) == nil {
			if ifc, err := net.InterfaceByName(given); err == nil {
				if ip := firstIPv4(ifc); ip != "" {
					return net.JoinHostPort(ip, lport), nil
				}
			}
			return "", withStatus(http.StatusBadRequest, fmt.Errorf("invalid advertise address %q: not an IP address or interface", given))
		}
		return net.JoinHostPort(given, lport), nil
	}
	if host, _, _ := net.SplitHostPort(listen); host != "" && !net.ParseIP(host).IsUnspecified() {
		return listen, nil
	}
	if remote != "" {
		c, err := net.Dial("udp", remote)
		if err == nil {
			defer c.Close()
			return net.JoinHostPort(c.LocalAddr().(*net.UDPAddr).IP.String(), lport), nil
		}
	}
	ips := localIPv4s()
	if len(ips) == 1 {
		return net.JoinHostPort(ips[0], lport), nil
	}
	return "", withStatus(http.StatusBadRequest, fmt.Errorf("could not choose an IP address to advertise since this system has %d addresses: use --advertise-addr", len(ips)))
}

func firstIPv4(ifc *net.Interface) string {
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

func localIPv4s() []string {
	ifcs, _ := net.Interfaces()
	var out []string
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0 {
			continue
		}
		if ip := firstIPv4(&ifc); ip != "" {
			out = append(out, ip)
		}
	}
	return out
}

// normalizeListen fills in Swarm's defaults: 0.0.0.0:2377.
func normalizeListen(addr string) string {
	if addr == "" {
		return "0.0.0.0:" + strconv.Itoa(DefaultSwarmPort)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return net.JoinHostPort(addr, strconv.Itoa(DefaultSwarmPort))
	}
	return addr
}

// dedup keeps the first of each address, in order.
func dedup(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// removeState deletes the node's swarm directory (leave, failed init/join).
func (s *swarmNode) removeState() {
	if err := os.RemoveAll(s.files.dir); err != nil {
		slog.Warn("swarm: remove state", "err", err)
	}
}
