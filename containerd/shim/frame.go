package shim

import (
	"encoding/binary"
	"io"
)

// Stream numbers of Docker's multiplexed (stdcopy) stream.
const (
	Stdout byte = 1
	Stderr byte = 2
)

// Frame encodes one stdcopy frame: [stream,0,0,0,len BE32] followed by b.
// The shim's attach stream, exec output and the daemon's logs and attach
// responses all speak this framing, so it is written in one place.
func Frame(stream byte, b []byte) []byte {
	f := make([]byte, 8+len(b))
	f[0] = stream
	binary.BigEndian.PutUint32(f[4:], uint32(len(b)))
	copy(f[8:], b)
	return f
}

// WriteFrame writes one frame with a single Write, so that a frame is never
// split between writers sharing w.
func WriteFrame(w io.Writer, stream byte, b []byte) error {
	_, err := w.Write(Frame(stream, b))
	return err
}
