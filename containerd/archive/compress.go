package archive

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
)

// Compression is the compression of a layer stream.
type Compression int

// The compressions DetectCompression recognises. Only None and Gzip can be read.
const (
	Uncompressed Compression = iota
	Gzip
	Zstd
	Bzip2
	Xz
)

// String names the compression.
func (c Compression) String() string {
	names := [...]string{"uncompressed", "gzip", "zstd", "bzip2", "xz"}
	if c < 0 || int(c) >= len(names) {
		return "unknown"
	}
	return names[c]
}

// DetectCompression names the compression of a stream from its first bytes.
func DetectCompression(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case bytes.HasPrefix(head, []byte("BZh")):
		return Bzip2
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return Xz
	}
	return Uncompressed
}

// Decompress returns the uncompressed bytes of r, which may be a plain or a
// gzip stream. Other compressions are refused with ErrInvalid. Close the
// result to release the decompressor (it does not close r).
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("archive: read: %w", err)
	}
	switch c := DetectCompression(head); c {
	case Uncompressed:
		return io.NopCloser(br), nil
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrInvalid, err)
		}
		// A layer is one gzip member; trailing members would be surprising but are harmless.
		return zr, nil
	default:
		return nil, fmt.Errorf("%w: %s compressed archives are not supported", ErrInvalid, c)
	}
}
