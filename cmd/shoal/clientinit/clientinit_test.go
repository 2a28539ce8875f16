package clientinit

import (
	"bytes"
	"debug/elf"
	"os"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident counts the pages of b that mincore reports in memory.
func resident(t *testing.T, b []byte) int {
	t.Helper()
	vec := make([]byte, (len(b)+pageSize-1)/pageSize)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

func TestPopulateFromStaysInItsMapping(t *testing.T) {
	const pages = 64
	b, err := unix.Mmap(-1, 0, pages*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	// The mapping's last 16 pages become another mapping, PROT_NONE: the
	// heap's reservation beyond what the runtime mapped.
	if err := unix.Mprotect(b[48*pageSize:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	if n := resident(t, b[:48*pageSize]); n != 0 {
		t.Fatalf("%d pages resident before", n)
	}
	addr := uintptr(unsafe.Pointer(&b[8*pageSize+100]))
	populateFrom(addr, 100*pageSize)
	if n := resident(t, b[:8*pageSize]); n != 0 {
		t.Errorf("%d pages below the address populated", n)
	}
	if n := resident(t, b[8*pageSize:48*pageSize]); n != 40 {
		t.Errorf("%d of the 40 pages from the address to the mapping's end populated", n)
	}

	c, err := unix.Mmap(-1, 0, pages*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(c)
	populateFrom(uintptr(unsafe.Pointer(&c[0])), 10*pageSize)
	if n := resident(t, c); n != 10 {
		t.Errorf("%d pages populated, want the 10 asked for", n)
	}
}

func TestFindMapping(t *testing.T) {
	maps := []byte("00400000-004ac000 r-xp 00000000 fe:00 9978722      /tmp/pft\n" +
		"3f2502400000-3f2502800000 rw-p 00000000 00:00 0 \n" +
		"garbage line\n" +
		"7ffdd1d83000-7ffdd1da4000 rw-p 00000000 00:00 0                          [stack]")
	for _, c := range []struct {
		addr       uintptr
		start, end uintptr
		ok         bool
	}{
		{0x3f2502622000, 0x3f2502400000, 0x3f2502800000, true},
		{0x3f2502800000, 0, 0, false}, // the end is outside
		{0x7ffdd1d83000, 0x7ffdd1d83000, 0x7ffdd1da4000, true},
		{0x500000, 0, 0, false},
	} {
		s, e, ok := findMapping(maps, c.addr)
		if s != c.start || e != c.end || ok != c.ok {
			t.Errorf("findMapping(%#x) = %#x, %#x, %v; want %#x, %#x, %v", c.addr, s, e, ok, c.start, c.end, c.ok)
		}
	}
}

func TestMappingOfOwnStack(t *testing.T) {
	var x [64]byte
	addr := uintptr(unsafe.Pointer(&x[0]))
	s, e, ok := mappingOf(addr)
	if !ok || addr < s || addr >= e {
		t.Fatalf("mappingOf(%#x) = %#x, %#x, %v", addr, s, e, ok)
	}
}

// TestElfSections reads this test binary's sections as debug/elf does.
func TestElfSections(t *testing.T) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ef, err := elf.NewFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if ef.Type != elf.ET_EXEC {
		t.Skipf("the test binary is %v, not ET_EXEC", ef.Type)
	}
	var want []section
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_ALLOC != 0 {
			want = append(want, section{s.Name, uintptr(s.Addr), uintptr(s.Size)})
		}
	}
	got := elfSections(f)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("elfSections:\n%v\nwant\n%v", got, want)
	}
	var text bool
	for _, s := range got {
		text = text || s.name == ".text"
	}
	if !text {
		t.Fatalf("no .text in %v", got)
	}
}

func TestElfSectionsRefusesOtherFiles(t *testing.T) {
	exe, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	pie := bytes.Clone(exe[:4096])
	pie[16] = 3 // ET_DYN: addresses would be offsets
	for name, b := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("#!/bin/sh\necho hi\n"),
		"pie":       pie,
		"truncated": exe[:100],
		"huge shnum": func() []byte {
			b := bytes.Clone(exe[:4096])
			b[60], b[61] = 0xff, 0xff
			return b
		}(),
	} {
		if s := elfSections(bytes.NewReader(b)); s != nil {
			t.Errorf("%s: %v", name, s)
		}
	}
}

// TestFaultCost: the probe that decides whether to map ahead times a real
// fault: a positive duration, far below a second.
func TestFaultCost(t *testing.T) {
	for range 3 {
		if d := faultCost(); d <= 0 || d > time.Second {
			t.Fatalf("faultCost() = %v, want a positive duration under a second", d)
		}
	}
}
