package manager

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// membershipServer serves api.RaftMembership on the leader: a manager that
// got its certificate adds itself to raft with Join; Leave removes one.
type membershipServer struct {
	api.UnimplementedRaftMembershipServer
	m *Manager
}

func (s *membershipServer) Join(ctx context.Context, req *api.JoinRequest) (*api.JoinResponse, error) {
	resp, err := s.join(ctx, req)
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return resp, nil
}

func (s *membershipServer) join(ctx context.Context, req *api.JoinRequest) (*api.JoinResponse, error) {
	caller, ok := CallerFrom(ctx)
	if !ok {
		return nil, errNoCert
	}
	if req.GetAddr() == "" {
		return nil, api.Wrap(api.ErrInvalidArgument, errors.New("raft join: address is required"))
	}
	var n *api.Node
	s.m.store.View(func(tx raftstore.ReadTx) { n = tx.GetNode(caller.NodeID) })
	if n == nil || n.GetSpec().GetDesiredRole() != api.NodeRole_MANAGER {
		return nil, api.Wrap(api.ErrFailedPrecondition, fmt.Errorf("raft join: node %s is not to be a manager", caller.NodeID))
	}
	if err := s.m.raft.AddVoter(ctx, caller.NodeID, req.GetAddr()); err != nil {
		return nil, fmt.Errorf("raft join of %s at %s: %w", caller.NodeID, req.GetAddr(), err)
	}
	err := s.m.updateNode(ctx, caller.NodeID, func(n *api.Node) bool {
		n.Role = api.NodeRole_MANAGER
		n.ManagerStatus = &api.ManagerStatus{RaftId: caller.NodeID, Addr: req.GetAddr(), Reachability: api.ManagerStatus_REACHABLE}
		return true
	})
	if err != nil {
		return nil, err
	}
	members, err := s.m.raft.Members()
	if err != nil {
		return nil, err
	}
	return &api.JoinResponse{RaftId: caller.NodeID, Members: members}, nil
}

// Leave takes the calling manager out of raft (`swarm leave --force` on a
// manager). A manager removes only itself: others leave by demotion or
// `node rm`, which the membership loop applies. It is refused when the
// managers left would not have a reachable quorum.
func (s *membershipServer) Leave(ctx context.Context, req *api.LeaveRequest) (*api.LeaveResponse, error) {
	if err := s.leave(ctx, req); err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.LeaveResponse{}, nil
}

func (s *membershipServer) leave(ctx context.Context, req *api.LeaveRequest) error {
	caller, ok := CallerFrom(ctx)
	if !ok {
		return errNoCert
	}
	id := req.GetNode().GetRaftId()
	if id == "" {
		id = caller.NodeID
	}
	if id != caller.NodeID {
		return api.Wrap(api.ErrFailedPrecondition, fmt.Errorf("raft leave: node %s may take only itself out of raft, not %s (demote or remove that node instead)", caller.NodeID, id))
	}
	members, err := s.m.raft.Members()
	if err != nil {
		return err
	}
	var rest []string
	member := false
	for _, mb := range members {
		switch {
		case mb.GetRaftId() == id:
			member = true
		case mb.GetVoter():
			rest = append(rest, mb.GetRaftId())
		}
	}
	if !member {
		return nil // already out: a retried leave
	}
	reachable := 0
	s.m.store.View(func(tx raftstore.ReadTx) {
		for _, r := range rest {
			if r == s.m.cfg.NodeID || tx.GetNode(r).GetManagerStatus().GetReachability() == api.ManagerStatus_REACHABLE {
				reachable++
			}
		}
	})
	if quorum := len(rest)/2 + 1; len(rest) == 0 || reachable < quorum {
		return api.Wrap(api.ErrFailedPrecondition, fmt.Errorf("raft leave of %s: would break quorum: %d of the other %d managers are reachable, and they need %d",
			id, reachable, len(rest), quorum))
	}
	if err := s.m.raft.RemoveServer(ctx, id); err != nil {
		return fmt.Errorf("raft leave of %s: %w", id, err)
	}
	return nil
}

// updateNode applies fn to node id and writes it if fn reports a change.
func (m *Manager) updateNode(ctx context.Context, id string, fn func(*api.Node) bool) error {
	// Node objects have many writers (the dispatcher's status, the CA's
	// certificate records, the allocator, this loop): a write that lost
	// the race is made again over the new version (fn sees it), a few
	// times. A promotion's raft join failed on such a conflict and left
	// the node half-promoted (TestClusterRegistry, once in make test).
	var err error
	for range 5 {
		err = m.store.Update(ctx, func(tx raftstore.WriteTx) error {
			n := tx.GetNode(id)
			if n == nil {
				return nil
			}
			if !fn(n) {
				return nil
			}
			return tx.Update(n)
		})
		if !errors.Is(err, api.ErrConflict) {
			return err
		}
	}
	return err
}

// membershipPeriod is how often the leader probes managers and applies
// role changes.
const membershipPeriod = time.Second

