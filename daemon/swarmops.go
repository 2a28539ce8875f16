package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager"
	"google.golang.org/grpc"
)

// initSwarm makes this node the first manager of a new swarm and returns its
// node ID. On any failure nothing of the swarm is left behind.
func (s *swarmNode) initSwarm(ctx context.Context, listen, advertise string, spec *api.ClusterSpec, avail api.NodeSpec_Availability, nets initNetworks) (_ string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != nil {
		return "", errInSwarm
	}
	listen = normalizeListen(listen)
	adv, err := advertiseFor(advertise, listen, "")
	if err != nil {
		return "", err
	}
	ln, err := listenManager(listen)
	if err != nil {
		return "", err
	}
	f, err := manager.Found(adv, spec, avail, time.Now())
	if err != nil {
		ln.Close()
		return "", err
	}
	f.Node.Description = s.description()
	nets.apply(f.Cluster)
	defer func() {
		if err != nil {
			s.stopAll()
			s.state, s.id = nil, nil
			s.removeState()
		}
	}()
	if s.id, err = newIdentity(f.Root, f.Cert, f.Key); err != nil {
		ln.Close()
		return "", err
	}
	s.state = &swarmState{NodeID: f.Node.GetId(), Role: roleManager, ListenAddr: listen, AdvertiseAddr: adv}
	s.unlockKey = f.Cluster.GetUnlockKey() // with --autolock, the data key is sealed from the start
	// runManager writes the identity, its key sealed with the new data key.
	if err := s.runManager(ln, true); err != nil {
		return "", err
	}
	bctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := s.mgr.Bootstrap(bctx, f.Cluster, f.Node); err != nil {
		return "", err
	}
	if err := s.files.save(s.state); err != nil {
		return "", err
	}
	if err := s.startAgent(); err != nil {
		return "", err
	}
	s.awaitReady(ctx)
	slog.Info("swarm initialized", "node", s.state.NodeID, "advertise", adv)
	return s.state.NodeID, nil
}

// readyWait bounds how long init and join wait for the node to be ready.
const readyWait = 20 * time.Second

