package leader

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// countingStore counts the transactions written through it.
type countingStore struct {
	*raftstore.MemoryStore
	updates int
}

func (c *countingStore) Update(ctx context.Context, fn func(raftstore.WriteTx) error) error {
	c.updates++
	return c.MemoryStore.Update(ctx, fn)
}

// TestWriteSplitsLargeResults: creating tasks whose total size is several
// times MaxProposalBytes takes several transactions, each under the limit,
// and every task arrives.
func TestWriteSplitsLargeResults(t *testing.T) {
	s := &countingStore{MemoryStore: raftstore.NewMemoryStore(nil, nil)}
	big := strings.Repeat("x", 64<<10)
	const n = 200 // 200 x 64 KiB = 12.5 MiB, about 3 x MaxProposalBytes
	var ops []op
	for range n {
		ops = append(ops, op{create: &api.Task{
			Id:           raftstore.NewID(),
			ServiceId:    "svc",
			DesiredState: api.TaskState_RUNNING,
			Spec:         &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox", Env: []string{big}}},
			Status:       &api.TaskStatus{State: api.TaskState_NEW},
		}})
	}
	if err := write(context.Background(), s, ops); err != nil {
		t.Fatalf("write: %v", err)
	}
	if s.updates < 4 {
		t.Errorf("%d transactions for 12.5 MiB; want chunks under %d bytes", s.updates, chunkBytes)
	}
	var got int
	s.View(func(tx raftstore.ReadTx) { got = len(tx.TasksOfService("svc")) })
	if got != n {
		t.Errorf("%d tasks stored, want %d", got, n)
	}
}

// TestWriteStopsOnConflict: a stale update fails its chunk with ErrConflict
// and nothing after it is written.
func TestWriteStopsOnConflict(t *testing.T) {
	s := raftstore.NewMemoryStore(nil, nil)
	task := &api.Task{Id: "t1", ServiceId: "svc", Status: &api.TaskStatus{State: api.TaskState_NEW}}
	if err := s.Update(context.Background(), func(tx raftstore.WriteTx) error { return tx.Create(task) }); err != nil {
		t.Fatal(err)
	}
	var stale *api.Task
	s.View(func(tx raftstore.ReadTx) { stale = tx.GetTask("t1") })
	if err := s.Update(context.Background(), func(tx raftstore.WriteTx) error {
		cur := tx.GetTask("t1")
		cur.DesiredState = api.TaskState_RUNNING
		return tx.Update(cur)
	}); err != nil {
		t.Fatal(err)
	}
	stale.DesiredState = api.TaskState_SHUTDOWN
	err := write(context.Background(), s, []op{{update: stale}})
	if err == nil || !isConflict(err) {
		t.Fatalf("want a conflict, got %v", err)
	}
}

// TestWriteConflictCostsOnlyItsObject: one stale update among many fresh
// creates is set aside; the others are written in the same pass and write
// reports the conflict so the loop decides again. Before this fix the whole
// chunk was refused and none of the 50 creates was written.
func TestWriteConflictCostsOnlyItsObject(t *testing.T) {
	s := raftstore.NewMemoryStore(nil, nil)
	ctx := context.Background()
	if err := s.Update(ctx, func(tx raftstore.WriteTx) error {
		return tx.Create(&api.Task{Id: "busy", ServiceId: "svc", Status: &api.TaskStatus{State: api.TaskState_NEW}})
	}); err != nil {
		t.Fatal(err)
	}
	var stale *api.Task
	s.View(func(tx raftstore.ReadTx) { stale = tx.GetTask("busy") })
	if err := s.Update(ctx, func(tx raftstore.WriteTx) error {
		cur := tx.GetTask("busy")
		cur.DesiredState = api.TaskState_RUNNING
		return tx.Update(cur)
	}); err != nil {
		t.Fatal(err)
	}
	stale.DesiredState = api.TaskState_SHUTDOWN
	var ops []op
	for i := range 50 {
		ops = append(ops, op{create: &api.Task{Id: fmt.Sprintf("new-%02d", i), ServiceId: "svc", Status: &api.TaskStatus{State: api.TaskState_NEW}}})
		if i == 25 {
			ops = append(ops, op{update: stale})
		}
	}
	err := write(ctx, s, ops)
	if err == nil || !isConflict(err) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("want the conflict on busy reported, got %v", err)
	}
	s.View(func(tx raftstore.ReadTx) {
		if n := len(tx.TasksOfService("svc")); n != 51 {
			t.Errorf("%d tasks stored, want 51 (the 50 creates and busy)", n)
		}
		if d := tx.GetTask("busy").GetDesiredState(); d != api.TaskState_RUNNING {
			t.Errorf("the stale write went through: busy desired %v", d)
		}
	})
}
