package containers

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// freezer is the cgroup ability commit uses to stop a container's
// processes while it reads their upper layer (both cgroup versions have it).
type freezer interface {
	Freeze(ctx context.Context) error
	Thaw() error
}

// freezeTimeout bounds the wait for a container to freeze: a task stuck in
// an uninterruptible sleep can hold the freezer in FREEZING for ever, and a
// commit should rather fail and say so (--pause=false is the way out).
const freezeTimeout = 10 * time.Second

// pauses counts, per container, the commits that hold it frozen, so that
// two at once thaw it only when the last one ends.
type pauses struct {
	mu sync.Mutex // guards n and user
	n  map[string]int
	// user holds the release of each container paused by `pause`, a
	// holder like a commit: a commit of a paused container leaves it paused.
	user map[string]func() error
}

// pause freezes the running container id for the caller and returns the
// function that releases it; the container is thawed when the last holder
// releases, also when the caller failed.
func (e *Engine) pause(ctx context.Context, id string) (release func() error, err error) {
	cg, err := e.rt.Cgroup(id)
	if err != nil {
		return nil, fmt.Errorf("pause %s: %w", id[:12], err)
	}
	fz, ok := cg.(freezer)
	if !ok {
		return nil, fmt.Errorf("%w: pause %s: this host's cgroups cannot freeze a container; commit with --pause=false", ErrConflict, id[:12])
	}
	p := &e.frozen
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		p.n = map[string]int{}
	}
	if p.n[id] == 0 {
		// Frozen under the lock: a second commit waits for the first freeze.
		fctx, cancel := context.WithTimeout(ctx, freezeTimeout)
		err := fz.Freeze(fctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("pause %s: %w", id[:12], err)
		}
	}
	p.n[id]++
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.n[id]--; p.n[id] > 0 {
				return
			}
			delete(p.n, id)
			if terr := fz.Thaw(); terr != nil {
				err = fmt.Errorf("unpause %s: %w", id[:12], terr)
			}
		})
		return err
	}, nil
}
