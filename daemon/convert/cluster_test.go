package convert

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testCluster() *api.Cluster {
	return &api.Cluster{
		Id:   "clu1",
		Meta: &api.Meta{Version: 12},
		Spec: &api.ClusterSpec{
			Annotations:               &api.Annotations{Name: "default"},
			TaskHistoryRetentionLimit: 5,
			HeartbeatPeriod:           durationpb.New(5 * time.Second),
			NodeCertExpiry:            durationpb.New(90 * 24 * time.Hour),
			SnapshotInterval:          10000,
			KeepOldSnapshots:          0,
			DataKeyRotation:           durationpb.New(90 * time.Second),
		},
		RootCa: &api.RootCA{
			CaCert:       []byte("-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n"),
			CaKey:        []byte("-----BEGIN EC PRIVATE KEY-----\nSECRETKEY\n-----END EC PRIVATE KEY-----\n"),
			CaCertDigest: "digest",
			JoinTokens:   &api.JoinTokens{Worker: "SWMTKN-1-d-w", Manager: "SWMTKN-1-d-m"},
		},
		DefaultAddressPool: []string{"10.0.0.0/8", "bad"},
		SubnetSize:         24,
		GossipKeys: []*api.GossipKey{
			{Key: []byte("GOSSIPKEY2-GOSSIPKEY2-GOSSIPKEY2"), CreatedAt: timestamppb.New(time.Unix(1700000090, 0))},
			{Key: []byte("GOSSIPKEY1-GOSSIPKEY1-GOSSIPKEY1"), CreatedAt: timestamppb.New(time.Unix(1700000000, 0))},
		},
	}
}

func TestClusterToSwarm(t *testing.T) {
	got := ClusterToSwarm(testCluster())
	checks := []struct {
		what      string
		got, want any
	}{
		{"id", got.ID, "clu1"},
		{"version", got.Version.Index, uint64(12)},
		{"name", got.Spec.Name, "default"},
		{"history limit", *got.Spec.Orchestration.TaskHistoryRetentionLimit, int64(5)},
		{"snapshot interval", got.Spec.Raft.SnapshotInterval, uint64(10000)},
		{"keep old snapshots", *got.Spec.Raft.KeepOldSnapshots, uint64(0)},
		{"heartbeat", got.Spec.Dispatcher.HeartbeatPeriod, 5 * time.Second},
		{"cert expiry", got.Spec.CAConfig.NodeCertExpiry, 90 * 24 * time.Hour},
		{"trust root", strings.Contains(got.TLSInfo.TrustRoot, "CERT"), true},
		{"pools", len(got.DefaultAddrPool), 1},
		{"pool", got.DefaultAddrPool[0].String(), "10.0.0.0/8"},
		{"subnet size", got.SubnetSize, uint32(24)},
		{"worker token", got.JoinTokens.Worker, "SWMTKN-1-d-w"},
		{"manager token", got.JoinTokens.Manager, "SWMTKN-1-d-m"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "SECRETKEY") || strings.Contains(string(b), "PRIVATE") {
		t.Errorf("the CA key leaked into GET /swarm: %s", b)
	}
}

// GET /swarm's extensions: the data key rotation under
// Spec.EncryptionConfig, next to Docker's AutoLockManagers, and the data
// keys' creation times, never the keys; a Docker client's types read the
// rest as before.
func TestClusterToSwarmExtended(t *testing.T) {
	c := testCluster()
	c.Spec.AutolockManagers = true
	b, err := json.Marshal(ClusterToSwarmExtended(c))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"EncryptionConfig":{"AutoLockManagers":true,"DataKeyRotation":90000000000}`,
		`"DataKeys":[{"CreatedAt":"2023-11-14T22:14:50Z"},{"CreatedAt":"2023-11-14T22:13:20Z"}]`, `"ID":"clu1"`, `"Worker":"SWMTKN-1-d-w"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("GET /swarm lacks %s: %s", want, b)
		}
	}
	if strings.Contains(string(b), "GOSSIPKEY") || strings.Count(string(b), `"EncryptionConfig"`) != 1 {
		t.Errorf("GET /swarm shows a data key or two EncryptionConfigs: %s", b)
	}
	var docker swarm.Swarm
	if err := json.Unmarshal(b, &docker); err != nil || docker.ID != "clu1" || !docker.Spec.EncryptionConfig.AutoLockManagers ||
		docker.Spec.Dispatcher.HeartbeatPeriod != 5*time.Second || docker.JoinTokens.Manager != "SWMTKN-1-d-m" {
		t.Errorf("Docker's types read %+v, %v", docker, err)
	}
	// A cluster made before the setting shows the default.
	c.Spec.DataKeyRotation = nil
	if got := ClusterToSwarmExtended(c).Spec.EncryptionConfig.DataKeyRotation; got != 6*time.Hour {
		t.Errorf("no stored rotation shows %s, want 6h", got)
	}
}

