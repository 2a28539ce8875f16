// Package heartbeat is the heartbeat fast path of a manager: agents' beats
// as authenticated UDP datagrams (api/beat.go), answered by a small process
// of its own, which shares a table of sessions with the dispatcher through
// memory.
//
// Why a process of its own: a leader placing a hundred thousand tasks keeps
// its two CPUs busy, and Go has no goroutine priorities. A heartbeat that
// arrives over gRPC waits for its connection's reader goroutine, which the
// runtime queues behind hundreds of runnable ones (docs/cluster.md, "Scale":
// sent -> answered p99 170-480 ms while the leader handles it in 0.4 ms).
// The kernel schedules processes, not goroutines, and a thread that slept
// in a read is run soon after its datagram arrives: the server answers in
// milliseconds however busy the manager's process is. It reads nothing but
// the table and writes nothing but the table's arrival times, so the
// dispatcher still decides who is down, from what the table says when a
// node's deadline falls due.
package heartbeat

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/api"
)

// The table's layout, in a memfd both processes map: a header and slots of
// slotSize bytes. A slot's words are read and written atomically; its key
// is written while its generation is 0 (free), and a generation is never
// used twice in a table, so a reader that sees the same generation before
// and after copying the key has a key of that generation.
const (
	headerSize = 64
	slotSize   = 64
	magic      = 0x73686f616c686231 // "shoalhb1"

	// header words
	hMagic    = 0
	hSlots    = 8
	hPeriod   = 16 // ns
	hAnswered = 24 // beats answered, all slots
	hAlive    = 32 // UnixNano until which the manager vouches for itself

	// slot words
	sGen   = 0
	sSeq   = 8  // highest seq accepted
	sSeen  = 16 // arrival of the last accepted beat, UnixNano
	sCount = 24 // beats accepted
	sKey   = 32 // api.BeatKeySize bytes
)

// DefaultSlots is how many sessions a table holds.
const DefaultSlots = 1 << 14

// ErrFull: every slot holds a session; the new one beats over gRPC.
var ErrFull = errors.New("heartbeat: table full")

// Table is the sessions' slots, shared with the answering process.
// The manager's side (Assign, Release, Seen, SetPeriod) may be called from
// any goroutine; Accept is the answering side.
type Table struct {
	f     *os.File
	mem   []byte
	slots uint32

	mu      sync.Mutex // guards free, nextGen: the manager's side
	free    []uint32   // FIFO: a slot is reused as late as possible
	nextGen uint64
}

// NewTable makes a table of n slots in a new memfd.
func NewTable(n int) (*Table, error) {
	if n <= 0 || n > 1<<20 {
		return nil, fmt.Errorf("heartbeat: table of %d slots", n)
	}
	fd, err := unix.MemfdCreate("shoal-heartbeats", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "shoal-heartbeats")
	size := headerSize + n*slotSize
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("heartbeat: size the table: %w", err)
	}
	t, err := mapTable(f, size)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint64(t.mem[hSlots:], uint64(n))
	t.word(hMagic).Store(magic)
	t.slots = uint32(n)
	t.free = make([]uint32, n)
	for i := range t.free {
		t.free[i] = uint32(i)
	}
	t.nextGen = 1
	return t, nil
}

// OpenTable maps the table in f (the answering process's side).
func OpenTable(f *os.File) (*Table, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("heartbeat: table: %w", err)
	}
	if st.Size() < headerSize {
		return nil, errors.New("heartbeat: table: too small")
	}
	t, err := mapTable(f, int(st.Size()))
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(t.mem[hSlots:])
	if t.word(hMagic).Load() != magic || n == 0 || n > 1<<20 || int64(headerSize+n*slotSize) != st.Size() {
		t.Close()
		return nil, errors.New("heartbeat: table: not a heartbeat table")
	}
	t.slots = uint32(n)
	return t, nil
}

func mapTable(f *os.File, size int) (*Table, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("heartbeat: map the table: %w", err)
	}
	return &Table{f: f, mem: mem}, nil
}

// File is the table's memfd, to hand to the answering process.
func (t *Table) File() *os.File { return t.f }

// Close unmaps the table and closes its memfd.
func (t *Table) Close() error {
	err := unix.Munmap(t.mem)
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// word is the 64-bit word at offset off (8-aligned: the mapping is
// page-aligned).
func (t *Table) word(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&t.mem[off]))
}

func (t *Table) slotOff(slot uint32) int { return headerSize + int(slot)*slotSize }

// SetPeriod sets the period the answers name.
func (t *Table) SetPeriod(d time.Duration) { t.word(hPeriod).Store(uint64(d)) }

