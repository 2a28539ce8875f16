// Package leader runs the raft leader's control loops around the pure
// decision functions: the orchestrator loop (orchestrator.ReconcileReplicated
// and ReconcileGlobal per service, ReapHistory, OrphanTasks), the allocator
// loop (allocator.Allocate: VIPs and task addresses) and the scheduler loop
// (scheduler.Schedule). Each loop watches the store, coalesces bursts of
// changes (debounce), reads one snapshot, calls the pure function once and
// writes what it decided in as few store transactions as raftstore's
// MaxProposalBytes allows. The loops hold no decision logic of their own.
//
// Goroutines and what they own:
//   - Run starts one goroutine per loop and returns when its context ends,
//     after all have stopped; the allocator goroutine owns its watcher and
//     debounce timer. The orchestrator goroutine owns its watcher,
//     its debounce and NextEvaluation timers and the per-service evaluation
//     times; the scheduler goroutine owns its watcher and debounce timer.
//     Nothing is shared between them but the store, whose versions settle
//     their races (a write based on a stale read gets api.ErrConflict, and
//     the loop re-reads and decides again).
//
// Writes never happen on a follower: raftstore refuses them with
// api.ErrNotLeader, and the loop only backs off until its context ends. The
// manager (manager.Manager) runs the loops during each term it leads, after
// its store has caught up, and cancels them when the term ends.
package leader

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/shoal-project/shoal/raftstore"
)

// Clock is the time the loops run on: "now" for the decisions and the
// timers for debouncing and Result.NextEvaluation. It has the shape of
// dispatcher.Clock, so one clock value serves both.
type Clock interface {
	Now() time.Time
	// After delivers the time once d has passed (at once if d <= 0).
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Store is what the loops need of raftstore.MemoryStore.
type Store interface {
	View(fn func(raftstore.ReadTx))
	ViewAndWatch(buffer int, fn func(raftstore.ReadTx), kinds ...raftstore.Kind) *raftstore.Watcher
	Update(ctx context.Context, fn func(raftstore.WriteTx) error) error
}

// Defaults of Config.
const (
	// DefaultDebounce is how long a loop waits after a change for more
	// changes before it runs a pass: a `service scale` or a node loss turns
	// into a burst of writes, and one pass over all of them is much cheaper
	// than one per write.
	DefaultDebounce = 25 * time.Millisecond
	// DefaultMaxDelay bounds how long continuous changes can postpone a
	// pass (Swarm's scheduler flushes at least once a second too).
	DefaultMaxDelay = time.Second
)

// Config configures the loops. Store is required; the rest has defaults.
type Config struct {
	Store Store
	// Clock defaults to RealClock.
	Clock Clock
	// Debounce and MaxDelay: see DefaultDebounce and DefaultMaxDelay.
	Debounce time.Duration
	MaxDelay time.Duration
	// NewID names new tasks; nil means raftstore.NewID.
	NewID func() string
	// Rollback rolls service id, as read at version, back to its previous
	// spec with the update status message given (failure action
	// rollback). The control API does it, as for `service rollback`:
	// published ports are allocated again there. nil: such rollbacks are
	// logged and not done.
	Rollback func(ctx context.Context, id string, version uint64, message string) error
	// Logger receives write failures and watch resyncs; nil means
	// slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.Debounce <= 0 {
		c.Debounce = DefaultDebounce
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.MaxDelay < c.Debounce {
		c.MaxDelay = c.Debounce
	}
	if c.NewID == nil {
		c.NewID = raftstore.NewID
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Run runs the orchestrator, allocator and scheduler loops on store until
// ctx ends, then returns nil once all have stopped. Call it on the leader only.
func Run(ctx context.Context, store Store, clock Clock) error {
	return Config{Store: store, Clock: clock}.Run(ctx)
}

// Run runs the loops with c until ctx ends; see the package function Run.
func (c Config) Run(ctx context.Context) error {
	if c.Store == nil {
		return errNoStore
	}
	c = c.withDefaults()
	loops := []*loop{newOrchestratorLoop(c), newAllocatorLoop(c), newSchedulerLoop(c)}
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}
