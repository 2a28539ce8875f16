package worker

import (
	"context"
	"runtime"

	"github.com/shoal-project/shoal/api"
)

// DefaultMaxConcurrentStarts bounds the container creates and starts a node
// runs at once: a scale-up assigns hundreds of tasks to a node in one
// message, and starting all of them together only makes every start slower
// and starves the agent's heartbeats (a node that misses them is marked
// down and its tasks are moved: churn instead of progress).
var DefaultMaxConcurrentStarts = 2 * runtime.NumCPU()

// startLimiter is a Runtime whose Create and Start wait for one of a fixed
// number of slots; the other calls pass through.
type startLimiter struct {
	Runtime
	slots chan struct{}
}

func limitStarts(rt Runtime, n int) Runtime {
	if n <= 0 {
		n = DefaultMaxConcurrentStarts
	}
	return &startLimiter{Runtime: rt, slots: make(chan struct{}, n)}
}

func (l *startLimiter) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *startLimiter) Create(ctx context.Context, t *api.Task) (ContainerState, error) {
	if err := l.acquire(ctx); err != nil {
		return ContainerState{}, err
	}
	defer func() { <-l.slots }()
	return l.Runtime.Create(ctx, t)
}

func (l *startLimiter) Start(ctx context.Context, id string) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer func() { <-l.slots }()
	return l.Runtime.Start(ctx, id)
}

// WaitHealth passes HealthWaiter through (embedding hides it); a runtime
// without it reports no health, so its Wait is the same wait.
func (l *startLimiter) WaitHealth(ctx context.Context, id, health string) (ContainerState, error) {
	if hw, ok := l.Runtime.(HealthWaiter); ok {
		return hw.WaitHealth(ctx, id, health)
	}
	return l.Runtime.Wait(ctx, id)
}
