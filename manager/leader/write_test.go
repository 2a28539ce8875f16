package leader

import (
	"context"
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
