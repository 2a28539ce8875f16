package raftstore

import (
	"testing"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// TestWALSurvivesTailTruncation: a follower that loses an election deletes
// its log's last entries (raft: "clearing log suffix"); after a kill and a
// restart every entry before them must still read. raft-wal v0.4.0 left the
// tail segment sealed without its index there, and the restarted manager
// panicked in raft.NewRaft with "sealed segment has no index block" (seen
// in tests/cluster_failures_test.go "all managers killed"; this test failed
// with v0.4.0).
func TestWALSurvivesTailTruncation(t *testing.T) {
	dir := t.TempDir()
	open := func() (*wal.WAL, *metadb.BoltMetaDB) {
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(dir, wal.WithMetaStore(meta))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return w, meta
	}
	w, meta := open()
	var logs []*raft.Log
	for i := uint64(1); i <= 40; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("entry")})
	}
	if err := w.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRange(40, 40); err != nil {
		t.Fatal(err)
	}
	// The crash: nothing is closed or synced beyond what the WAL did.
	w.Close()
	meta.Close()
	w, meta = open()
	defer meta.Close()
	defer w.Close()
	var got raft.Log
	if err := w.GetLog(1, &got); err != nil {
		t.Fatalf("entry 1 after tail truncation and restart: %v", err)
	}
	if last, err := w.LastIndex(); err != nil || last != 39 {
		t.Fatalf("last index = %d, %v; want 39", last, err)
	}
}