// reconcileMembership runs on the leader: it keeps raft membership in line
// with the nodes' desired roles (demotions and removals leave raft here;
// promotions join from the promoted node) and writes each manager's
// reachability and the leader flag into its ManagerStatus.
func (m *Manager) reconcileMembership(ctx context.Context) error {
	for {
		if err := m.membershipPass(ctx); err != nil && ctx.Err() == nil {
			m.log.Debug("manager: membership pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(membershipPeriod):
		}
	}
}

func (m *Manager) membershipPass(ctx context.Context) error {
	members, err := m.raft.Members()
	if err != nil {
		return err
	}
	inRaft := map[string]string{}
	for _, mb := range members {
		inRaft[mb.GetRaftId()] = mb.GetAddr()
	}
	var nodes []*api.Node
	m.store.View(func(tx raftstore.ReadTx) { nodes = tx.Nodes() })
	known := map[string]bool{}
	for _, n := range nodes {
		known[n.GetId()] = true
	}
	// Managers removed from the store (node rm --force) or demoted leave raft.
	for id := range inRaft {
		if id == m.cfg.NodeID {
			continue
		}
		demoted := false
		for _, n := range nodes {
			if n.GetId() == id && n.GetSpec().GetDesiredRole() == api.NodeRole_WORKER {
				demoted = true
			}
		}
		if !known[id] || demoted {
			if err := m.raft.RemoveServer(ctx, id); err != nil {
				return fmt.Errorf("remove %s from raft: %w", id, err)
			}
			delete(inRaft, id)
		}
	}
	reach := m.probeManagers(ctx, inRaft)
	var errs []error
	for _, n := range nodes {
		id := n.GetId()
		_, member := inRaft[id]
		want := proto.Clone(n).(*api.Node)
		switch {
		case member:
			want.Role = api.NodeRole_MANAGER
			want.ManagerStatus = &api.ManagerStatus{RaftId: id, Addr: inRaft[id], Leader: id == m.cfg.NodeID, Reachability: reach[id]}
		case n.GetSpec().GetDesiredRole() == api.NodeRole_WORKER && n.GetRole() == api.NodeRole_MANAGER:
			// Demoted and out of raft: a worker now.
			want.Role = api.NodeRole_WORKER
			want.ManagerStatus = nil
		case n.GetRole() == api.NodeRole_MANAGER && n.GetManagerStatus() != nil:
			// To be a manager but not in raft yet (joining): not reachable.
			want.ManagerStatus.Leader = false
			want.ManagerStatus.Reachability = api.ManagerStatus_UNREACHABLE
		}
		if proto.Equal(want.GetManagerStatus(), n.GetManagerStatus()) && want.GetRole() == n.GetRole() {
			continue
		}
		if err := m.updateNode(ctx, id, func(cur *api.Node) bool {
			cur.Role, cur.ManagerStatus = want.Role, want.ManagerStatus
			return true
		}); err != nil {
			errs = append(errs, err)
		}
	}
	// A demoted leader hands over last: remove itself once the rest is written.
	for _, n := range nodes {
		if n.GetId() == m.cfg.NodeID && n.GetSpec().GetDesiredRole() == api.NodeRole_WORKER && len(inRaft) > 1 {
			errs = append(errs, m.raft.RemoveServer(ctx, m.cfg.NodeID))
		}
	}
	return errors.Join(errs...)
}

// probeManagers asks every other raft member for the root certificate (the
// cheapest call there is) with a short timeout: answered means reachable.
func (m *Manager) probeManagers(ctx context.Context, members map[string]string) map[string]api.ManagerStatus_Reachability {
	out := make(map[string]api.ManagerStatus_Reachability, len(members))
	type result struct {
		id string
		ok bool
	}
	results := make(chan result, len(members))
	for id, addr := range members {
		if id == m.cfg.NodeID {
			out[id] = api.ManagerStatus_REACHABLE
			continue
		}
		go func() {
			pctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
			defer cancel()
			results <- result{id, m.probe(pctx, addr) == nil}
		}()
	}
	for range len(members) - len(out) {
		r := <-results
		out[r.id] = api.ManagerStatus_UNREACHABLE
		if r.ok {
			out[r.id] = api.ManagerStatus_REACHABLE
		}
	}
	return out
}

func (m *Manager) probe(ctx context.Context, addr string) error {
	m.probeMu.Lock()
	conn := m.probeConns[addr]
	if conn == nil {
		c, err := m.cfg.Dial(addr)
		if err != nil {
			m.probeMu.Unlock()
			return err
		}
		if m.probeConns == nil {
			m.probeConns = map[string]*grpc.ClientConn{}
		}
		m.probeConns[addr] = c
		conn = c
	}
	m.probeMu.Unlock()
	_, err := api.NewCAClient(conn).GetRootCACertificate(ctx, &api.GetRootCACertificateRequest{})
	return err
}

// Bootstrap writes the cluster object and the first manager's node after
// `swarm init`, once this node leads its one-member raft. It is a no-op when
// the store already holds a cluster (a restarted first manager), whether
// this manager leads again or follows another.
func (m *Manager) Bootstrap(ctx context.Context, cluster *api.Cluster, self *api.Node) error {
	for {
		changed := m.raft.LeaderChanged()
		var have bool
		m.store.View(func(tx raftstore.ReadTx) { have = len(tx.Clusters()) > 0 })
		if have {
			return nil
		}
		if m.raft.IsLeader() {
			// A restarted manager's store fills only once this term
			// commits: look at the cluster after that, not before.
			err := m.caughtUp(ctx)
			if err == nil {
				err = m.store.Update(ctx, func(tx raftstore.WriteTx) error {
					if len(tx.Clusters()) > 0 {
						return nil
					}
					if err := tx.Create(cluster); err != nil {
						return err
					}
					return tx.Create(self)
				})
			}
			switch {
			case err == nil:
				return nil
			case errors.Is(err, raftstore.ErrClosed),
				!errors.Is(err, api.ErrNotLeader) && !errors.Is(err, api.ErrUnavailable):
				return fmt.Errorf("bootstrap: %w", err)
			}
			// Leadership lost meanwhile: wait for the next leader.
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bootstrap: wait for leadership: %w", ctx.Err())
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}
