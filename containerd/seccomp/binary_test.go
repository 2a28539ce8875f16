package seccomp

import (
	"errors"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBinaryRoundTrip(t *testing.T) {
	p, err := Compile(DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	p2 := *p
	p2.Flags = unix.SECCOMP_FILTER_FLAG_LOG
	for _, want := range []*Program{p, &p2} {
		b, err := want.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Program
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("binary round trip changed the program (flags %#x -> %#x, %d -> %d instructions)", want.Flags, got.Flags, len(want.Filter), len(got.Filter))
		}
	}
}

func TestBinaryRefusesMalformed(t *testing.T) {
	p, err := Compile(DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	good, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	n := len(p.Filter)
	lastJump := -1
	for i, in := range p.Filter {
		if in.Code&0x07 == unix.BPF_JMP && in.Code&0xf0 != unix.BPF_JA {
			lastJump = i
		}
	}
	if lastJump < 0 || lastJump+1+0xff < n {
		t.Fatalf("no conditional jump within 255 instructions of the end (last at %d of %d)", lastJump, n)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	ins := func(i int) int { return binaryHeader + 8*i }
	cases := map[string][]byte{
		"empty":          nil,
		"bad magic":      edit(func(b []byte) []byte { b[0] = 'S'; return b }),
		"truncated":      good[:len(good)-3],
		"one too many":   edit(func(b []byte) []byte { return append(b, make([]byte, 8)...) }),
		"count too high": edit(func(b []byte) []byte { b[13] = 0x20; return b }), // 8192+
		"unknown flag":   edit(func(b []byte) []byte { b[8] = 0x80; return b }),
		// The last instruction made a load instead of a return.
		"no return": edit(func(b []byte) []byte {
			b[ins(n-1)], b[ins(n-1)+1] = unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0
			return b
		}),
		// The last conditional jump sent past the end.
		"jump out": edit(func(b []byte) []byte { b[ins(lastJump)+2] = 0xff; return b }),
	}
	for name, b := range cases {
		var q Program
		if err := q.UnmarshalBinary(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := (&Program{}).MarshalBinary(); !errors.Is(err, ErrInvalid) {
		t.Errorf("an empty program was encoded: %v", err)
	}
}
