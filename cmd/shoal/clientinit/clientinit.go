// Package clientinit fits the Go runtime to a client process before most
// packages' init functions run: it imports nothing of the project and
// little of the standard library, so it initializes among the first (22nd
// of 104 packages in `shoal version`). A client command is short-lived and
// its start is most of its cost.
//
// One processor. A client makes requests and copies streams; with two
// processors each goroutine made runnable woke another thread (session 21,
// perf stat -r 30 of `run --rm`: the client's CPU 17.5-19.0 ms with one
// processor against 20.6-22.6 with two). It is set here rather than in
// main because of when: shrinking to one processor frees the other's
// allocation cache, and when the main goroutine had run on it (package
// initialization blocks in system calls and resumes on whichever
// processor is free) its spans went back to the heap's central lists,
// each list's first push faulting in a block of its own. perf stat of
// `shoal version` without a daemon: 380 or 520 page faults depending on
// the run (about 3 ms of CPU apart) with GOMAXPROCS(1) in main, 370 in
// every run with it set here or from the environment.
//
// The heap and the code mapped ahead, where page faults are slow (one is
// timed first: faultCost). On some virtual machines a page fault traps to
// the hypervisor and costs about 24 µs, while
// madvise(MADV_POPULATE_WRITE) maps a page in under 1 µs (measured here:
// 2,000 pages touched one by one against one madvise), and a fault on the
// binary's file maps 16 pages (fault-around) in about 31 µs where
// MADV_POPULATE_READ maps 2,048 in 0.2 ms. Of the faults of `shoal
// version` after this package's init function, without it: 70 of its
// heap, 43 of its code (.text) and 25 of its function tables
// (.gopclntab). Not populated: the rest of the read-only data, which
// holds the embedded engine (30 MB that a command never reads).
package clientinit

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// heapAhead is how much of the heap's mapping, from its newest allocation
// up, is populated: about what a command allocates in its lifetime.
const heapAhead = 1 << 20

// MADV_POPULATE_READ and _WRITE (Linux 5.14): fault the range in, as a
// read or a write to each page would. An older kernel answers EINVAL and
// nothing happens.
const (
	madvPopulateRead  = 22
	madvPopulateWrite = 23
)

const pageSize = 4096

var probe *[16]byte

func init() {
	role := ""
	if len(os.Args) > 1 {
		role = os.Args[1]
	}
	switch role {
	case "init", "shim":
		// A container's init lives in the container's memory cgroup and
		// must not take more than it uses; the shim is set up by whoever
		// starts it.
		return
	case "runtime":
		// `shoal runtime` keeps the processors it has (measured: one
		// processor saved it nothing beyond the noise).
	default:
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(1)
		}
	}
	if faultCost() < slowFault {
		return
	}
	probe = new([16]byte) // escapes: on the heap, at its current top
	populateFrom(uintptr(unsafe.Pointer(probe)), heapAhead)
	probe = nil
	populateSections(".text", ".gopclntab")
}

// slowFault is the cost of a page fault above which mapping ahead pays. A
// fault took about 24 us on the VMs of sessions 13-24, where mapping ahead
// saved about 3 ms of a command's CPU; on session 25's (KVM) it took 1-3
// us, and mapping ahead cost more than the faults it saved: `shoal
// version` in a loop of 300, five rounds alternated, 5.29 ms a command
// without it against 5.63 with it.
const slowFault = 8 * time.Microsecond

// faultCost times one page fault, a write to a fresh anonymous page: 0
// when no page could be mapped for it.
func faultCost() time.Duration {
	b, err := syscall.Mmap(-1, 0, pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return 0
	}
	defer syscall.Munmap(b)
	start := time.Now()
	b[0] = 1
	return time.Since(start)
}

// populateFrom populates up to size bytes from addr on, within the mapping
// that holds addr (the Go runtime maps its heap in chunks of 4 MB and more,
// and the rest of its reservation is PROT_NONE: populating that would
// fail). Errors are ignored: it only saves time.
func populateFrom(addr, size uintptr) {
	_, end, ok := mappingOf(addr)
	if !ok {
		return
	}
	to := addr + size
	if to > end {
		to = end
	}
	madvise(addr, to, madvPopulateWrite)
}