// awaitReady waits, for at most readyWait, until the agent's first session
// with a manager is open: the dispatcher marks the node ready before its
// first message. dockerd's init and join return at that point too (its
// node runner's Ready), so a client that lists the nodes at once sees this
// one ready, not unknown, and at the version it keeps (docker-py's
// test_inspect_node and test_update_node read it; they failed 10 times in
// 15). A node that is not ready by then stays in the swarm, as dockerd's
// join that times out: the agent goes on trying.
func (s *swarmNode) awaitReady(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	for {
		s.sessMu.Lock()
		n := s.lastSession.GetNode()
		s.sessMu.Unlock()
		if n.GetId() == s.state.NodeID && n.GetStatus().GetState() == api.NodeStatus_READY {
			return
		}
		select {
		case <-ctx.Done():
			slog.Warn("swarm: the node is not ready yet; its agent goes on trying", "node", s.state.NodeID, "err", ctx.Err())
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// joinSwarm joins the swarm of the manager at remote with token. The token
// decides the role. A manager's port is bound before the token is sent, so
// that a bad listen address fails before the cluster registers the node.
func (s *swarmNode) joinSwarm(ctx context.Context, remote, token, listen, advertise string, avail api.NodeSpec_Availability) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != nil {
		return errInSwarm
	}
	if _, _, err := net.SplitHostPort(remote); err != nil {
		remote = net.JoinHostPort(remote, fmt.Sprint(DefaultSwarmPort))
	}
	listen = normalizeListen(listen)
	adv, err := advertiseFor(advertise, listen, remote)
	if err != nil {
		return err
	}
	ln, err := listenManager(listen)
	if err != nil {
		return err
	}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := manager.Join(jctx, remote, token, adv, avail)
	if err != nil {
		ln.Close()
		return err
	}
	defer func() {
		if err != nil {
			s.stopAll()
			s.state, s.id = nil, nil
			s.removeState()
		}
	}()
	if s.id, err = newIdentity(res.Root, res.Cert, res.Key); err != nil {
		ln.Close()
		return err
	}
	s.state = &swarmState{NodeID: res.NodeID, Role: roleWorker, ListenAddr: listen, AdvertiseAddr: adv, Managers: []string{remote}}
	if err := s.files.saveIdentity(s.id, nil); err != nil {
		ln.Close()
		return err
	}
	if res.Role == api.NodeRole_MANAGER {
		s.state.Role = roleManager
		if err := s.runManager(ln, false); err != nil {
			return err
		}
		if err := s.joinRaft(jctx, remote); err != nil {
			return err
		}
	} else {
		ln.Close()
	}
	if err := s.files.save(s.state); err != nil {
		return err
	}
	if err := s.startAgent(); err != nil {
		return err
	}
	s.awaitReady(ctx)
	slog.Info("joined swarm", "node", res.NodeID, "role", s.state.Role, "manager", remote)
	return nil
}

// joinRaft asks the managers (through remote, which forwards to the leader)
// to add this node's manager to raft.
func (s *swarmNode) joinRaft(ctx context.Context, remote string) error {
	conn, err := s.id.dial(remote)
	if err != nil {
		return err
	}
	defer conn.Close()
	var last error
	for ctx.Err() == nil {
		_, err := api.NewRaftMembershipClient(conn).Join(ctx, &api.JoinRequest{Addr: s.state.AdvertiseAddr})
		if err == nil {
			return nil
		}
		last = api.FromGRPC(err)
		// The node the certificate names may not have reached every manager
		// yet; anything else is final.
		if !errors.Is(last, api.ErrUnavailable) && !errors.Is(last, api.ErrFailedPrecondition) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("join raft through %s: %w", remote, last)
}

// leaveSwarm leaves the swarm: a manager only with force (as Swarm, which
// warns that the last manager's leave erases the swarm). Task containers
// are removed; other containers stay.
func (s *swarmNode) leaveSwarm(ctx context.Context, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil {
		return withStatus(http.StatusServiceUnavailable, errors.New("This node is not part of a swarm"))
	}
	if s.state.Role == roleManager && !force {
		return withStatus(http.StatusServiceUnavailable, errors.New("You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves the remaining managers with one fewer member, and removing the last manager erases all current state of the swarm. Use `--force` to ignore this message."))
	}
	if s.state.Role == roleManager && s.conn != nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := api.NewRaftMembershipClient(s.conn).Leave(lctx, &api.LeaveRequest{Node: &api.RaftMember{RaftId: s.state.NodeID}})
		cancel()
		if err != nil {
			slog.Warn("swarm leave: raft leave", "err", api.FromGRPC(err))
		}
	}
	s.stopAll()
	s.removeTaskContainers(ctx)
	if err := removeOverlay(ctx, s.files.dir, s.state.AdvertiseAddr, s.gwSubnet); err != nil {
		slog.Warn("swarm leave: remove overlay networking", "err", err)
	}
	s.state, s.id = nil, nil
	s.locked, s.unlockKey = false, nil
	s.removeState()
	return nil
}

func (s *swarmNode) removeTaskContainers(ctx context.Context) {
	cs, err := s.runtime.List(ctx)
	if err != nil {
		slog.Warn("swarm leave: list task containers", "err", err)
		return
	}
	for _, c := range cs {
		if err := s.runtime.Remove(ctx, c.ID); err != nil {
			slog.Warn("swarm leave: remove task container", "id", c.ID, "err", err)
		}
	}
}

// changeRole follows a promotion or demotion that the managers decided: a
// certificate for the new role, then the manager started (and joined to
// raft) or stopped (and its raft state dropped).
// Called with mu held.
func (s *swarmNode) changeRole(to string) {
	if s.state == nil || s.state.Role == to {
		return
	}
	start := time.Now()
	if err := s.switchRole(to); err != nil {
		slog.Error("swarm: role change failed", "to", to, "err", err, "after", time.Since(start))
		return
	}
	slog.Info("swarm: role changed", "node", s.state.NodeID, "role", to, "took", time.Since(start))
}

func (s *swarmNode) switchRole(to string) error {
	// This node's own manager is tried last: on a demotion it is out of
	// raft already and cannot record the certificate, so asking it first
	// held the demotion up for the whole timeout (TestClusterRegistry,
	// when this node's address sorted first).
	var addrs []string
	for _, a := range s.state.Managers {
		if a != s.state.AdvertiseAddr {
			addrs = append(addrs, a)
		}
	}
	addrs = append(addrs, s.state.AdvertiseAddr)
	var lastErr error
	for _, addr := range addrs {
		conn, err := s.id.dial(addr)
		if err != nil {
			lastErr = err
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		res, err := manager.Renew(ctx, conn, s.state.AdvertiseAddr)
		cancel()
		conn.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if (to == roleManager) != (res.Role == api.NodeRole_MANAGER) {
			return fmt.Errorf("renewed certificate has role %v, want %s", res.Role, to)
		}
		ctx, cancel = context.WithTimeout(s.ctx, 30*time.Second)
		defer cancel()
		return s.applyRole(ctx, to, res, addr)
	}
	return fmt.Errorf("renew certificate: %w", lastErr)
}

func (s *swarmNode) applyRole(ctx context.Context, to string, res *manager.JoinResult, via string) error {
	if s.stopAgent != nil {
		start := time.Now()
		s.stopAgent()
		s.stopAgent, s.ov = nil, nil
		if d := time.Since(start); d > time.Second {
			slog.Warn("swarm: role change: the agent took long to stop", "took", d)
		}
	}
	if err := s.id.sec.SetCredentials(res.Cert, res.Key); err != nil {
		return err
	}
	// In the clear before the data key goes; a promoted node's manager
	// seals it again with its new data key (runManager).
	if err := s.files.saveIdentity(s.id, nil); err != nil {
		return err
	}
	if to == roleManager {
		os.RemoveAll(s.files.raft())
		s.dropDEK() // a new raft state, a new data key
		if err := s.startManager(false); err != nil {
			return s.resumeWorker(err)
		}
		s.state.Role = roleManager
		if err := s.joinRaft(ctx, via); err != nil {
			// Not left half a manager (serving, out of raft) and without
			// an agent: a worker again, whose next session (or watch's
			// retry) asks anew.
			s.stopManager()
			os.RemoveAll(s.files.raft())
			s.dropDEK()
			s.state.Role = roleWorker
			return s.resumeWorker(err)
		}
	} else {
		s.stopManager()
		os.RemoveAll(s.files.raft())
		s.dropDEK()
		s.state.Role = roleWorker
	}
	if err := s.files.save(s.state); err != nil {
		return err
	}
	return s.startAgent()
}

// managerConn is the connection to this node's manager, for the cluster
// routes: Docker's 503s on a node in no swarm or a worker.
func (s *swarmNode) managerConn() (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.state == nil:
		return nil, errNotInSwarm
	case s.locked:
		return nil, errSwarmLocked
	case s.state.Role != roleManager || s.conn == nil:
		return nil, errWorkerNode
	}
	return s.conn, nil
}

// snapshot is this node's swarm membership for /info and /_ping.
type swarmSnapshot struct {
	state    *swarmState // a copy; nil when the node is in no swarm
	noLeader bool        // a manager that knows of no leader: no quorum
	locked   bool        // a manager waiting for `swarm unlock`
}

func (s *swarmNode) snapshot() swarmSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil {
		return swarmSnapshot{}
	}
	st := *s.state
	st.Managers = slices.Clone(st.Managers)
	snap := swarmSnapshot{state: &st, locked: s.locked}
	if s.mgr != nil {
		id, _ := s.mgr.Raft().Leader()
		snap.noLeader = id == ""
	}
	return snap
}

// resumeWorker restarts the agent after a promotion failed with err (the
// node keeps its sessions, so the promotion can be tried again) and
// returns err.
func (s *swarmNode) resumeWorker(err error) error {
	if s.stopAgent == nil {
		if aerr := s.startAgent(); aerr != nil {
			return errors.Join(err, fmt.Errorf("restart the agent: %w", aerr))
		}
	}
	return err
}
