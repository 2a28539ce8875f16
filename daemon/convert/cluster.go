package convert

import (
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/controlapi"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ClusterToSwarm is the cluster as GET /swarm answers it, join tokens
// included (GET /info's Swarm.Cluster is its ClusterInfo). TLSInfo.TrustRoot
// is the root CA certificate; the CA key never leaves. Raft ticks and
// LogEntriesForSlowFollowers have no shoal setting and are 0; DataPathPort
// is 4789 when the cluster stores none (clusters made before it was stored).
func ClusterToSwarm(c *api.Cluster) swarm.Swarm {
	spec := c.GetSpec()
	limit := spec.GetTaskHistoryRetentionLimit()
	keep := spec.GetKeepOldSnapshots()
	out := swarm.Swarm{
		ClusterInfo: swarm.ClusterInfo{
			ID:   c.GetId(),
			Meta: MetaToSwarm(c.GetMeta()),
			Spec: swarm.Spec{
				Annotations:      annotationsToSwarm(spec.GetAnnotations()),
				Orchestration:    swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &limit},
				Raft:             swarm.RaftConfig{SnapshotInterval: spec.GetSnapshotInterval(), KeepOldSnapshots: &keep},
				Dispatcher:       swarm.DispatcherConfig{HeartbeatPeriod: durationToSwarm(spec.GetHeartbeatPeriod())},
				CAConfig:         swarm.CAConfig{NodeCertExpiry: durationToSwarm(spec.GetNodeCertExpiry()), ForceRotate: spec.GetCaForceRotate()},
				EncryptionConfig: swarm.EncryptionConfig{AutoLockManagers: spec.GetAutolockManagers()},
			},
			TLSInfo:                rootTLSInfo(c.GetRootCa().GetCaCert()),
			RootRotationInProgress: c.GetRootCa().GetRootRotation() != nil,
			SubnetSize:             c.GetSubnetSize(),
			DataPathPort:           c.GetDataPathPort(),
		},
		JoinTokens: swarm.JoinTokens{
			Worker:  c.GetRootCa().GetJoinTokens().GetWorker(),
			Manager: c.GetRootCa().GetJoinTokens().GetManager(),
		},
	}
	if out.DataPathPort == 0 {
		out.DataPathPort = 4789
	}
	for _, s := range c.GetDefaultAddressPool() {
		if p, ok := parsePrefix(s); ok {
			out.DefaultAddrPool = append(out.DefaultAddrPool, p.Masked())
		}
	}
	return out
}

// Swarm is GET /swarm's answer: Docker's swarm.Swarm with shoal's
// extensions in ClusterInfo. Docker clients ignore the fields they do not
// know.
type Swarm struct {
	ClusterInfo
	JoinTokens swarm.JoinTokens
}

// ClusterInfo is Docker's swarm.ClusterInfo with Spec's extensions and
// DataKeys: when the cluster's data keys were made (the overlay's gossip
// key, from which encrypted networks' keys derive; rotated every
// Spec.EncryptionConfig.DataKeyRotation), newest first. The keys themselves
// are never shown.
type ClusterInfo struct {
	swarm.ClusterInfo
	Spec     Spec
	DataKeys []DataKey
}

// DataKey is one of the cluster's data keys, shown by its creation time.
type DataKey struct {
	CreatedAt time.Time
}

// Spec is Docker's swarm.Spec, as JSON, with shoal's extension fields; the
// EncryptionConfig field hides the embedded one (encoding/json takes the
// shallower), so Split gives the Docker spec with the flag in its place.
type Spec struct {
	swarm.Spec
	EncryptionConfig EncryptionConfig
}

// EncryptionConfig is Docker's with DataKeyRotation, shoal's extension
// (`swarm init/update --data-key-rotation`): how often the managers make a
// new cluster data key. Zero in a request keeps the current value.
type EncryptionConfig struct {
	swarm.EncryptionConfig
	DataKeyRotation time.Duration
}

// SpecExtensions are the settings of a swarm spec that Docker's has no
// field for.
type SpecExtensions struct {
	// DataKeyRotation is EncryptionConfig.DataKeyRotation; 0 keeps the
	// current one (the default at init).
	DataKeyRotation time.Duration
}

// Split is s as Docker's spec and shoal's extensions.
func (s Spec) Split() (swarm.Spec, SpecExtensions) {
	d := s.Spec
	d.EncryptionConfig = s.EncryptionConfig.EncryptionConfig
	return d, SpecExtensions{DataKeyRotation: s.EncryptionConfig.DataKeyRotation}
}

// InitRequest is POST /swarm/init's body: Docker's with Spec's extensions.
type InitRequest struct {
	swarm.InitRequest
	Spec Spec
}

