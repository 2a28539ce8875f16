package raftstore

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// Encryption at rest: every raft log entry and every snapshot is sealed with
// the data encryption key (DEK, AES-256-GCM, a random nonce per seal), as
// Swarm does, because the log holds the CA key, join tokens and secrets.
// Sealed data starts with a magic and version; data without it is a log or
// snapshot written before encryption and is read as it is, so an upgraded
// manager keeps its state. The magic cannot start a plaintext entry: 0xff
// is no valid protobuf tag (field 31, wire type 7) and raft's msgpack
// configurations start with a map.

// DEKSize is the length of a data encryption key.
const DEKSize = 32

var (
	entryMagic = []byte{0xff, 'S', 'E', 1} // a sealed log entry, format 1
	snapMagic  = []byte{0xff, 'S', 'S', 1} // a sealed snapshot, format 1
	// Format 2 names the key that sealed the data (keyIDSize bytes after
	// the magic), so that a node whose data key was rotated reads what
	// older keys sealed. Format 1 was sealed with a node's first key.
	entryMagic2 = []byte{0xff, 'S', 'E', 2}
	snapMagic2  = []byte{0xff, 'S', 'S', 2}
)

// snapChunk is the plaintext size of one sealed snapshot frame.
const snapChunk = 64 << 10

// keyIDSize is the length of a data key's ID in sealed data.
const keyIDSize = 4

// dataKey is one data key, ready to seal or open.
type dataKey struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

// keyring is a node's data keys, oldest first: the newest seals, each
// opens what it sealed, and the oldest opens format-1 data (sealed before
// keys had IDs, when a node had one key). Rotation (Node.RotateDEK) adds a
// key; old ones stay as long as the node's data may hold their output.
type keyring struct {
	mu   sync.RWMutex
	keys []dataKey
}

func newKeyring(deks ...[]byte) (*keyring, error) {
	k := &keyring{}
	for _, dek := range deks {
		if err := k.add(dek); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// add makes dek the key that seals from now on.
func (k *keyring) add(dek []byte) error {
	a, err := newAEAD(dek)
	if err != nil {
		return err
	}
	// The ID is a digest of the key under its own label: it names the key
	// in sealed data without saying anything about it.
	sum := sha256.Sum256(append([]byte("shoal raft data key id\x00"), dek...))
	dk := dataKey{aead: a}
	copy(dk.id[:], sum[:])
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, o := range k.keys {
		if o.id == dk.id {
			return errors.New("raftstore: data key already in use")
		}
	}
	k.keys = append(k.keys, dk)
	return nil
}

// sealer is the key that seals now.
func (k *keyring) sealer() dataKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[len(k.keys)-1]
}

// opener returns the AEAD that opens data sealed in format version v (1 or
// 2) whose remaining bytes are rest (format 2: the key ID first), and the
// bytes after the ID.
func (k *keyring) opener(v byte, rest []byte) (cipher.AEAD, []byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if v == 1 {
		return k.keys[0].aead, rest, nil
	}
	if len(rest) < keyIDSize {
		return nil, nil, errors.New("sealed data too short")
	}
	for _, dk := range k.keys {
		if bytes.Equal(dk.id[:], rest[:keyIDSize]) {
			return dk.aead, rest[keyIDSize:], nil
		}
	}
	return nil, nil, errors.New("sealed with a data key this node does not have")
}

func newAEAD(dek []byte) (cipher.AEAD, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("raftstore: data encryption key is %d bytes, want %d", len(dek), DEKSize)
	}
	b, err := aes.NewCipher(dek)
	if err != nil {
		return nil, fmt.Errorf("raftstore: data encryption key: %w", err)
	}
	return cipher.NewGCM(b)
}

// seal appends magic, a random nonce and the sealed plaintext to dst.
func seal(a cipher.AEAD, dst, magic, plain, ad []byte) ([]byte, error) {
	dst = append(dst, magic...)
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("raftstore: nonce: %w", err)
	}
	dst = append(dst, nonce...)
	return a.Seal(dst, nonce, plain, ad), nil
}

// encLogStore seals each entry's Data and Extensions on the way into the
// WAL and opens them on the way out; index, term and type stay clear (raft
// reads them) and are bound to the ciphertext as associated data, so an
// entry cannot be moved to another index unnoticed.
type encLogStore struct {
	*wal.WAL
	keys *keyring
}

var _ raft.MonotonicLogStore = (*encLogStore)(nil)

