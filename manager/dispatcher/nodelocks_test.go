package dispatcher

import (
	"testing"
	"time"
)

// TestNodeLocks: a node's lock excludes another holder of that node (alone
// or among others), not holders of other nodes, and leaves nothing behind.
func TestNodeLocks(t *testing.T) {
	var l nodeLocks
	unlock := l.lock("b", "a", "a")
	other := make(chan struct{})
	go func() { l.lock("c")(); close(other) }()
	select {
	case <-other:
	case <-time.After(5 * time.Second):
		t.Fatal("node c waited for nodes a and b")
	}
	same := make(chan struct{})
	go func() { l.lock("c", "b")(); close(same) }()
	select {
	case <-same:
		t.Fatal("node b locked twice")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	<-same
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) != 0 {
		t.Errorf("%d entries left after every unlock", len(l.m))
	}
}
