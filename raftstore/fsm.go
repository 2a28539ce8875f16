package raftstore

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"github.com/shoal-project/shoal/api"
	"google.golang.org/protobuf/proto"
)

// fsm adapts MemoryStore to raft.FSM. Raft calls Apply and Restore from its
// FSM goroutine and Persist from its snapshot goroutine.
type fsm struct{ s *MemoryStore }

// Apply returns []error, one per proposal of the entry, for the proposer
// waiting on this entry's future (only the leader's proposer reads it).
func (f *fsm) Apply(l *raft.Log) any {
	var b api.ProposalBatch
	if err := proto.Unmarshal(l.Data, &b); err != nil {
		// Every replica fails to decode the same bytes the same way.
		return fmt.Errorf("raftstore: decode entry %d: %w", l.Index, err)
	}
	// b was decoded for this call alone: its objects are stored as they are.
	return f.s.apply(l.Index, &b, true)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{f: f.s.freeze()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("raftstore: read snapshot: %w", err)
	}
	return f.s.Restore(b)
}

// fsmSnapshot encodes outside the store's lock: freeze copied only pointers
// to immutable objects.
type fsmSnapshot struct{ f *frozen }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.f.encode()
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("raftstore: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
