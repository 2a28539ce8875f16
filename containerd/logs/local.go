package logs

import (
	"encoding/binary"
	"time"
)

// The local driver's record framing (documented in docs/engine.md):
//
//	uint32 big-endian N | N bytes of payload | uint32 big-endian N
//	payload: 1 byte stream (1 stdout, 2 stderr) | int64 big-endian unix
//	         nanoseconds | the line's bytes
//
// The trailing length lets a reader check a frame and walk the file
// backwards, as Docker's protobuf-framed local format does.
const (
	localHeader  = 4
	localMeta    = 1 + 8
	maxLocalSize = 1 << 20 // a frame longer than this is corruption
)

// encodeLocal frames one record.
func encodeLocal(e Entry) []byte {
	n := localMeta + len(e.Log)
	b := make([]byte, localHeader+n+localHeader)
	binary.BigEndian.PutUint32(b, uint32(n))
	b[localHeader] = 1
	if e.Stream == "stderr" {
		b[localHeader] = 2
	}
	binary.BigEndian.PutUint64(b[localHeader+1:], uint64(e.Time.UnixNano()))
	copy(b[localHeader+localMeta:], e.Log)
	binary.BigEndian.PutUint32(b[localHeader+n:], uint32(n))
	return b
}

// splitLocal takes the first whole frame of buf: its record, its length and
// whether it is a good record; n is 0 while the frame is incomplete. A bad
// frame (a torn write the writer could not cut back) ends the readable part:
// n is len(buf) and ok false.
func splitLocal(buf []byte) (e Entry, n int, ok bool) {
	if len(buf) < localHeader {
		return Entry{}, 0, false
	}
	size := int(binary.BigEndian.Uint32(buf))
	if size < localMeta || size > maxLocalSize {
		return Entry{}, len(buf), false
	}
	total := localHeader + size + localHeader
	if len(buf) < total {
		return Entry{}, 0, false
	}
	if int(binary.BigEndian.Uint32(buf[localHeader+size:])) != size {
		return Entry{}, len(buf), false
	}
	p := buf[localHeader : localHeader+size]
	e.Stream = "stdout"
	if p[0] == 2 {
		e.Stream = "stderr"
	}
	e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(p[1:]))).UTC()
	e.Log = string(p[localMeta:])
	return e, total, true
}
