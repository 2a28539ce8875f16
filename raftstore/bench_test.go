package raftstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/shoal-project/shoal/api"
)

// BenchmarkListTasks100k: the cost of a full read of 100,000 tasks (each
// cloned for the caller), for sizing how often a loop may re-read instead of
// following a watch.
func BenchmarkListTasks100k(b *testing.B) {
	s := NewMemoryStore(nil, nil)
	for chunk := range 100 {
		err := s.Update(context.Background(), func(tx WriteTx) error {
			for i := range 1000 {
				t := task(fmt.Sprintf("t%03d-%04d", chunk, i), fmt.Sprintf("s%d", i%100), "n1", api.TaskState_RUNNING, 0)
				t.Spec = &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox", Command: []string{"sleep", "1000"}}}
				if err := tx.Create(t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		s.View(func(tx ReadTx) {
			if len(tx.Tasks()) != 100000 {
				b.Fatal("wrong count")
			}
		})
	}
}

// BenchmarkForEachTasks100k: the same scan without copies.
func BenchmarkForEachTasks100k(b *testing.B) {
	s := NewMemoryStore(nil, nil)
	for chunk := range 10 {
		err := s.Update(context.Background(), func(tx WriteTx) error {
			for i := range 10000 {
				if err := tx.Create(task(fmt.Sprintf("t%d-%05d", chunk, i), "s", "n1", api.TaskState_RUNNING, 0)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		n := 0
		s.View(func(tx ReadTx) {
			tx.ForEach(KindTask, func(Object) bool { n++; return true })
		})
		if n != 100000 {
			b.Fatal(n)
		}
	}
}
