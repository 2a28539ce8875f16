package manager

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestStreamGuard: one goroutine rechecks every open stream; a stream
// whose caller lost its right is cancelled with the reason, the others go
// on, and the goroutine ends once no stream is open.
func TestStreamGuard(t *testing.T) {
	var g streamGuard
	var allowed atomic.Bool
	allowed.Store(true)
	lost := errors.New("node removed")
	okCtx, okCancel := context.WithCancel(context.Background())
	defer okCancel()
	badCtx, badCancel := context.WithCancel(context.Background())
	defer badCancel()
	ok := g.add(func() error { return nil }, okCancel)
	bad := g.add(func() error {
		if allowed.Load() {
			return nil
		}
		return lost
	}, badCancel)

	time.Sleep(recheckPeriod + recheckPeriod/2) // checked once, allowed
	if badCtx.Err() != nil || okCtx.Err() != nil {
		t.Fatal("a stream whose caller is allowed was cancelled")
	}
	allowed.Store(false)
	select {
	case <-badCtx.Done():
	case <-time.After(3 * recheckPeriod):
		t.Fatal("the stream of a caller that lost its right was not cancelled")
	}
	if r := bad.refused.Load(); r == nil || !errors.Is(*r, lost) {
		t.Fatalf("refused = %v, want %v", r, lost)
	}
	if okCtx.Err() != nil || ok.refused.Load() != nil {
		t.Fatal("the allowed stream was cancelled with the other")
	}

	g.remove(ok)
	g.remove(bad)
	deadline := time.Now().Add(3 * recheckPeriod)
	for {
		g.mu.Lock()
		running := g.running
		g.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the guard's goroutine still runs with no stream open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A new stream starts it again.
	again, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := g.add(func() error { return lost }, cancel)
	defer g.remove(s)
	select {
	case <-again.Done():
	case <-time.After(3 * recheckPeriod):
		t.Fatal("a stream opened after the guard stopped is not rechecked")
	}
}