func entryAD(l *raft.Log) []byte {
	var ad [17]byte
	binary.BigEndian.PutUint64(ad[0:], l.Index)
	binary.BigEndian.PutUint64(ad[8:], l.Term)
	ad[16] = byte(l.Type)
	return ad[:]
}

// sealLog returns a copy of l with its payload sealed: raft keeps l in its
// cache to replicate it, in plaintext.
func (s *encLogStore) sealLog(l *raft.Log) (*raft.Log, error) {
	c := *l
	// Data and Extensions in one box: length of Data, Data, Extensions.
	plain := binary.AppendUvarint(nil, uint64(len(l.Data)))
	plain = append(append(plain, l.Data...), l.Extensions...)
	k := s.keys.sealer()
	var err error
	c.Data, err = seal(k.aead, nil, append(slices.Clone(entryMagic2), k.id[:]...), plain, entryAD(l))
	c.Extensions = nil
	return &c, err
}

// StoreLog seals the entry and stores it.
func (s *encLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs seals the entries and stores them.
func (s *encLogStore) StoreLogs(logs []*raft.Log) error {
	sealed := make([]*raft.Log, len(logs))
	for i, l := range logs {
		var err error
		if sealed[i], err = s.sealLog(l); err != nil {
			return err
		}
	}
	return s.WAL.StoreLogs(sealed)
}

// GetLog reads the entry at index and opens it; an entry written before
// encryption is returned as stored.
func (s *encLogStore) GetLog(index uint64, l *raft.Log) error {
	if err := s.WAL.GetLog(index, l); err != nil {
		return err
	}
	var v byte
	switch {
	case bytes.HasPrefix(l.Data, entryMagic):
		v = 1
	case bytes.HasPrefix(l.Data, entryMagic2):
		v = 2
	default:
		return nil
	}
	a, box, err := s.keys.opener(v, l.Data[len(entryMagic):])
	if err != nil {
		return fmt.Errorf("raftstore: log entry %d: %w", index, err)
	}
	ns := a.NonceSize()
	if len(box) < ns {
		return fmt.Errorf("raftstore: log entry %d: sealed entry too short", index)
	}
	plain, err := a.Open(nil, box[:ns], box[ns:], entryAD(l))
	if err != nil {
		return fmt.Errorf("raftstore: log entry %d: cannot decrypt (wrong data encryption key?): %w", index, err)
	}
	n, k := binary.Uvarint(plain)
	if k <= 0 || uint64(len(plain)-k) < n {
		return fmt.Errorf("raftstore: log entry %d: malformed sealed entry", index)
	}
	l.Data = plain[k : k+int(n)]
	l.Extensions = nil
	if ext := plain[k+int(n):]; len(ext) > 0 {
		l.Extensions = ext
	}
	return nil
}

// encSnapshotStore seals what raft writes into a snapshot, in frames of
// snapChunk bytes each with its own nonce, and opens it on Open (restore,
// and the stream sent to a follower that is behind).
//
// Format: snapMagic, then frames of [nonce][sealed chunk]; every frame but
// the last carries snapChunk plaintext bytes, the last fewer (possibly 0).
// The associated data is the frame's number and whether it is the last, so
// frames cannot be reordered, dropped or cut off unnoticed.
type encSnapshotStore struct {
	raft.SnapshotStore
	keys *keyring
}

func frameAD(n uint64, last bool) []byte {
	var ad [9]byte
	binary.BigEndian.PutUint64(ad[:], n)
	if last {
		ad[8] = 1
	}
	return ad[:]
}

// frameSize is the sealed size of a full frame under a.
func frameSize(a cipher.AEAD) int {
	return a.NonceSize() + snapChunk + a.Overhead()
}

// Create opens a sink that seals what is written to it.
func (s *encSnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, conf raft.Configuration,
	confIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, conf, confIndex, trans)
	if err != nil {
		return nil, err
	}
	k := s.keys.sealer()
	if _, err := sink.Write(append(slices.Clone(snapMagic2), k.id[:]...)); err != nil {
		sink.Cancel()
		return nil, fmt.Errorf("raftstore: snapshot: %w", err)
	}
	return &encSink{SnapshotSink: sink, aead: k.aead, buf: make([]byte, 0, snapChunk)}, nil
}

