package leader

import (
	"context"
	"log/slog"
	"time"

	"github.com/shoal-project/shoal/raftstore"
)

// dirty is what the next pass must look at: everything, or some services.
type dirty struct {
	all      bool
	services map[string]struct{}
}

func (d *dirty) service(id string) {
	if d.services == nil {
		d.services = map[string]struct{}{}
	}
	d.services[id] = struct{}{}
}

func (d *dirty) merge(o dirty) {
	d.all = d.all || o.all
	for id := range o.services {
		d.service(id)
	}
}

func (d *dirty) empty() bool { return !d.all && len(d.services) == 0 }

// Retry delays after a failed pass. A conflict is a normal race with another
// writer (the dispatcher, the other loop) and is retried almost at once; any
// other failure (no quorum, not leader) backs off up to maxBackoff.
const (
	conflictRetry = 5 * time.Millisecond
	minBackoff    = 50 * time.Millisecond
	maxBackoff    = 2 * time.Second
)

// loop is the debounced watch-read-decide-write cycle shared by the
// orchestrator and scheduler loops. Only the goroutine in run touches it.
type loop struct {
	name               string
	store              Store
	clock              Clock
	log                *slog.Logger
	debounce, maxDelay time.Duration
	kinds              []raftstore.Kind
	// mark records in d what ev makes dirty and reports whether it matters.
	mark func(ev raftstore.Event, d *dirty) bool
	// pass reads, decides and writes for d. next, when not zero, is when a
	// pass must run again even if nothing changes.
	pass func(ctx context.Context, d dirty) (next time.Time, err error)
}

// newLoop makes a loop named name with c's store, clock, logger and delays.
func (c Config) newLoop(name string, kinds []raftstore.Kind, mark func(raftstore.Event, *dirty) bool,
	pass func(context.Context, dirty) (time.Time, error)) *loop {
	return &loop{
		name: name, store: c.Store, clock: c.Clock, log: c.Logger,
		debounce: c.Debounce, maxDelay: c.MaxDelay,
		kinds: kinds, mark: mark, pass: pass,
	}
}

// run is the loop's goroutine; it returns when ctx ends.
func (l *loop) run(ctx context.Context) {
	var w *raftstore.Watcher
	subscribe := func() {
		w = l.store.ViewAndWatch(raftstore.DefaultWatchBuffer, func(raftstore.ReadTx) {}, l.kinds...)
	}
	subscribe()
	defer func() { w.Close() }()

	var (
		pending = dirty{all: true} // the first pass looks at everything
		due     <-chan time.Time   // the debounce timer, nil when idle
		first   time.Time          // when the batch waiting for due began
		wake    <-chan time.Time   // the NextEvaluation timer
		backoff time.Duration
	)
	// arm (re)starts the debounce timer: debounce after the latest change,
	// but never later than maxDelay after the first one of the batch.
	arm := func() {
		now := l.clock.Now()
		if first.IsZero() {
			first = now
		}
		d := min(l.debounce, first.Add(l.maxDelay).Sub(now))
		due = l.clock.After(d)
	}
	arm()
	for {
		select {
		case <-ctx.Done():
			return
		case b, ok := <-w.C():
			if !ok {
				// Overflow or restore: re-subscribe and look at everything.
				l.log.Info("leader: watch ended; resyncing", "loop", l.name, "err", w.Err())
				subscribe()
				pending.all = true
				arm()
				continue
			}
			changed := false
			for _, ev := range b.Events {
				if l.mark(ev, &pending) {
					changed = true
				}
			}
			if changed && backoff == 0 {
				arm()
			}
		case <-wake:
			wake = nil
			pending.all = true
			arm()
		case <-due:
			due, first = nil, time.Time{}
			if pending.empty() {
				continue
			}
			cur := pending
			pending = dirty{}
			next, err := l.pass(ctx, cur)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				pending.merge(cur)
				if isConflict(err) {
					backoff = conflictRetry
				} else {
					backoff = min(max(2*backoff, minBackoff), maxBackoff)
					l.log.Warn("leader: pass failed; retrying", "loop", l.name, "err", err, "retry", backoff)
				}
				due, first = l.clock.After(backoff), l.clock.Now()
				continue
			}
			backoff = 0
			if !next.IsZero() {
				wake = l.clock.After(next.Sub(l.clock.Now()))
			} else {
				wake = nil
			}
			if !pending.empty() {
				arm()
			}
		}
	}
}
