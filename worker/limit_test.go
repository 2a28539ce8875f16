package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-project/shoal/api"
)

// slowRuntime counts Creates and Starts in flight.
type slowRuntime struct {
	Runtime
	now, peak atomic.Int32
}

func (s *slowRuntime) track() {
	n := s.now.Add(1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	time.Sleep(5 * time.Millisecond)
	s.now.Add(-1)
}

func (s *slowRuntime) Create(context.Context, *api.Task) (ContainerState, error) {
	s.track()
	return ContainerState{}, nil
}

func (s *slowRuntime) Start(context.Context, string) error { s.track(); return nil }

func TestStartsAreBounded(t *testing.T) {
	slow := &slowRuntime{}
	rt := limitStarts(slow, 3)
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, _ = rt.Create(context.Background(), &api.Task{})
			} else {
				_ = rt.Start(context.Background(), "c")
			}
		}()
	}
	wg.Wait()
	if p := slow.peak.Load(); p > 3 || p < 2 {
		t.Fatalf("peak in flight %d, want 3 (at most, and more than one)", p)
	}
	// A caller that gives up while waiting for a slot gets its context's error.
	full := limitStarts(slow, 1).(*startLimiter)
	full.slots <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := full.Start(ctx, "c"); err != context.DeadlineExceeded {
		t.Fatalf("blocked start: %v", err)
	}
}

// healthRuntime reports one health change.
type healthRuntime struct{ Runtime }

func (healthRuntime) WaitHealth(_ context.Context, id, _ string) (ContainerState, error) {
	return ContainerState{ID: id, Status: StatusRunning, Health: HealthHealthy}, nil
}

// The limiter wraps the node's runtime: it must not hide its health (a task
// would stay STARTING for ever).
func TestLimiterPassesHealthThrough(t *testing.T) {
	hw, ok := limitStarts(healthRuntime{}, 1).(HealthWaiter)
	if !ok {
		t.Fatal("the limited runtime is no HealthWaiter")
	}
	if st, err := hw.WaitHealth(context.Background(), "c", HealthStarting); err != nil || st.Health != HealthHealthy {
		t.Fatalf("WaitHealth through the limiter: %+v %v", st, err)
	}
}