// Vouch says the manager's process runs until at least until: beats are
// answered only until then. A manager that is stopped or wedged (or has
// ended) stops vouching, and its agents' beats go to gRPC, which tells
// them to look elsewhere: an answer from the fast path must not outlive
// the manager it speaks for.
func (t *Table) Vouch(until time.Time) { t.word(hAlive).Store(uint64(until.UnixNano())) }

// Answered is how many beats the table has accepted since it was made.
func (t *Table) Answered() uint64 { return t.word(hAnswered).Load() }

// Assign gives a new session a slot: its generation and the key its beats
// are authenticated with.
func (t *Table) Assign() (slot uint32, gen uint64, key []byte, err error) {
	key = make([]byte, api.BeatKeySize)
	if _, err := rand.Read(key); err != nil {
		return 0, 0, nil, fmt.Errorf("heartbeat: key: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.free) == 0 {
		return 0, 0, nil, ErrFull
	}
	slot, t.free = t.free[0], t.free[1:]
	gen = t.nextGen
	t.nextGen++
	off := t.slotOff(slot)
	t.word(off + sGen).Store(0)
	t.word(off + sSeq).Store(0)
	t.word(off + sSeen).Store(0)
	t.word(off + sCount).Store(0)
	for i := 0; i < api.BeatKeySize; i += 8 {
		t.word(off + sKey + i).Store(binary.LittleEndian.Uint64(key[i:]))
	}
	t.word(off + sGen).Store(gen)
	return slot, gen, key, nil
}

// Release ends the session in slot (its beats go unanswered from now on).
func (t *Table) Release(slot uint32, gen uint64) {
	if slot >= t.slots {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.word(t.slotOff(slot)+sGen).CompareAndSwap(gen, 0) {
		t.free = append(t.free, slot)
	}
}

// Seen returns when the session in slot last beat through the table and how
// many beats it has made there; ok is false if the slot holds another
// session.
func (t *Table) Seen(slot uint32, gen uint64) (at time.Time, count uint64, ok bool) {
	if slot >= t.slots {
		return time.Time{}, 0, false
	}
	off := t.slotOff(slot)
	if t.word(off+sGen).Load() != gen {
		return time.Time{}, 0, false
	}
	seen, count := int64(t.word(off+sSeen).Load()), t.word(off+sCount).Load()
	if t.word(off+sGen).Load() != gen {
		return time.Time{}, 0, false
	}
	if count == 0 {
		return time.Time{}, 0, true
	}
	return time.Unix(0, seen), count, true
}

// Accept checks the beat datagram pkt against the table and, when it is an
// authentic beat of a current session that was not accepted before, records
// its arrival at now and returns the answer to send. Anything else is
// dropped without an answer (nil): a stranger learns nothing, and an agent
// whose session ended finds out over gRPC.
//
// A slot reassigned while a beat of its previous session is being accepted
// may credit the new session with that beat or take its seq: the new
// session then beats over gRPC until its seq passes it. Slots are reused
// first in, first out, so that needs thousands of sessions to end in the
// microseconds of one Accept.
func (t *Table) Accept(pkt []byte, now time.Time) []byte {
	b, err := api.ParseBeat(pkt)
	if err != nil || b.Slot >= t.slots || b.Generation == 0 || b.Seq == 0 || now.UnixNano() > int64(t.word(hAlive).Load()) {
		return nil
	}
	off := t.slotOff(b.Slot)
	if t.word(off+sGen).Load() != b.Generation {
		return nil
	}
	var key [api.BeatKeySize]byte
	for i := 0; i < api.BeatKeySize; i += 8 {
		binary.LittleEndian.PutUint64(key[i:], t.word(off+sKey+i).Load())
	}
	if t.word(off+sGen).Load() != b.Generation || !api.VerifyBeat(pkt, key[:]) {
		return nil
	}
	seq := t.word(off + sSeq)
	for {
		last := seq.Load()
		if b.Seq <= last {
			return nil // a replay, or a beat overtaken by a later one
		}
		if seq.CompareAndSwap(last, b.Seq) {
			break
		}
	}
	t.word(off + sSeen).Store(uint64(now.UnixNano()))
	t.word(off + sCount).Add(1)
	t.word(hAnswered).Add(1)
	return api.BeatReply{
		Slot: b.Slot, Generation: b.Generation, Seq: b.Seq, Sent: b.Sent,
		Answered: now.UnixNano(), Period: int64(t.word(hPeriod).Load()),
	}.Seal(nil, key[:])
}