// Open opens the snapshot id for reading in plaintext; its meta's Size is
// the plaintext size (raft sends exactly Size bytes to a follower).
func (s *encSnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(rc, frameSize(s.keys.sealer().aead))
	head, err := br.Peek(len(snapMagic))
	var v byte
	switch {
	case err == nil && bytes.Equal(head, snapMagic):
		v = 1
	case err == nil && bytes.Equal(head, snapMagic2):
		v = 2
	default:
		// Written before encryption (or empty): read as it is.
		return meta, struct {
			io.Reader
			io.Closer
		}{br, rc}, nil
	}
	headLen := len(snapMagic)
	if v == 2 {
		headLen += keyIDSize
	}
	head, err = br.Peek(headLen)
	var a cipher.AEAD
	if err == nil {
		a, _, err = s.keys.opener(v, head[len(snapMagic):])
	}
	if err != nil {
		rc.Close()
		return nil, nil, fmt.Errorf("raftstore: snapshot %s: %w", id, err)
	}
	br.Discard(headLen)
	m := *meta
	m.Size, err = plainSize(a, meta.Size-int64(headLen))
	if err != nil {
		rc.Close()
		return nil, nil, fmt.Errorf("raftstore: snapshot %s: %w", id, err)
	}
	return &m, &snapReader{aead: a, r: br, c: rc}, nil
}

// plainSize is the plaintext size of frames sealed with a, of total size n.
func plainSize(a cipher.AEAD, n int64) (int64, error) {
	fs, over := int64(frameSize(a)), int64(a.NonceSize()+a.Overhead())
	if n < over {
		return 0, errors.New("sealed snapshot too short")
	}
	full := (n - over) / fs
	return full*snapChunk + (n - over - full*fs), nil
}

// encSink buffers one chunk and seals it as a frame when full; Close seals
// the last frame.
type encSink struct {
	raft.SnapshotSink
	aead   cipher.AEAD
	buf    []byte
	frames uint64
	out    []byte
}

func (w *encSink) flush(last bool) error {
	var err error
	w.out, err = seal(w.aead, w.out[:0], nil, w.buf, frameAD(w.frames, last))
	if err != nil {
		return err
	}
	w.frames++
	w.buf = w.buf[:0]
	if _, err := w.SnapshotSink.Write(w.out); err != nil {
		return fmt.Errorf("raftstore: snapshot: %w", err)
	}
	return nil
}

// Write buffers p, sealing each full chunk.
func (w *encSink) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(snapChunk-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		// A full chunk is sealed only when more follows: the last frame
		// must be the one flagged last.
		if len(w.buf) == snapChunk && len(p) > 0 {
			if err := w.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// Close seals the last frame and closes the file.
func (w *encSink) Close() error {
	if err := w.flush(true); err != nil {
		w.SnapshotSink.Cancel()
		return err
	}
	return w.SnapshotSink.Close()
}

// snapReader opens frames one at a time.
type snapReader struct {
	aead   cipher.AEAD
	r      *bufio.Reader
	c      io.Closer
	frames uint64
	plain  []byte // the opened frame's bytes not read yet
	buf    []byte // backs plain
	frame  []byte
	done   bool
}

func (r *snapReader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}

func (r *snapReader) next() error {
	if r.frame == nil {
		r.frame = make([]byte, frameSize(r.aead))
	}
	n, err := io.ReadFull(r.r, r.frame)
	last := false
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		last = true
	case err != nil:
		return fmt.Errorf("raftstore: read snapshot: %w", err)
	default:
		// A full frame is the last one when nothing follows.
		if _, perr := r.r.Peek(1); errors.Is(perr, io.EOF) {
			last = true
		}
	}
	ns := r.aead.NonceSize()
	if n < ns+r.aead.Overhead() {
		return errors.New("raftstore: sealed snapshot truncated")
	}
	f := r.frame[:n]
	plain, err := r.aead.Open(r.buf[:0], f[:ns], f[ns:], frameAD(r.frames, last))
	if err != nil {
		return fmt.Errorf("raftstore: snapshot frame %d: cannot decrypt (wrong data encryption key, or truncated): %w", r.frames, err)
	}
	r.buf, r.plain, r.done = plain, plain, last
	r.frames++
	return nil
}

func (r *snapReader) Close() error { return r.c.Close() }

// atRest wraps the node's log and snapshot stores in the encryption of
// keys; without keys they are used as they are (plaintext).
func atRest(keys *keyring, w *wal.WAL, snaps raft.SnapshotStore) (raft.LogStore, raft.SnapshotStore) {
	if keys == nil {
		return w, snaps
	}
	return &encLogStore{WAL: w, keys: keys}, &encSnapshotStore{SnapshotStore: snaps, keys: keys}
}
