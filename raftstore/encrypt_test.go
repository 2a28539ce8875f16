package raftstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// marker stands for a secret's data and the CA key PEM in the log.
const marker = "-----BEGIN EC PRIVATE KEY----- marker-secret-4f1d"

// testDEK is the data key of the cluster tests' nodes (testConfig).
var testDEK = bytes.Repeat([]byte{0x5e}, DEKSize)

func newDEK(t *testing.T) []byte {
	t.Helper()
	dek := make([]byte, DEKSize)
	if _, err := rand.Read(dek); err != nil {
		t.Fatal(err)
	}
	return dek
}

// openNode starts a one-node cluster on dir with dek.
func openNode(t *testing.T, dir string, dek []byte) (*Node, error) {
	t.Helper()
	return openNodeKeys(t, dir, dek)
}

// writeMarked writes count services whose names carry the marker.
func writeMarked(t *testing.T, n *Node, from, count int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := from; i < from+count; i++ {
		id := fmt.Sprintf("s%03d", i)
		if err := n.Store().Update(ctx, func(tx WriteTx) error {
			return tx.Create(svc(id, fmt.Sprintf("%s-%03d", marker, i), 0))
		}); err != nil {
			t.Fatalf("write %s: %v", id, err)
		}
	}
}

// writeState writes a raft state in dir with dek: snapped services in a
// snapshot, then logged more in the log after it.
func writeState(t *testing.T, dir string, dek []byte, snapped, logged int) {
	t.Helper()
	n, err := openNode(t, dir, dek)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	writeMarked(t, n, 0, snapped)
	if err := n.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	writeMarked(t, n, snapped, logged)
}

// plaintextIn lists the files under dir holding the marker.
func plaintextIn(t *testing.T, dir string) (found []string, snaps, segs int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case strings.HasSuffix(p, "state.bin"):
			snaps++
		case strings.HasSuffix(p, ".wal"):
			segs++
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("marker-secret-4f1d")) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, snaps, segs
}

// hasServices waits until n's store holds want services (a restarted
// node applies its log after it is elected).
func hasServices(t *testing.T, n *Node, want int) {
	t.Helper()
	var c int
	waitFor(t, fmt.Sprintf("%d services", want), func() bool {
		n.Store().View(func(tx ReadTx) { c = len(tx.List(KindService)) })
		return c == want
	})
}

// TestRaftFilesHoldNoPlaintext: with a DEK, neither the WAL segments nor the
// snapshots hold a stored secret in the clear, and a restart reads both
// back. Before encryption the marker was found in wal/*.wal and
// snapshots/*/state.bin.
func TestRaftFilesHoldNoPlaintext(t *testing.T) {
	dir, dek := t.TempDir(), newDEK(t)
	writeState(t, dir, dek, 60, 5)
	found, snaps, segs := plaintextIn(t, dir)
	if snaps == 0 || segs == 0 {
		t.Fatalf("want a snapshot and a WAL segment to check, have %d and %d", snaps, segs)
	}
	if len(found) > 0 {
		t.Fatalf("plaintext secret at rest in %v", found)
	}
	n, err := openNode(t, dir, dek)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer n.Close()
	hasServices(t, n, 65)
}

