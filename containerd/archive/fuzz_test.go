package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzApply feeds Apply two archives per input: raw bytes (seeded with
// hostile tars, mutated at the byte level, which mostly exercises the tar
// and gzip readers) and a tar built from a script of entries (mutated at the
// name/link level, which is where escapes hide: the checksum of a mutated
// raw header would rarely be valid). It checks that nothing is written
// beside the root, that Apply ends, and never panics.
//
// Script lines: "<type> <name> [<link or body>]", type one of
// f (file) d (dir) l (symlink) h (hard link) c (char 1:3) p (fifo).
func FuzzApply(f *testing.F) {
	scripts := []string{
		"f ../outside/pwned x",
		"f /abs x",
		"l evil ../outside\nf evil/pwned x",
		"d outside\nl evil /outside\nf evil/pwned x",
		"l evil /\nf evil/outside/pwned x",
		"h pw /etc/passwd",
		"h pw ../outside/sentinel",
		"l o ../outside\nh pw o/sentinel",
		"c mem",
		"p fifo",
		"d d\nf d/.wh..wh..opq\nf d/.wh.x\nf d/f y",
		"f f 1\nl f ../outside/sentinel\nf f 2",
		"l a .\nl a/b ..\nf a/b/c x",
		"d a\nl a/up ../..\nf a/up/outside/pwned x",
		"f .wh.. x\nf ./.wh...\nf a/.wh..wh..opq",
	}
	raws := [][]byte{
		mkTar(f, ent{name: "a/b/c", body: "data", xattrs: map[string]string{"user.x": "y"}}),
		mkTar(f, ent{name: "../outside/pwned", body: "x"}),
		mkTar(f, ent{name: "evil", typ: tar.TypeSymlink, link: "../outside"}, ent{name: "evil/pwned", body: "x"}),
	}
	for i, s := range scripts {
		raw := raws[i%len(raws)]
		f.Add(raw, s)
		f.Add(raw[:len(raw)/2], s)
		f.Add(gz(f, raw), s)
	}
	f.Fuzz(func(t *testing.T, raw []byte, script string) {
		for _, in := range [][]byte{raw, scriptTar(script)} {
			s := newSandbox(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := Apply(ctx, s.root, bytes.NewReader(in), ApplyOptions{})
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Apply of %d bytes took too long", len(in))
			}
			s.intact(t)
		}
	})
}

// scriptTar builds a tar from a FuzzApply script; lines it cannot encode are skipped.
func scriptTar(script string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, line := range strings.Split(script, "\n") {
		fields := strings.SplitN(line, " ", 3)
		if len(fields) < 2 {
			continue
		}
		h := &tar.Header{Name: fields[1], Mode: 0o755, ModTime: time.Unix(1, 0)}
		arg := ""
		if len(fields) == 3 {
			arg = fields[2]
		}
		switch fields[0] {
		case "f":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(arg))
		case "d":
			h.Typeflag = tar.TypeDir
		case "l":
			h.Typeflag, h.Linkname = tar.TypeSymlink, arg
		case "h":
			h.Typeflag, h.Linkname = tar.TypeLink, arg
		case "c":
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
		case "p":
			h.Typeflag = tar.TypeFifo
		default:
			continue
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(arg))
		}
	}
	tw.Close()
	return buf.Bytes()
}
