package controlapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// TestClusterSettingsHonouredOrRefused is `swarm update` with each setting
// shoal stores: the certificate expiry and snapshot interval are stored
// (and applied: manager tests), the heartbeat period and keep-old-snapshots,
// which shoal cannot change, are refused with an error when they would
// change, and a raised ca_force_rotate starts a root rotation.
func TestClusterSettingsHonouredOrRefused(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t)
	root, err := ca.NewRootCA("c1", epoch)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := root.KeyPEM()
	base := &api.ClusterSpec{
		Annotations: &api.Annotations{Name: "default"}, TaskHistoryRetentionLimit: 5,
		HeartbeatPeriod: durationpbOf(1), NodeCertExpiry: durationpbOf(90 * 24 * 3600), KeepOldSnapshots: raftstore.KeepOldSnapshots,
	}
	seed(t, st, &api.Cluster{Id: "c1", Spec: base, RootCa: &api.RootCA{CaCert: root.CertPEM(), CaKey: keyPEM}})
	update := func(edit func(*api.ClusterSpec)) (*api.Cluster, error) {
		got, err := s.GetCluster(ctx, &api.GetClusterRequest{})
		if err != nil {
			t.Fatal(err)
		}
		spec := proto.Clone(got.Cluster.Spec).(*api.ClusterSpec)
		edit(spec)
		up, err := s.updateCluster(ctx, &api.UpdateClusterRequest{ClusterVersion: got.Cluster.Meta.Version, Spec: spec})
		return up.GetCluster(), err
	}
	for _, tt := range []struct {
		what string
		edit func(*api.ClusterSpec)
		text string
	}{
		{"heartbeat 5s", func(s *api.ClusterSpec) { s.HeartbeatPeriod = durationpbOf(5) }, "dispatcher heartbeat period is fixed at 1s in shoal, got 5s"},
		{"keep 3 snapshots", func(s *api.ClusterSpec) { s.KeepOldSnapshots = 3 }, "keep-old-snapshots is fixed at 1"},
		{"keep 0 snapshots", func(s *api.ClusterSpec) { s.KeepOldSnapshots = 0 }, "keep-old-snapshots is fixed at 1"},
		{"cert expiry 30m", func(s *api.ClusterSpec) { s.NodeCertExpiry = durationpbOf(1800) }, "node certificate expiry must be at least 1h0m0s, got 30m0s"},
		{"data key rotation 59s", func(s *api.ClusterSpec) { s.DataKeyRotation = durationpbOf(59) },
			"data key rotation must be between 1m0s and 12h0m0s, got 59s"},
		{"data key rotation 12h1s", func(s *api.ClusterSpec) { s.DataKeyRotation = durationpbOf(12*3600 + 1) },
			"data key rotation must be between 1m0s and 12h0m0s, got 12h0m1s"},
		{"data key rotation 0", func(s *api.ClusterSpec) { s.DataKeyRotation = durationpbOf(0) },
			"data key rotation must be between 1m0s and 12h0m0s, got 0s"},
		{"data key rotation -1m", func(s *api.ClusterSpec) { s.DataKeyRotation = durationpbOf(-60) },
			"data key rotation must not be negative, got -1m0s"},
	} {
		_, err := update(tt.edit)
		wantErr(t, err, api.ErrInvalidArgument, tt.text)
	}
	c, err := update(func(s *api.ClusterSpec) {
		s.HeartbeatPeriod = durationpbOf(1)
		s.KeepOldSnapshots = raftstore.KeepOldSnapshots
		s.NodeCertExpiry = durationpbOf(3600)
		s.SnapshotInterval = 500
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.GetNodeCertExpiry().AsDuration() != time.Hour || c.Spec.GetSnapshotInterval() != 500 {
		t.Fatalf("cert expiry and snapshot interval not stored: %v", c.Spec)
	}
	if c.GetRootCa().GetRootRotation() != nil {
		t.Fatal("a rotation started without ca_force_rotate")
	}
	if got := DataKeyRotation(c.GetSpec()); got != DefaultDataKeyRotation {
		t.Fatalf("data key rotation of a spec without one: %s, want the default %s", got, DefaultDataKeyRotation)
	}
	// The bounds themselves are accepted and stored.
	for _, secs := range []int64{60, 12 * 3600, 90} {
		c, err := update(func(s *api.ClusterSpec) { s.DataKeyRotation = durationpbOf(secs) })
		if err != nil {
			t.Fatalf("data key rotation %ds: %v", secs, err)
		}
		if got, want := DataKeyRotation(c.GetSpec()), time.Duration(secs)*time.Second; got != want {
			t.Fatalf("data key rotation stored %s, want %s", got, want)
		}
	}

	c, err = update(func(s *api.ClusterSpec) { s.CaForceRotate++ })
	if err != nil {
		t.Fatal(err)
	}
	rot := c.GetRootCa().GetRootRotation()
	if rot == nil || len(rot.GetCaKey()) != 0 {
		t.Fatalf("rotation %v (its key must not be handed out)", rot)
	}
	var stored *api.RootRotation
	st.View(func(tx raftstore.ReadTx) { stored = tx.Clusters()[0].GetRootCa().GetRootRotation() })
	next, err := ca.ParseRootCA(stored.GetCaCert(), stored.GetCaKey())
	if err != nil || next.Key == nil || next.Cert.Equal(root.Cert) {
		t.Fatalf("stored rotation has no new signing root: %v", err)
	}
	blk, _ := pem.Decode(stored.GetCrossSignedCaCert())
	cross, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cross.CheckSignatureFrom(root.Cert) != nil || !bytes.Equal(cross.RawSubjectPublicKeyInfo, next.Cert.RawSubjectPublicKeyInfo) {
		t.Fatalf("cross-signed certificate is not the new key signed by the old root: %v", err)
	}
}

// TestRotateUnlockKeyWithoutAutolock: a rotation asked for with autolock
// off in the new spec is no error, as swarmkit's: the cluster is left
// with no unlock key (docker-py's update_swarm(rotate_manager_unlock_key=
// True) sends an empty spec, and the rotation was refused).
func TestRotateUnlockKeyWithoutAutolock(t *testing.T) {
	ctx := context.Background()
	s, st := newTestServer(t)
	base := &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}, HeartbeatPeriod: durationpbOf(1),
		KeepOldSnapshots: raftstore.KeepOldSnapshots, AutolockManagers: true}
	seed(t, st, &api.Cluster{Id: "c1", Spec: base, UnlockKey: []byte("0123456789abcdef0123456789abcdef")})
	got, err := s.GetCluster(ctx, &api.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	spec := proto.Clone(got.Cluster.Spec).(*api.ClusterSpec)
	spec.AutolockManagers = false
	if _, err := s.updateCluster(ctx, &api.UpdateClusterRequest{ClusterVersion: got.Cluster.Meta.Version, Spec: spec, RotateUnlockKey: true}); err != nil {
		t.Fatalf("rotate with autolock turned off: %v", err)
	}
	k, err := s.GetUnlockKey(ctx, &api.GetUnlockKeyRequest{})
	if err != nil || len(k.GetUnlockKey()) != 0 {
		t.Fatalf("unlock key after: %x, %v", k.GetUnlockKey(), err)
	}
}
