package daemon

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestCertRenewalLoop runs the daemon's renewal loop against a real
// in-process manager whose certificates last 4 seconds: over 12 seconds
// the worker renews on its own schedule several times, each certificate is
// on disk (node.pem) as the node uses it, and calls on new connections
// keep working although every certificate the node had at the start has
// expired.
func TestCertRenewalLoop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	f, err := manager.Found(addr, nil, api.NodeSpec_ACTIVE, time.Now())
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	msec, err := ca.NewSecurity(f.Root, f.Cert, f.Key)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	m, err := manager.New(manager.Config{
		NodeID: f.Node.GetId(), Dir: t.TempDir(), Listener: ln, AdvertiseAddr: addr, Security: msec, Bootstrap: true,
		Dial: func(a string) (*grpc.ClientConn, error) { return manager.Dial(a, manager.SecurityClientTLS(msec)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	defer func() { stop(); <-done }()
	if err := m.Bootstrap(ctx, f.Cluster, f.Node); err != nil {
		t.Fatal(err)
	}
	const life = 4 * time.Second
	// Below UpdateCluster's 1-hour minimum: straight into the store, again
	// after losing a race with the leader's own first write of the cluster
	// object (its gossip key).
	for try := 0; ; try++ {
		err := m.Store().Update(ctx, func(tx raftstore.WriteTx) error {
			c := tx.Clusters()[0]
			c.Spec.NodeCertExpiry = durationpb.New(life)
			return tx.Update(c)
		})
		if err == nil {
			break
		}
		if !errors.Is(err, api.ErrConflict) || try == 9 {
			t.Fatal(err)
		}
	}
	res, err := manager.Join(ctx, addr, f.Cluster.GetRootCa().GetJoinTokens().GetWorker(), "127.0.0.1:4789", api.NodeSpec_ACTIVE)
	if err != nil {
		t.Fatal(err)
	}
	id, err := newIdentity(res.Root, res.Cert, res.Key)
	if err != nil {
		t.Fatal(err)
	}
	first := id.sec.Leaf()
	files := swarmFiles{dir: filepath.Join(t.TempDir(), "swarm")}
	if err := files.saveIdentity(id, nil); err != nil {
		t.Fatal(err)
	}
	r := newCertRenewal(files, func() []byte { return nil })
	rctx, rstop := context.WithCancel(ctx)
	rdone := make(chan struct{})
	go func() { defer close(rdone); r.run(rctx, id, []string{addr}, "127.0.0.1:4789") }()
	defer func() { rstop(); <-rdone }()

	serials := map[string]bool{}
	for end := time.Now().Add(3 * life); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		conn, err := id.dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := api.NewDispatcherClient(conn).Session(sctx, &api.SessionRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		scancel()
		conn.Close()
		if err != nil {
			t.Fatalf("call with the node's certificate (expiring %s) failed: %v", id.sec.Leaf().NotAfter, api.FromGRPC(err))
		}
		serials[id.sec.Leaf().SerialNumber.String()] = true
	}
	if time.Now().Before(first.NotAfter) {
		t.Fatal("the first certificate has not expired yet")
	}
	if len(serials) < 4 {
		t.Fatalf("%d certificates in %s of %s certificates, want renewals at about two thirds of each life", len(serials), 3*life, life)
	}
	// What is on disk is what the node uses (a restart picks it up).
	rstop()
	<-rdone
	back, err := files.loadIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	if back.sec.Leaf().SerialNumber.Cmp(id.sec.Leaf().SerialNumber) != 0 {
		t.Fatal("node.pem holds another certificate than the one in use")
	}
}