// `swarm update` sends the spec it read back (GET /swarm's JSON, with the
// extension fields): nothing may change.
func TestClusterSpecRoundTrip(t *testing.T) {
	c := testCluster()
	b, err := json.Marshal(ClusterToSwarmExtended(c).Spec)
	if err != nil {
		t.Fatal(err)
	}
	var sent Spec
	if err := json.Unmarshal(b, &sent); err != nil {
		t.Fatal(err)
	}
	docker, ext := sent.Split()
	if ext.DataKeyRotation != 90*time.Second {
		t.Errorf("the spec read back carries rotation %s, want 1m30s", ext.DataKeyRotation)
	}
	got, err := MergeClusterSpec(c.GetSpec(), docker, ext)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, c.GetSpec()) {
		t.Errorf("round trip changed the spec:\n got %v\nwant %v", got, c.GetSpec())
	}
	fresh, err := ClusterSpecFromSwarm(docker, ext)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(fresh, c.GetSpec()) {
		t.Errorf("from scratch:\n got %v\nwant %v", fresh, c.GetSpec())
	}
}

func TestMergeClusterSpec(t *testing.T) {
	base := testCluster().GetSpec()
	// swarm init --task-history-limit 0: only the limit is set.
	got, err := MergeClusterSpec(base, swarm.Spec{Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: ptr(int64(0))}}, SpecExtensions{})
	if err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(base).(*api.ClusterSpec)
	want.TaskHistoryRetentionLimit = 0
	if !proto.Equal(got, want) {
		t.Errorf("limit only:\n got %v\nwant %v", got, want)
	}
	if base.GetTaskHistoryRetentionLimit() != 5 {
		t.Error("MergeClusterSpec changed its base")
	}
	got, err = MergeClusterSpec(base, swarm.Spec{
		Annotations: swarm.Annotations{Labels: map[string]string{"env": "test"}},
		Raft:        swarm.RaftConfig{SnapshotInterval: 500, KeepOldSnapshots: ptr(uint64(2))},
		Dispatcher:  swarm.DispatcherConfig{HeartbeatPeriod: time.Second},
		CAConfig:    swarm.CAConfig{NodeCertExpiry: time.Hour, ForceRotate: 3},
	}, SpecExtensions{DataKeyRotation: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetAnnotations().GetName() != "default" || got.GetAnnotations().GetLabels()["env"] != "test" ||
		got.GetSnapshotInterval() != 500 || got.GetKeepOldSnapshots() != 2 ||
		got.GetHeartbeatPeriod().AsDuration() != time.Second || got.GetNodeCertExpiry().AsDuration() != time.Hour ||
		got.GetTaskHistoryRetentionLimit() != 5 || got.GetCaForceRotate() != 3 || got.GetDataKeyRotation().AsDuration() != 2*time.Minute {
		t.Errorf("merge: %v", got)
	}
	refused := []struct {
		spec swarm.Spec
		msg  string
	}{
		{swarm.Spec{CAConfig: swarm.CAConfig{ExternalCAs: []*swarm.ExternalCA{{URL: "https://ca"}}}}, "external CAs are not supported"},
		{swarm.Spec{CAConfig: swarm.CAConfig{SigningCACert: "pem"}}, "custom signing CAs are not supported"},
		{swarm.Spec{Raft: swarm.RaftConfig{ElectionTick: 10}}, "raft election and heartbeat ticks are not supported"},
		{swarm.Spec{Raft: swarm.RaftConfig{LogEntriesForSlowFollowers: 500}}, "raft log entries for slow followers are not supported"},
		{swarm.Spec{TaskDefaults: swarm.TaskDefaults{LogDriver: &swarm.Driver{Name: "syslog"}}}, "log drivers are not supported"},
	}
	for _, tc := range refused {
		_, err := ClusterSpecFromSwarm(tc.spec, SpecExtensions{})
		if err == nil || err.Error() != tc.msg || !errors.Is(err, ErrUnsupported) || !errors.Is(err, api.ErrInvalidArgument) {
			t.Errorf("%+v: error %v, want %q", tc.spec, err, tc.msg)
		}
	}
}