// TestPlaintextLogStillReads: a raft state written before encryption (no
// DEK) opens with a DEK, and what is written after is sealed.
func TestPlaintextLogStillReads(t *testing.T) {
	dir, dek := t.TempDir(), newDEK(t)
	writeState(t, dir, nil, 50, 5)
	if found, _, _ := plaintextIn(t, dir); len(found) == 0 {
		t.Fatal("the old format should hold plaintext; the test checks nothing")
	}
	n, err := openNode(t, dir, dek)
	if err != nil {
		t.Fatalf("open a plaintext state with a DEK: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	hasServices(t, n, 55)
	writeMarked(t, n, 55, 5)
	n.Close()
	n, err = openNode(t, dir, dek)
	if err != nil {
		t.Fatalf("reopen mixed log: %v", err)
	}
	defer n.Close()
	hasServices(t, n, 60)
}

// TestWrongDEKRefused: a state sealed with one key does not open with
// another: the node fails with an error, it does not start empty.
func TestWrongDEKRefused(t *testing.T) {
	dir := t.TempDir()
	writeState(t, dir, newDEK(t), 50, 0)
	cfg := testConfig(t, "n1", dir, "127.0.0.1:0", &faultNet{})
	cfg.DEK = newDEK(t)
	n, err := NewNode(cfg)
	if err == nil {
		n.Close()
		t.Fatal("a node opened its state with the wrong key")
	}
	t.Logf("wrong key: %v", err)
}

// TestRotateDEK: after RotateDEK, what the node writes (entries and the
// snapshot it takes) is sealed with the new key: the old key alone, which
// whoever read the data key in the clear before autolock holds, no longer
// opens the state. With the old key kept as OldDEKs, everything reads.
func TestRotateDEK(t *testing.T) {
	dir, old, next := t.TempDir(), newDEK(t), newDEK(t)
	writeState(t, dir, old, 30, 5)
	n, err := openNode(t, dir, old)
	if err != nil {
		t.Fatal(err)
	}
	hasServices(t, n, 35)
	if err := n.RotateDEK(next); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := n.RotateDEK(next); err == nil {
		t.Fatal("the same key was added twice")
	}
	writeMarked(t, n, 35, 5)
	if err := n.Snapshot(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("snapshot: %v", err)
	}
	writeMarked(t, n, 40, 5)
	n.Close()
	if found, _, _ := plaintextIn(t, dir); len(found) > 0 {
		t.Fatalf("plaintext after rotation in %v", found)
	}

	cfg := testConfig(t, "n1", dir, "127.0.0.1:0", &faultNet{})
	cfg.DEK = old
	if n, err := NewNode(cfg); err == nil {
		n.Close()
		t.Fatal("the rotated-out key alone opened the state written after the rotation")
	}
	n, err = openNodeKeys(t, dir, next, old)
	if err != nil {
		t.Fatalf("open with the new key and the old one kept: %v", err)
	}
	defer n.Close()
	hasServices(t, n, 45)
}

// TestFormat1EntryReads: an entry sealed before keys had IDs (format 1)
// opens with a node's oldest key, also after rotations.
func TestFormat1EntryReads(t *testing.T) {
	w, err := wal.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first, second := newDEK(t), newDEK(t)
	a, err := newAEAD(first)
	if err != nil {
		t.Fatal(err)
	}
	l := &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand}
	plain := append([]byte{byte(len(marker))}, marker...)
	sealed := *l
	if sealed.Data, err = seal(a, nil, entryMagic, plain, entryAD(l)); err != nil {
		t.Fatal(err)
	}
	if err := w.StoreLogs([]*raft.Log{&sealed}); err != nil {
		t.Fatal(err)
	}
	keys, err := newKeyring(first, second)
	if err != nil {
		t.Fatal(err)
	}
	var got raft.Log
	if err := (&encLogStore{WAL: w, keys: keys}).GetLog(1, &got); err != nil || string(got.Data) != marker {
		t.Fatalf("format-1 entry after a rotation: %q, %v", got.Data, err)
	}
	keys, _ = newKeyring(second)
	if err := (&encLogStore{WAL: w, keys: keys}).GetLog(1, &got); err == nil {
		t.Fatal("a format-1 entry opened with a key that did not seal it")
	}
}

// openNodeKeys is openNode with keys rotated out before dek.
func openNodeKeys(t *testing.T, dir string, dek []byte, old ...[]byte) (*Node, error) {
	t.Helper()
	cfg := testConfig(t, "n1", dir, "127.0.0.1:0", &faultNet{})
	cfg.Bootstrap, cfg.DEK, cfg.OldDEKs = true, dek, old
	n, err := NewNode(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.WaitLeader(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	return n, nil
}

// TestSealedSnapshotSizes: snapshots of every size around the frame
// boundaries read back whole, with the plaintext size in their meta (raft
// sends exactly Size bytes to a follower), and a cut-off snapshot fails.
func TestSealedSnapshotSizes(t *testing.T) {
	inner, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 10, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := newKeyring(newDEK(t))
	if err != nil {
		t.Fatal(err)
	}
	_, store := atRest(keys, nil, inner)
	_, trans := raft.NewInmemTransport("")
	for i, size := range []int{0, 1, snapChunk - 1, snapChunk, snapChunk + 1, 3 * snapChunk, 3*snapChunk + 7} {
		data := make([]byte, size)
		rand.Read(data)
		sink, err := store.Create(1, uint64(i+1), 1, raft.Configuration{}, 1, trans)
		if err != nil {
			t.Fatal(err)
		}
		// In odd pieces, as an encoder writes.
		for p := data; len(p) > 0; {
			k := min(len(p), 1000+i*7919)
			if _, err := sink.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		meta, rc, err := store.Open(sink.ID())
		if err != nil {
			t.Fatalf("size %d: open: %v", size, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) || meta.Size != int64(size) {
			t.Fatalf("size %d: read %d bytes (meta %d), equal %v, err %v", size, len(got), meta.Size, bytes.Equal(got, data), err)
		}
	}
	// A sealed stream cut after its first full frame.
	a := keys.sealer().aead
	var buf bytes.Buffer
	w := &encSink{SnapshotSink: &bufSink{&buf}, aead: a}
	w.Write(make([]byte, 2*snapChunk))
	w.Close()
	cut := buf.Bytes()[:frameSize(a)]
	r := &snapReader{aead: a, r: bufio.NewReader(bytes.NewReader(cut)), c: io.NopCloser(nil)}
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("a truncated snapshot read without error")
	}
}

// bufSink is a SnapshotSink over a buffer.
type bufSink struct{ *bytes.Buffer }

func (bufSink) ID() string    { return "buf" }
func (bufSink) Cancel() error { return nil }
func (bufSink) Close() error  { return nil }
