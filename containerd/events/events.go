// Package events is a node's event bus: what happened to its containers,
// images, networks, volumes and, on managers, to the swarm's nodes and
// services, in the order it happened, for `events` (GET /events).
//
// Emitters call Publish; it never blocks and never fails, so it can be
// called from any code path, with or without locks held (but not from a
// subscriber's own reader). The bus keeps the last events in a bounded ring,
// so that a subscriber can ask for those since a time (`events --since`),
// and hands every new one to its live subscribers. A subscriber that reads
// too slowly is dropped rather than allowed to hold up the publishers: its
// channel is closed and Err says why, and `events` ends with that error, as
// dockerd's does when it evicts a slow listener.
//
// A package that emits declares the one-method interface it needs
// (Publisher) instead of holding a *Bus, so a nil or fake publisher is easy.
package events

import (
	"errors"
	"sync"
	"time"
)

// Types of objects, as the Engine API names them.
const (
	TypeContainer = "container"
	TypeImage     = "image"
	TypeVolume    = "volume"
	TypeNetwork   = "network"
	TypeNode      = "node"
	TypeService   = "service"
	TypeDaemon    = "daemon"
)

// Scopes: local objects, or the swarm's (nodes, services).
const (
	ScopeLocal = "local"
	ScopeSwarm = "swarm"
)

// Event is one thing that happened to one object.
type Event struct {
	Type   string // TypeContainer, TypeImage, ...
	Action string // create, start, die, pause, tag, ...
	// ID is the object's ID (a container's full ID, an image's reference
	// or ID, a node's ID).
	ID string
	// Attributes describe the object (a container's name, image and
	// labels) and the action (exitCode of a die, signal of a kill).
	Attributes map[string]string
	Scope      string    // ScopeLocal when empty
	Time       time.Time // set by Publish; strictly increasing on one bus
}

// Publisher is what an emitter needs of the bus.
type Publisher interface {
	Publish(Event)
}

// ErrOverflow is a subscription's error when it was dropped for reading
// too slowly.
var ErrOverflow = errors.New("events: subscriber too slow, events were dropped")

// DefaultHistory is how many past events a bus keeps for --since.
const DefaultHistory = 1024

// subscriberBuffer is how many events a subscriber may lag behind before it
// is dropped.
const subscriberBuffer = 512

// Bus is an event bus with a bounded history.
type Bus struct {
	mu   sync.Mutex // guards everything below
	ring []Event    // the last len(ring) events, oldest at next when full
	next int
	full bool
	last time.Time
	subs map[*Subscription]struct{}
}

// New returns a bus that keeps the last history events (DefaultHistory if
// history <= 0).
func New(history int) *Bus {
	if history <= 0 {
		history = DefaultHistory
	}
	return &Bus{ring: make([]Event, history), subs: map[*Subscription]struct{}{}}
}

// Publish stamps e with the time, stores it and hands it to the live
// subscribers. It never blocks. A nil bus drops the event.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	if e.Scope == "" {
		e.Scope = ScopeLocal
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// Stamped under the lock and kept strictly increasing, so that the ring
	// is in time order and --since/--until cut it without ambiguity.
	now := time.Now()
	if !now.After(b.last) {
		now = b.last.Add(time.Nanosecond)
	}
	b.last = now
	e.Time = now
	b.ring[b.next] = e
	b.next++
	if b.next == len(b.ring) {
		b.next, b.full = 0, true
	}
	for s := range b.subs {
		select {
		case s.ch <- e:
		default:
			s.err = ErrOverflow
			delete(b.subs, s)
			close(s.ch)
		}
	}
}

// historyLocked returns the stored events, oldest first; b.mu is held.
func (b *Bus) historyLocked() []Event {
	if !b.full {
		return append([]Event(nil), b.ring[:b.next]...)
	}
	out := make([]Event, 0, len(b.ring))
	out = append(out, b.ring[b.next:]...)
	return append(out, b.ring[:b.next]...)
}

// Subscription receives the events published after Subscribe returned.
type Subscription struct {
	bus *Bus
	ch  chan Event
	err error // set (under bus.mu) when dropped
}

// C delivers the events; it is closed when the subscription is closed or
// dropped.
func (s *Subscription) C() <-chan Event { return s.ch }

// Err is ErrOverflow once the subscription was dropped, else nil.
func (s *Subscription) Err() error {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.err
}

// Close ends the subscription; it may be called more than once.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		delete(s.bus.subs, s)
		close(s.ch)
	}
}

// Subscribe returns the stored events at or after since (none when since
// is zero), oldest first, and a subscription to every later event: nothing
// is lost or repeated between the two.
func (b *Bus) Subscribe(since time.Time) ([]Event, *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var past []Event
	if !since.IsZero() {
		for _, e := range b.historyLocked() {
			if !e.Time.Before(since) {
				past = append(past, e)
			}
		}
	}
	s := &Subscription{bus: b, ch: make(chan Event, subscriberBuffer)}
	b.subs[s] = struct{}{}
	return past, s
}

// Since returns the stored events in [since, until] (until zero: up to now),
// oldest first, without subscribing.
func (b *Bus) Since(since, until time.Time) []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Event
	for _, e := range b.historyLocked() {
		if e.Time.Before(since) || (!until.IsZero() && e.Time.After(until)) {
			continue
		}
		out = append(out, e)
	}
	return out
}
