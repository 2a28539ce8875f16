package raftstore

import (
	"context"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

// TestPeekNodeFollowsApplyAndRestore: PeekNode sees nodes created, updated
// and removed by applied entries, whether a cluster exists, and the state a
// snapshot restores.
func TestPeekNodeFollowsApplyAndRestore(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore(nil, nil)
	if n, hasCluster := s.PeekNode("n1"); n != nil || hasCluster {
		t.Fatalf("empty store: PeekNode = %v, %v", n, hasCluster)
	}
	if err := s.Update(ctx, func(tx WriteTx) error {
		if err := tx.Create(&api.Cluster{Id: "c"}); err != nil {
			return err
		}
		return tx.Create(&api.Node{Id: "n1", Role: api.NodeRole_WORKER})
	}); err != nil {
		t.Fatal(err)
	}
	if n, hasCluster := s.PeekNode("n1"); n.GetRole() != api.NodeRole_WORKER || !hasCluster {
		t.Fatalf("after create: PeekNode = %v, %v", n, hasCluster)
	}
	if err := s.Update(ctx, func(tx WriteTx) error {
		n := tx.GetNode("n1")
		n.Role = api.NodeRole_MANAGER
		return tx.Update(n)
	}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.PeekNode("n1"); n.GetRole() != api.NodeRole_MANAGER {
		t.Fatalf("after update: role %v", n.GetRole())
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx WriteTx) error { return tx.Delete(KindNode, "n1") }); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.PeekNode("n1"); n != nil {
		t.Fatalf("after delete: PeekNode = %v", n)
	}
	if err := s.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if n, hasCluster := s.PeekNode("n1"); n.GetRole() != api.NodeRole_MANAGER || !hasCluster {
		t.Fatalf("after restore: PeekNode = %v, %v", n, hasCluster)
	}
}

// TestPeekNodeDoesNotQueueBehindApply: with a long read in progress and an
// Apply waiting for the write lock, a new View waits (RWMutex lets a
// pending writer go first) and so did every heartbeat's authorization before
// PeekNode; PeekNode answers at once.
func TestPeekNodeDoesNotQueueBehindApply(t *testing.T) {
	s := NewMemoryStore(nil, nil)
	s.Apply(1, batch(prop(act(C, &api.Node{Id: "n1"}))))
	release := make(chan struct{})
	reading := make(chan struct{})
	go s.View(func(ReadTx) { close(reading); <-release }) // a long scan
	<-reading
	applied := make(chan struct{})
	go func() { s.Apply(2, batch(prop(act(C, &api.Node{Id: "n2"})))); close(applied) }()
	// Wait until the Apply is queued on the lock: a new View then blocks.
	viewed := make(chan struct{})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if !s.mu.TryRLock() {
			break
		}
		s.mu.RUnlock()
		if time.Now().After(deadline) {
			t.Fatal("Apply never queued on the store lock")
		}
		time.Sleep(time.Millisecond)
	}
	go func() { s.View(func(ReadTx) {}); close(viewed) }()
	got := make(chan *api.Node)
	go func() { n, _ := s.PeekNode("n1"); got <- n }()
	select {
	case n := <-got:
		if n.GetId() != "n1" {
			t.Errorf("PeekNode = %v", n)
		}
	case <-time.After(5 * time.Second):
		t.Error("PeekNode waited for the store lock")
	}
	select {
	case <-viewed:
		t.Error("a View did not wait behind the queued Apply: the test shows nothing")
	default:
	}
	close(release)
	<-applied
	<-viewed
	if n, _ := s.PeekNode("n2"); n == nil {
		t.Error("n2 not visible after its Apply")
	}
}
