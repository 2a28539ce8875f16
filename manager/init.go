package manager

import (
	"crypto/ecdsa"
	"fmt"
	"net"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/manager/controlapi"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultTaskHistory is Swarm's task history retention limit per slot.
const DefaultTaskHistory = 5

// Founding is what `swarm init` makes before the first manager starts: the
// cluster object (root CA with its key, join tokens), the first node and its
// manager certificate.
type Founding struct {
	Cluster *api.Cluster
	Node    *api.Node
	Root    *ca.RootCA
	Cert    []byte
	Key     *ecdsa.PrivateKey
}

// Found creates a new cluster's identity for a first manager reachable at
// advertise (host:port). spec may be nil for Swarm's defaults.
func Found(advertise string, spec *api.ClusterSpec, availability api.NodeSpec_Availability, now time.Time) (*Founding, error) {
	clusterID, nodeID := raftstore.NewID(), raftstore.NewID()
	root, err := ca.NewRootCA(clusterID, now)
	if err != nil {
		return nil, err
	}
	keyPEM, err := root.KeyPEM()
	if err != nil {
		return nil, err
	}
	worker, err := ca.NewToken(root.Cert.Raw)
	if err != nil {
		return nil, err
	}
	mgr, err := ca.NewToken(root.Cert.Raw)
	if err != nil {
		return nil, err
	}
	key, csr, err := ca.NewNodeKey()
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		return nil, fmt.Errorf("advertise address %q: %w", advertise, err)
	}
	if spec == nil {
		spec = &api.ClusterSpec{}
	}
	if err := controlapi.ValidateClusterSpec(nil, spec); err != nil {
		return nil, err
	}
	root.Validity = spec.GetNodeCertExpiry().AsDuration()
	cert, err := root.IssueNodeCertificate(csr, nodeID, ca.RoleManager, []string{host}, now)
	if err != nil {
		return nil, err
	}
	record, err := certificateRecord(cert, nodeID, api.NodeRole_MANAGER)
	if err != nil {
		return nil, err
	}
	if spec.Annotations == nil {
		spec.Annotations = &api.Annotations{Name: "default"}
	}
	if spec.TaskHistoryRetentionLimit == 0 {
		spec.TaskHistoryRetentionLimit = DefaultTaskHistory
	}
	if spec.HeartbeatPeriod == nil {
		spec.HeartbeatPeriod = durationpb.New(time.Second)
	}
	if spec.NodeCertExpiry == nil {
		spec.NodeCertExpiry = durationpb.New(ca.NodeValidity)
	}
	if spec.DataKeyRotation == nil {
		spec.DataKeyRotation = durationpb.New(controlapi.DefaultDataKeyRotation)
	}
	if spec.KeepOldSnapshots == 0 {
		spec.KeepOldSnapshots = raftstore.KeepOldSnapshots
	}
	f := &Founding{
		Cluster: &api.Cluster{
			Id:   clusterID,
			Spec: spec,
			RootCa: &api.RootCA{
				CaCert: root.CertPEM(), CaKey: keyPEM,
				JoinTokens: &api.JoinTokens{Worker: worker.String(), Manager: mgr.String()},
			},
		},
		Node: &api.Node{
			Id:            nodeID,
			Spec:          &api.NodeSpec{DesiredRole: api.NodeRole_MANAGER, Availability: availability},
			Role:          api.NodeRole_MANAGER,
			Certificate:   record,
			Status:        &api.NodeStatus{State: api.NodeStatus_UNKNOWN, Addr: host},
			ManagerStatus: &api.ManagerStatus{RaftId: nodeID, Addr: advertise, Leader: true, Reachability: api.ManagerStatus_REACHABLE},
		},
		Root: root,
		Cert: cert,
		Key:  key,
	}
	if spec.GetAutolockManagers() {
		// The first manager seals its data key with it from the start.
		if f.Cluster.UnlockKey, err = controlapi.NewUnlockKey(); err != nil {
			return nil, err
		}
	}
	return f, nil
}
