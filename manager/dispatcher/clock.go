package dispatcher

import "time"

// Clock is the time the dispatcher runs on: heartbeat deadlines and the
// status batcher's flush interval. Injected so tests advance time instead of
// sleeping.
type Clock interface {
	Now() time.Time
	// After delivers the time once d has passed (at once if d <= 0).
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