// ClusterToSwarmExtended is ClusterToSwarm with shoal's extensions, for GET
// /swarm.
func ClusterToSwarmExtended(c *api.Cluster) Swarm {
	sw := ClusterToSwarm(c)
	out := Swarm{
		ClusterInfo: ClusterInfo{
			ClusterInfo: sw.ClusterInfo,
			Spec: Spec{Spec: sw.Spec, EncryptionConfig: EncryptionConfig{
				EncryptionConfig: sw.Spec.EncryptionConfig,
				DataKeyRotation:  controlapi.DataKeyRotation(c.GetSpec()),
			}},
			DataKeys: []DataKey{},
		},
		JoinTokens: sw.JoinTokens,
	}
	for _, k := range c.GetGossipKeys() {
		out.DataKeys = append(out.DataKeys, DataKey{CreatedAt: k.GetCreatedAt().AsTime()})
	}
	return out
}

// ClusterSpecFromSwarm is MergeClusterSpec onto an empty spec (swarm init:
// the manager fills in its defaults for what is left unset).
func ClusterSpecFromSwarm(s swarm.Spec, ext SpecExtensions) (*api.ClusterSpec, error) {
	return MergeClusterSpec(nil, s, ext)
}

// MergeClusterSpec applies a swarm.Spec (of POST /swarm/init or
// /swarm/update) onto a copy of base, as dockerd merges: a zero or nil field
// keeps base's value, so a spec that sets only TaskHistoryRetentionLimit
// changes only that; EncryptionConfig.AutoLockManagers is taken as given,
// as dockerd does (clients send the whole spec, and false turns autolock
// off). Settings shoal does not have (external or custom CAs, raft ticks,
// task defaults) are refused when set. ext's zero fields keep base's too; the
// manager checks their values.
func MergeClusterSpec(base *api.ClusterSpec, s swarm.Spec, ext SpecExtensions) (*api.ClusterSpec, error) {
	switch {
	case len(s.CAConfig.ExternalCAs) > 0:
		return nil, notSupported("external CAs are not supported")
	case s.CAConfig.SigningCACert != "" || s.CAConfig.SigningCAKey != "":
		return nil, notSupported("custom signing CAs are not supported")
	case s.Raft.ElectionTick != 0 || s.Raft.HeartbeatTick != 0:
		return nil, notSupported("raft election and heartbeat ticks are not supported")
	case s.Raft.LogEntriesForSlowFollowers != 0:
		return nil, notSupported("raft log entries for slow followers are not supported")
	case !isZero(s.TaskDefaults.LogDriver):
		return nil, notSupported("log drivers are not supported")
	}
	out := &api.ClusterSpec{}
	if base != nil {
		out = proto.Clone(base).(*api.ClusterSpec)
	}
	if out.Annotations == nil {
		out.Annotations = &api.Annotations{}
	}
	if s.Name != "" {
		out.Annotations.Name = s.Name
	}
	if len(s.Labels) > 0 {
		out.Annotations.Labels = copyMap(s.Labels)
	}
	if l := s.Orchestration.TaskHistoryRetentionLimit; l != nil {
		out.TaskHistoryRetentionLimit = *l
	}
	if s.Raft.SnapshotInterval != 0 {
		out.SnapshotInterval = s.Raft.SnapshotInterval
	}
	if k := s.Raft.KeepOldSnapshots; k != nil {
		out.KeepOldSnapshots = *k
	}
	if d := s.Dispatcher.HeartbeatPeriod; d != 0 {
		out.HeartbeatPeriod = nonZeroDurationToAPI(d)
	}
	if d := s.CAConfig.NodeCertExpiry; d != 0 {
		out.NodeCertExpiry = nonZeroDurationToAPI(d)
	}
	if r := s.CAConfig.ForceRotate; r != 0 {
		out.CaForceRotate = r
	}
	out.AutolockManagers = s.EncryptionConfig.AutoLockManagers
	if d := ext.DataKeyRotation; d != 0 {
		out.DataKeyRotation = durationpb.New(d)
	}
	return out, nil
}

// rootTLSInfo is the cluster's TLSInfo as dockerd gives it: the root
// certificate, its subject and its public key.
func rootTLSInfo(rootPEM []byte) swarm.TLSInfo {
	info := swarm.TLSInfo{TrustRoot: string(rootPEM)}
	if certs := parsePEMCerts(rootPEM); len(certs) > 0 {
		info.CertIssuerSubject = certs[0].RawSubject
		info.CertIssuerPublicKey = certs[0].RawSubjectPublicKeyInfo
	}
	return info
}
