package controlapi

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// The cluster is one object; shoal stores exactly one, made by `swarm init`.
func getCluster(tx raftstore.ReadTx) (*api.Cluster, error) {
	cs := tx.Clusters()
	if len(cs) == 0 {
		return nil, notFound("cluster not found: the swarm is not initialized yet")
	}
	return cs[0], nil
}

// redact drops the CA key, the unlock key and the gossip keys' bytes: they
// stay inside the managers' raft state and are never handed to a client.
// The gossip keys' creation times stay, so that a client sees rotation.
func redact(c *api.Cluster) *api.Cluster {
	c.UnlockKey = nil
	keys := make([]*api.GossipKey, 0, len(c.GossipKeys))
	for _, k := range c.GossipKeys {
		keys = append(keys, &api.GossipKey{CreatedAt: k.GetCreatedAt()})
	}
	c.GossipKeys = keys
	if c.GetRootCa() != nil {
		c.RootCa.CaKey = nil
		if c.RootCa.RootRotation != nil {
			c.RootCa.RootRotation.CaKey = nil
		}
	}
	return c
}

// GetCluster returns the cluster object without its CA key.
func (s *Server) GetCluster(ctx context.Context, req *api.GetClusterRequest) (*api.GetClusterResponse, error) {
	var c *api.Cluster
	var err error
	s.store.View(func(tx raftstore.ReadTx) { c, err = getCluster(tx) })
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.GetClusterResponse{Cluster: redact(c)}, nil
}

// minCertExpiry is Swarm's lower bound on node certificate validity: shorter
// certificates would be renewed faster than they can be issued under load.
const minCertExpiry = time.Hour

func validateClusterSpec(spec *api.ClusterSpec) error {
	if spec == nil {
		return invalid("cluster spec is required")
	}
	if l := spec.GetTaskHistoryRetentionLimit(); l < 0 {
		return invalid("task history retention limit must not be negative, got %d", l)
	}
	if err := validateDuration("heartbeat period", spec.GetHeartbeatPeriod()); err != nil {
		return err
	}
	if d := spec.GetHeartbeatPeriod(); d != nil && d.AsDuration() == 0 {
		return invalid("heartbeat period must be positive")
	}
	if err := validateDuration("node certificate expiry", spec.GetNodeCertExpiry()); err != nil {
		return err
	}
	if d := spec.GetNodeCertExpiry(); d != nil && d.AsDuration() < minCertExpiry {
		return invalid("node certificate expiry must be at least %s, got %s", minCertExpiry, d.AsDuration())
	}
	if err := validateDuration("data key rotation", spec.GetDataKeyRotation()); err != nil {
		return err
	}
	if d := spec.GetDataKeyRotation(); d != nil && (d.AsDuration() < MinDataKeyRotation || d.AsDuration() > MaxDataKeyRotation) {
		return invalid("data key rotation must be between %s and %s, got %s", MinDataKeyRotation, MaxDataKeyRotation, d.AsDuration())
	}
	return nil
}

// The cluster data key's rotation period (ClusterSpec.data_key_rotation).
// The maximum is the "at least every 12 h". The minimum keeps the
// previous key's overlap (half the period, up to 30m) far above the time a
// node takes to learn a new key (its session pushes it at once; a node
// whose session broke has FixedHeartbeatPeriod x a few missed beats before
// it is down), and a raft write a minute is nothing.
const (
	DefaultDataKeyRotation = 6 * time.Hour
	MinDataKeyRotation     = time.Minute
	MaxDataKeyRotation     = 12 * time.Hour
)

// DataKeyRotation is spec's rotation period, the default when unset.
func DataKeyRotation(spec *api.ClusterSpec) time.Duration {
	if d := spec.GetDataKeyRotation(); d != nil {
		return d.AsDuration()
	}
	return DefaultDataKeyRotation
}

