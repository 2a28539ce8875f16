package containers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestStartRemoveRace starts (twice) and force-removes the same container
// at once, many times: whatever order the calls take, once they are done
// and the container removed, nothing of it is left (no process, shim,
// cgroup, mount or file), and it never ran twice.
func TestStartRemoveRace(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		c := env.create(Config{Cmd: []string{"sleep", "1000"}})
		var wg sync.WaitGroup
		var startErrs [2]error
		var removeErr error
		wg.Add(3)
		for k := range startErrs {
			go func() { defer wg.Done(); startErrs[k] = env.e.Start(ctx, c.ID) }()
		}
		go func() {
			defer wg.Done()
			// Spread the remove over the start's phases (spec, shim, running).
			time.Sleep(time.Duration(i%8) * 2 * time.Millisecond)
			removeErr = env.e.Remove(ctx, c.ID, true)
		}()
		wg.Wait()
		for _, err := range startErrs {
			if err != nil && !errors.Is(err, ErrNotModified) && !errors.Is(err, ErrNotFound) {
				t.Errorf("round %d: start: %v", i, err)
			}
		}
		if removeErr != nil {
			t.Errorf("round %d: remove: %v", i, removeErr)
		}
		// The remove may have come first: a start then finds nothing.
		if _, err := env.e.Get(c.ID); err == nil {
			t.Errorf("round %d: container still listed after its remove", i)
			_ = env.e.Remove(ctx, c.ID, true)
		}
		if left := env.traces(c.ID); len(left) > 0 {
			t.Fatalf("round %d: left after start and remove raced (starts: %v, %v; remove: %v): %v", i, startErrs[0], startErrs[1], removeErr, left)
		}
	}
}
