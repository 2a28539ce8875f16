package raftstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/shoal-project/shoal/api"
)

// TestWatchTasksOnNode: a node's watch gets the events of its tasks (moved
// in, moved away, removed) and nothing of other nodes, keeps entry order,
// and ends with ErrWatchOverflow or ErrWatchRestored as any watch does.
func TestWatchTasksOnNode(t *testing.T) {
	s := NewMemoryStore(nil, nil)
	ctx := context.Background()
	mustUpdate := func(fn func(WriteTx) error) {
		t.Helper()
		if err := s.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	mustUpdate(func(tx WriteTx) error { return tx.Create(task("t0", "s1", "n1", api.TaskState_RUNNING, 0)) })
	var seen []*api.Task
	n1 := s.ViewAndWatchTasksOnNode(16, func(tx ReadTx) { seen = tx.TasksOnNode("n1") }, "n1")
	defer n1.Close()
	n2 := s.ViewAndWatchTasksOnNode(16, func(ReadTx) {}, "n2")
	defer n2.Close()
	all := s.Watch(KindTask)
	defer all.Close()
	if len(seen) != 1 {
		t.Fatalf("view saw %d tasks on n1", len(seen))
	}
	// One entry touching three nodes: n1's watcher gets only t1, in order.
	mustUpdate(func(tx WriteTx) error {
		for _, x := range []*api.Task{task("t1", "s1", "n1", api.TaskState_ASSIGNED, 0), task("t2", "s1", "n2", api.TaskState_ASSIGNED, 0), task("t3", "s1", "n3", api.TaskState_ASSIGNED, 0)} {
			if err := tx.Create(x); err != nil {
				return err
			}
		}
		return nil
	})
	ids := func(b Batch) (out []string) {
		for _, e := range b.Events {
			if e.Object != nil {
				out = append(out, e.Object.GetId())
			} else {
				out = append(out, "-"+e.Old.GetId())
			}
		}
		return out
	}
	if got := ids(<-n1.C()); fmt.Sprint(got) != "[t1]" {
		t.Fatalf("n1 got %v", got)
	}
	if got := ids(<-n2.C()); fmt.Sprint(got) != "[t2]" {
		t.Fatalf("n2 got %v", got)
	}
	if got := ids(<-all.C()); fmt.Sprint(got) != "[t1 t2 t3]" {
		t.Fatalf("unfiltered got %v", got)
	}
	// Move t1 from n1 to n2: both see it; then remove it: n2 sees it.
	mustUpdate(func(tx WriteTx) error {
		x := tx.GetTask("t1")
		x.NodeId = "n2"
		return tx.Update(x)
	})
	mustUpdate(func(tx WriteTx) error { return tx.Delete(KindTask, "t1") })
	// A service change is no task event: node watchers get nothing.
	mustUpdate(func(tx WriteTx) error { return tx.Create(svc("s1", "web", 0)) })
	b := <-n1.C()
	if got := ids(b); fmt.Sprint(got) != "[t1]" || b.Events[0].Object.(*api.Task).GetNodeId() != "n2" {
		t.Fatalf("n1 after the move got %v", got)
	}
	if got := fmt.Sprint(ids(<-n2.C()), ids(<-n2.C())); got != "[t1] [-t1]" {
		t.Fatalf("n2 after move and remove got %v", got)
	}
	if len(n1.C()) != 0 || len(n2.C()) != 0 {
		t.Fatalf("node watchers got more: %d, %d", len(n1.C()), len(n2.C()))
	}

	// Overflow: a reader that does not read loses its watch, the others not.
	small := s.ViewAndWatchTasksOnNode(1, func(ReadTx) {}, "n3")
	for i := range 3 {
		mustUpdate(func(tx WriteTx) error {
			return tx.Create(task(fmt.Sprintf("o%d", i), "s1", "n3", api.TaskState_ASSIGNED, 0))
		})
	}
	for range small.C() {
	}
	if !errors.Is(small.Err(), ErrWatchOverflow) {
		t.Fatalf("overflowed node watch: %v", small.Err())
	}
	small.Close()

	// Restore ends node watches with ErrWatchRestored.
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for range n1.C() {
	}
	if !errors.Is(n1.Err(), ErrWatchRestored) {
		t.Fatalf("node watch after restore: %v", n1.Err())
	}
	s.wmu.Lock()
	left := len(s.watch.all) + len(s.watch.byNode)
	s.wmu.Unlock()
	if left != 0 {
		t.Fatalf("%d watch registrations left after restore", left)
	}
}

// BenchmarkPublishTaskEvent1000Nodes: one task update with 1,000 node
// watches registered (one per node's Assignments stream). With the watches
// indexed by node it costs the same as with one; before, every update
// checked every node's watcher under the store's write lock.
func BenchmarkPublishTaskEvent1000Nodes(b *testing.B) {
	s := NewMemoryStore(nil, nil)
	ctx := context.Background()
	var mine *Watcher
	for n := range 1000 {
		w := s.ViewAndWatchTasksOnNode(DefaultWatchBuffer, func(ReadTx) {}, fmt.Sprintf("n%d", n))
		b.Cleanup(w.Close)
		if n == 1 {
			mine = w
		}
	}
	if err := s.Update(ctx, func(tx WriteTx) error { return tx.Create(task("t", "s", "n1", api.TaskState_ASSIGNED, 0)) }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		err := s.Update(ctx, func(tx WriteTx) error {
			x := tx.GetTask("t")
			x.Status.Message = "x"
			return tx.Update(x)
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := <-mine.C(); !ok {
			b.Fatal(mine.Err())
		}
	}
}