// ValidateClusterSpec checks spec as a change from old (nil for `swarm
// init`). Settings shoal cannot apply are refused when they would change,
// rather than stored and ignored; the values clusters made before this
// check hold are kept.
func ValidateClusterSpec(old, spec *api.ClusterSpec) error {
	if err := validateClusterSpec(spec); err != nil {
		return err
	}
	if d := spec.GetHeartbeatPeriod(); d != nil && d.AsDuration() != FixedHeartbeatPeriod && d.AsDuration() != old.GetHeartbeatPeriod().AsDuration() {
		return invalid("dispatcher heartbeat period is fixed at %s in shoal, got %s", FixedHeartbeatPeriod, d.AsDuration())
	}
	if k := spec.GetKeepOldSnapshots(); k != raftstore.KeepOldSnapshots && k != old.GetKeepOldSnapshots() {
		return invalid("keep-old-snapshots is fixed at %d in shoal (the raft library sets it when a manager starts), got %d",
			raftstore.KeepOldSnapshots, k)
	}
	return nil
}

// FixedHeartbeatPeriod is the agents' heartbeat period: the dispatcher's
// timing (and the down-after-missed-beats rule) is built around it, so
// `swarm update --dispatcher-heartbeat` accepts no other value.
const FixedHeartbeatPeriod = time.Second

// UpdateCluster replaces the cluster's spec (history limit, heartbeat
// period, certificate expiry, snapshot settings); the version must be the
// stored one. An empty name keeps the current one.
func (s *Server) UpdateCluster(ctx context.Context, req *api.UpdateClusterRequest) (*api.UpdateClusterResponse, error) {
	return wire(s.updateCluster(ctx, req))
}

func (s *Server) updateCluster(ctx context.Context, req *api.UpdateClusterRequest) (*api.UpdateClusterResponse, error) {
	if err := validateClusterSpec(req.GetSpec()); err != nil {
		return nil, err
	}
	spec := proto.Clone(req.GetSpec()).(*api.ClusterSpec)
	var id string
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		c, err := getCluster(tx)
		if err != nil {
			return err
		}
		id = c.GetId()
		if v := c.GetMeta().GetVersion(); req.GetClusterVersion() != v {
			return conflict("cluster: update out of sequence (version %d, current %d): read it again and retry",
				req.GetClusterVersion(), v)
		}
		if spec.GetAnnotations().GetName() == "" && c.GetSpec().GetAnnotations() != nil {
			if spec.Annotations == nil {
				spec.Annotations = &api.Annotations{}
			}
			spec.Annotations.Name = c.GetSpec().GetAnnotations().GetName()
		}
		if err := ValidateClusterSpec(c.GetSpec(), spec); err != nil {
			return err
		}
		// A rotation asked for with autolock off in the new spec is no
		// error, as swarmkit's: the cluster just has no key (docker-py's
		// update_swarm(rotate_manager_unlock_key=True) sends an empty spec,
		// which turns autolock off). The CLIs refuse `unlock-key --rotate`
		// themselves when autolock is off.
		if proto.Equal(spec, c.GetSpec()) && !req.GetRotateUnlockKey() {
			return nil
		}
		if err := setUnlockKey(c, spec.GetAutolockManagers(), req.GetRotateUnlockKey()); err != nil {
			return err
		}
		if spec.GetCaForceRotate() != c.GetSpec().GetCaForceRotate() {
			if err := startRootRotation(c, s.now()); err != nil {
				return err
			}
		}
		c.Spec = spec
		return tx.Update(c)
	})
	if err != nil {
		return nil, err
	}
	var out *api.Cluster
	s.store.View(func(tx raftstore.ReadTx) { out = tx.GetCluster(id) })
	if out == nil {
		return nil, notFound("cluster %s not found", id)
	}
	return &api.UpdateClusterResponse{Cluster: redact(out)}, nil
}

// UnlockKeySize is the length of an unlock key (Swarm's: 32 random bytes).
const UnlockKeySize = 32

// NewUnlockKey makes a random unlock key.
func NewUnlockKey() ([]byte, error) {
	k := make([]byte, UnlockKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("unlock key: %w", err)
	}
	return k, nil
}