// madvise advises the pages of [from, to).
func madvise(from, to, advice uintptr) {
	from &^= pageSize - 1
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, from, to-from, advice)
}

// mappingOf reads /proc/self/maps for the mapping that holds addr, a few
// kB at a time (a buffer on the stack that does not make it grow).
func mappingOf(addr uintptr) (start, end uintptr, ok bool) {
	fd, err := syscall.Open("/proc/self/maps", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, false
	}
	defer syscall.Close(fd)
	var buf [2048]byte
	kept := 0 // an unfinished line carried to the front
	for {
		n, err := syscall.Read(fd, buf[kept:])
		if err != nil || n <= 0 {
			return findMapping(buf[:kept], addr)
		}
		n += kept
		last := bytes.LastIndexByte(buf[:n], '\n')
		if last < 0 { // a line longer than the buffer: a path; drop it
			kept = 0
			continue
		}
		if start, end, ok := findMapping(buf[:last], addr); ok {
			return start, end, true
		}
		kept = copy(buf[:], buf[last+1:n])
	}
}

// findMapping finds, in the text of /proc/PID/maps, the line whose range
// ("start-end perms ...", hexadecimal) holds addr.
func findMapping(maps []byte, addr uintptr) (start, end uintptr, ok bool) {
	for _, line := range bytes.Split(maps, []byte("\n")) {
		rng, _, _ := bytes.Cut(line, []byte(" "))
		s, e, found := bytes.Cut(rng, []byte("-"))
		if !found {
			continue
		}
		s64, err1 := strconv.ParseUint(string(s), 16, 64)
		e64, err2 := strconv.ParseUint(string(e), 16, 64)
		if err1 == nil && err2 == nil && uintptr(s64) <= addr && addr < uintptr(e64) {
			return uintptr(s64), uintptr(e64), true
		}
	}
	return 0, 0, false
}

// populateSections maps in the named sections of this program's file, read
// from its ELF section headers (a static, non-relocatable executable: the
// addresses there are where they are mapped).
func populateSections(names ...string) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return
	}
	defer f.Close()
	for _, s := range elfSections(f) {
		for _, n := range names {
			if s.name == n {
				madvise(s.addr, s.addr+s.size, madvPopulateRead)
			}
		}
	}
}

type section struct {
	name       string
	addr, size uintptr
}

// elfSections reads the allocated sections of the 64-bit little-endian
// ELF executable (ET_EXEC) f; nothing for any other file.
func elfSections(f io.ReaderAt) []section {
	le := binary.LittleEndian
	var eh [64]byte
	if _, err := f.ReadAt(eh[:], 0); err != nil || string(eh[:4]) != "\x7fELF" || eh[4] != 2 || eh[5] != 1 || le.Uint16(eh[16:]) != 2 {
		return nil
	}
	shoff, shentsize, shnum, shstrndx := le.Uint64(eh[40:]), int(le.Uint16(eh[58:])), int(le.Uint16(eh[60:])), int(le.Uint16(eh[62:]))
	if shentsize < 64 || shnum == 0 || shnum > 256 || shstrndx >= shnum {
		return nil
	}
	sh := make([]byte, shnum*shentsize)
	if _, err := f.ReadAt(sh, int64(shoff)); err != nil {
		return nil
	}
	hdr := func(i int) []byte { return sh[i*shentsize:] }
	strs := hdr(shstrndx)
	if le.Uint64(strs[32:]) > 1<<20 {
		return nil
	}
	names := make([]byte, le.Uint64(strs[32:]))
	if _, err := f.ReadAt(names, int64(le.Uint64(strs[24:]))); err != nil {
		return nil
	}
	var out []section
	for i := 0; i < shnum; i++ {
		h := hdr(i)
		const shfAlloc = 2
		name, addr, size := int(le.Uint32(h)), uintptr(le.Uint64(h[16:])), uintptr(le.Uint64(h[32:]))
		if le.Uint64(h[8:])&shfAlloc == 0 || name >= len(names) {
			continue
		}
		end := bytes.IndexByte(names[name:], 0)
		if end < 0 {
			continue
		}
		out = append(out, section{string(names[name : name+end]), addr, size})
	}
	return out
}
