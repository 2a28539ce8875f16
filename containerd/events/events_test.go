package events

import (
	"errors"
	"testing"
	"time"
)

func TestRingKeepsTheLastInOrder(t *testing.T) {
	b := New(3)
	for _, a := range []string{"a", "b", "c", "d", "e"} {
		b.Publish(Event{Type: TypeContainer, Action: a})
	}
	got := b.Since(time.Time{}, time.Time{})
	if len(got) != 3 || got[0].Action != "c" || got[2].Action != "e" {
		t.Fatalf("history = %+v, want c d e", got)
	}
	for i := 1; i < len(got); i++ {
		if !got[i].Time.After(got[i-1].Time) {
			t.Fatalf("times not increasing: %v then %v", got[i-1].Time, got[i].Time)
		}
	}
	if got[0].Scope != ScopeLocal {
		t.Fatalf("scope = %q, want local", got[0].Scope)
	}
	// --since/--until cut on the stamped times, inclusive.
	cut := b.Since(got[1].Time, got[1].Time)
	if len(cut) != 1 || cut[0].Action != "d" {
		t.Fatalf("since=until=d gave %+v", cut)
	}
}

func TestSubscribeJoinsHistoryAndLive(t *testing.T) {
	b := New(10)
	b.Publish(Event{Action: "old"})
	since := time.Now()
	b.Publish(Event{Action: "past"})
	past, s := b.Subscribe(since)
	defer s.Close()
	b.Publish(Event{Action: "live"})
	if len(past) != 1 || past[0].Action != "past" {
		t.Fatalf("past = %+v", past)
	}
	select {
	case e := <-s.C():
		if e.Action != "live" {
			t.Fatalf("live = %+v", e)
		}
	case <-time.After(time.Second):
		t.Fatal("no live event")
	}
	s.Close()
	s.Close() // twice is fine
	if _, ok := <-s.C(); ok {
		t.Fatal("channel open after Close")
	}
}

func TestSlowSubscriberIsDroppedNotBlocking(t *testing.T) {
	b := New(4)
	_, s := b.Subscribe(time.Time{})
	done := make(chan struct{})
	go func() {
		for i := 0; i < subscriberBuffer+10; i++ {
			b.Publish(Event{Action: "x"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	n := 0
	for range s.C() {
		n++
	}
	if n != subscriberBuffer || !errors.Is(s.Err(), ErrOverflow) {
		t.Fatalf("got %d events, err %v; want %d and ErrOverflow", n, s.Err(), subscriberBuffer)
	}
	s.Close() // after a drop: no double close
}

func TestNilBusDrops(t *testing.T) {
	var b *Bus
	b.Publish(Event{Action: "x"}) // must not panic
}