// setUnlockKey keeps c's unlock key in line with autolock: a key while it is
// on (a new one on rotate), none when it is off. Each manager watches the
// cluster and seals its data key with the key it sees (manager/dek.go).
func setUnlockKey(c *api.Cluster, autolock, rotate bool) error {
	if !autolock {
		c.UnlockKey = nil
		return nil
	}
	if len(c.UnlockKey) > 0 && !rotate {
		return nil
	}
	k, err := NewUnlockKey()
	if err != nil {
		return err
	}
	c.UnlockKey = k
	return nil
}

// GetUnlockKey returns the cluster's unlock key, empty when autolock is off.
func (s *Server) GetUnlockKey(ctx context.Context, req *api.GetUnlockKeyRequest) (*api.GetUnlockKeyResponse, error) {
	var c *api.Cluster
	var err error
	s.store.View(func(tx raftstore.ReadTx) { c, err = getCluster(tx) })
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	return &api.GetUnlockKeyResponse{UnlockKey: c.GetUnlockKey()}, nil
}

// GetJoinTokens returns the current worker and manager join tokens.
func (s *Server) GetJoinTokens(ctx context.Context, req *api.GetJoinTokensRequest) (*api.GetJoinTokensResponse, error) {
	var c *api.Cluster
	var err error
	s.store.View(func(tx raftstore.ReadTx) { c, err = getCluster(tx) })
	if err != nil {
		return nil, api.ToGRPC(err)
	}
	tokens := c.GetRootCa().GetJoinTokens()
	if tokens == nil {
		tokens = &api.JoinTokens{}
	}
	return &api.GetJoinTokensResponse{Tokens: tokens}, nil
}

// RotateJoinToken gives role's token a new secret, pinned to the cluster's CA.
// Nodes that already joined are not affected; the old token stops admitting
// new ones.
func (s *Server) RotateJoinToken(ctx context.Context, req *api.RotateJoinTokenRequest) (*api.RotateJoinTokenResponse, error) {
	return wire(s.rotateJoinToken(ctx, req))
}

func (s *Server) rotateJoinToken(ctx context.Context, req *api.RotateJoinTokenRequest) (*api.RotateJoinTokenResponse, error) {
	role := req.GetRole()
	if err := validateEnum("node role", role, api.NodeRole_name); err != nil {
		return nil, err
	}
	var tokens *api.JoinTokens
	err := s.store.Update(ctx, func(tx raftstore.WriteTx) error {
		c, err := getCluster(tx)
		if err != nil {
			return err
		}
		block, _ := pem.Decode(c.GetRootCa().GetCaCert())
		if block == nil {
			return precondition("cluster %s has no root CA certificate to pin join tokens to", c.GetId())
		}
		tok, err := ca.NewToken(block.Bytes)
		if err != nil {
			return err
		}
		if c.RootCa.JoinTokens == nil {
			c.RootCa.JoinTokens = &api.JoinTokens{}
		}
		if role == api.NodeRole_MANAGER {
			c.RootCa.JoinTokens.Manager = tok.String()
		} else {
			c.RootCa.JoinTokens.Worker = tok.String()
		}
		tokens = proto.Clone(c.RootCa.JoinTokens).(*api.JoinTokens)
		return tx.Update(c)
	})
	if err != nil {
		return nil, err
	}
	return &api.RotateJoinTokenResponse{Tokens: tokens}, nil
}

// startRootRotation begins `swarm ca --rotate` on c: a new root and its
// cross-signed intermediate, stored as the rotation in progress; the
// leader's rotation loop moves every node onto the new root and then
// completes it. A rotation already in progress is replaced by a new one.
func startRootRotation(c *api.Cluster, now time.Time) error {
	rc := c.GetRootCa()
	cur, err := ca.ParseRootCA(rc.GetCaCert(), rc.GetCaKey())
	if err != nil || cur.Key == nil {
		return precondition("cluster CA cannot sign, so its root cannot be rotated: %v", err)
	}
	next, cross, err := cur.NextRoot(now)
	if err != nil {
		return err
	}
	keyPEM, err := next.KeyPEM()
	if err != nil {
		return err
	}
	rc.RootRotation = &api.RootRotation{CaCert: next.CertPEM(), CaKey: keyPEM, CrossSignedCaCert: cross}
	return nil
}
