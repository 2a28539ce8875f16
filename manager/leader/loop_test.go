package leader

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/raftstore"
)

// passRecorder is a loop whose pass only records when it ran.
type passRecorder struct {
	mu     sync.Mutex
	passes []time.Time
}

func (p *passRecorder) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.passes)
}

func runRecorder(t *testing.T, s *raftstore.MemoryStore, debounce, maxDelay time.Duration) *passRecorder {
	t.Helper()
	p := &passRecorder{}
	l := &loop{
		name: "test", store: s, clock: RealClock{}, log: slog.Default(),
		debounce: debounce, maxDelay: maxDelay,
		kinds: []raftstore.Kind{raftstore.KindTask},
		mark:  func(_ raftstore.Event, d *dirty) bool { d.all = true; return true },
		pass: func(context.Context, dirty) (time.Time, error) {
			p.mu.Lock()
			p.passes = append(p.passes, time.Now())
			p.mu.Unlock()
			return time.Time{}, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func writeTask(t *testing.T, s *raftstore.MemoryStore) {
	t.Helper()
	err := s.Update(context.Background(), func(tx raftstore.WriteTx) error {
		return tx.Create(&api.Task{Id: raftstore.NewID(), Status: &api.TaskStatus{}})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLoopCoalescesBursts: a burst of writes closer together than the
// debounce costs one pass, not one per write.
func TestLoopCoalescesBursts(t *testing.T) {
	s := raftstore.NewMemoryStore(nil, nil)
	p := runRecorder(t, s, 100*time.Millisecond, time.Second)
	eventually(t, time.Second, func() (bool, string) { return p.count() == 1, "no first pass" })
	for range 50 {
		writeTask(t, s)
	}
	time.Sleep(250 * time.Millisecond)
	if n := p.count(); n != 2 {
		t.Fatalf("%d passes for the initial read plus one burst of 50 writes, want 2", n)
	}
}

// TestLoopMaxDelay: changes that never pause still get a pass every
// maxDelay, so a busy cluster cannot starve the scheduler.
func TestLoopMaxDelay(t *testing.T) {
	s := raftstore.NewMemoryStore(nil, nil)
	p := runRecorder(t, s, 50*time.Millisecond, 150*time.Millisecond)
	eventually(t, time.Second, func() (bool, string) { return p.count() == 1, "no first pass" })
	end := time.Now().Add(700 * time.Millisecond)
	for time.Now().Before(end) {
		writeTask(t, s)
		time.Sleep(10 * time.Millisecond) // always within the debounce
	}
	// ~700 ms of continuous change at most 150 ms apart: about 4 passes.
	if n := p.count() - 1; n < 3 {
		t.Fatalf("%d passes during 700 ms of continuous changes with max delay 150 ms", n)
	}
}
