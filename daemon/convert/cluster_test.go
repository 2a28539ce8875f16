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
		},
		RootCa: &api.RootCA{
			CaCert:       []byte("-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n"),
			CaKey:        []byte("-----BEGIN EC PRIVATE KEY-----\nSECRETKEY\n-----END EC PRIVATE KEY-----\n"),
			CaCertDigest: "digest",
			JoinTokens:   &api.JoinTokens{Worker: "SWMTKN-1-d-w", Manager: "SWMTKN-1-d-m"},
		},
		DefaultAddressPool: []string{"10.0.0.0/8", "bad"},
		SubnetSize:         24,
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

// `swarm update` sends the spec it read back: nothing may change.
func TestClusterSpecRoundTrip(t *testing.T) {
	c := testCluster()
	got, err := MergeClusterSpec(c.GetSpec(), ClusterToSwarm(c).Spec)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, c.GetSpec()) {
		t.Errorf("round trip changed the spec:\n got %v\nwant %v", got, c.GetSpec())
	}
	fresh, err := ClusterSpecFromSwarm(ClusterToSwarm(c).Spec)
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
	got, err := MergeClusterSpec(base, swarm.Spec{Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: ptr(int64(0))}})
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
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetAnnotations().GetName() != "default" || got.GetAnnotations().GetLabels()["env"] != "test" ||
		got.GetSnapshotInterval() != 500 || got.GetKeepOldSnapshots() != 2 ||
		got.GetHeartbeatPeriod().AsDuration() != time.Second || got.GetNodeCertExpiry().AsDuration() != time.Hour ||
		got.GetTaskHistoryRetentionLimit() != 5 || got.GetCaForceRotate() != 3 {
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
		_, err := ClusterSpecFromSwarm(tc.spec)
		if err == nil || err.Error() != tc.msg || !errors.Is(err, ErrUnsupported) || !errors.Is(err, api.ErrInvalidArgument) {
			t.Errorf("%+v: error %v, want %q", tc.spec, err, tc.msg)
		}
	}
}
