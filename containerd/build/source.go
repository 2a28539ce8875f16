package build

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/archive"
)

// buildContext is the unpacked build context: a private directory of the
// daemon's that only the client's tar wrote. Its entries are indexed once,
// without following any symlink, and sources are looked up in that index:
// a path through a symlink is not in it, so COPY never reads outside the
// context, whatever the links in it point at.
type buildContext struct {
	dir        string
	files      map[string]fs.FileInfo // "a/b" -> its Lstat, for every kept entry
	names      []string               // the same, sorted
	dockerfile fs.FileInfo            // the Dockerfile's Lstat, excluded or not; nil if absent
}

// openContext indexes dir, leaving out what .dockerignore excludes. The
// Dockerfile is read whether excluded or not, but as dockerd's builder
// does, an excluded Dockerfile or .dockerignore is no source of COPY or
// ADD (docker-py's test_build_with_dockerignore: `ADD . /test` copied both).
func openContext(dir, dockerfile string) (*buildContext, error) {
	var pm *patternmatcher.PatternMatcher
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		pats, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
		if pm, err = patternmatcher.New(pats); err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	}
	c := &buildContext{dir: dir, files: map[string]fs.FileInfo{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if rel == dockerfile {
			if c.dockerfile, err = d.Info(); err != nil {
				return err
			}
		}
		if pm != nil {
			skip, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return fmt.Errorf(".dockerignore: %w", err)
			}
			// A directory left out may still have entries brought back by
			// an exception ("!dir/keep"): walk it unless nothing can be.
			if skip {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		c.files[rel] = fi
		c.names = append(c.names, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	sort.Strings(c.names)
	return c, nil
}

// source is one COPY or ADD source matched in the context: rel is "" for
// the context's root.
type source struct {
	rel string
	fi  fs.FileInfo
}

// match finds the sources of one COPY/ADD argument: a path (its entry, or
// the root for "." or "/") or a pattern with wildcards (every entry whose
// path matches, as filepath.Match does).
func (c *buildContext) match(arg string) ([]source, error) {
	clean := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(arg)), "/")
	if clean == "" {
		fi, err := os.Lstat(c.dir)
		if err != nil {
			return nil, err
		}
		return []source{{rel: "", fi: fi}}, nil
	}
	if !strings.ContainsAny(clean, "*?[") {
		fi, ok := c.files[clean]
		if !ok {
			return nil, fmt.Errorf("COPY failed: file not found in build context or excluded by .dockerignore: stat %s: file does not exist", arg)
		}
		return []source{{rel: clean, fi: fi}}, nil
	}
	if _, err := path.Match(clean, ""); err != nil {
		return nil, fmt.Errorf("COPY failed: bad pattern %q: %w", arg, err)
	}
	var out []source
	for _, n := range c.names {
		if ok, _ := path.Match(clean, n); ok {
			out = append(out, source{rel: n, fi: c.files[n]})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("COPY failed: no source files were specified (%s matches nothing in the build context)", arg)
	}
	return out, nil
}

// under lists the kept entries below directory rel ("" for the root), sorted.
func (c *buildContext) under(rel string) []string {
	var out []string
	prefix := rel + "/"
	for _, n := range c.names {
		if rel == "" || strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// owner is a COPY --chown: numeric ids, resolved by the caller from names.
type owner struct {
	uid, gid int
}

// copyPlan is what a COPY or ADD from the context writes: entries named
// relative to the destination's deepest existing directory (point), the
// directories missing up to the destination first.
type copyPlan struct {
	point   string   // existing directory in the image the tar unpacks into
	missing []string // directories to create, relative to point, outermost first
	entries []planEntry
}

type planEntry struct {
	name  string // in the tar, relative to point
	rel   string // in the context ("" for none: a directory to make)
	fi    fs.FileInfo
	unTar bool // ADD of a local archive: its content is unpacked here
}

// writeTar streams the plan from the context as a tar, each entry owned by
// own, with mode chmod (when not 0) for files and directories copied.
func (c *buildContext) writeTar(ctx context.Context, p *copyPlan, own owner, chmod fs.FileMode, w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, d := range p.missing {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Uid: own.uid, Gid: own.gid}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	for _, e := range p.entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.unTar {
			if err := c.copyArchive(tw, e, own); err != nil {
				return err
			}
			continue
		}
		if err := c.writeEntry(tw, e, own, chmod); err != nil {
			return err
		}
	}
	return tw.Close()
}

func (c *buildContext) writeEntry(tw *tar.Writer, e planEntry, own owner, chmod fs.FileMode) error {
	link := ""
	if e.fi.Mode()&fs.ModeSymlink != 0 {
		l, err := os.Readlink(filepath.Join(c.dir, e.rel))
		if err != nil {
			return fmt.Errorf("COPY %s: %w", e.rel, err)
		}
		link = l
	}
	hdr, err := tar.FileInfoHeader(e.fi, link)
	if err != nil {
		return fmt.Errorf("COPY %s: %w", e.rel, err)
	}
	hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = e.name, own.uid, own.gid, "", ""
	if e.fi.IsDir() {
		hdr.Name += "/"
	}
	if chmod != 0 && hdr.Typeflag != tar.TypeSymlink {
		hdr.Mode = int64(chmod)
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !e.fi.Mode().IsRegular() {
		return nil
	}
	fd, err := unix.Open(filepath.Join(c.dir, e.rel), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("COPY %s: %w", e.rel, err)
	}
	f := os.NewFile(uintptr(fd), e.rel)
	defer f.Close()
	if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
		return fmt.Errorf("COPY %s: %w", e.rel, err)
	}
	return nil
}

// copyArchive writes the entries of a local tar archive (ADD), renamed under
// e.name; archive.Apply refuses what would leave the destination.
func (c *buildContext) copyArchive(tw *tar.Writer, e planEntry, own owner) error {
	f, err := os.Open(filepath.Join(c.dir, e.rel))
	if err != nil {
		return fmt.Errorf("ADD %s: %w", e.rel, err)
	}
	defer f.Close()
	rc, err := archive.Decompress(f)
	if err != nil {
		return fmt.Errorf("ADD %s: %w", e.rel, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ADD %s: %w", e.rel, err)
		}
		name, err := archive.CleanName(hdr.Name)
		if err != nil {
			return fmt.Errorf("ADD %s: %w", e.rel, err)
		}
		if name == "" {
			continue
		}
		hdr.Name = path.Join(e.name, name)
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if hdr.Typeflag == tar.TypeLink {
			ln, err := archive.CleanName(hdr.Linkname)
			if err != nil {
				return fmt.Errorf("ADD %s: %w", e.rel, err)
			}
			hdr.Linkname = path.Join(e.name, ln)
		}
		if own != (owner{}) {
			hdr.Uid, hdr.Gid = own.uid, own.gid
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("ADD %s: %w", e.rel, err)
		}
	}
}

// isArchive tells whether the context file rel is a tar archive (plain or
// compressed), which ADD unpacks.
func (c *buildContext) isArchive(rel string) bool {
	f, err := os.Open(filepath.Join(c.dir, rel))
	if err != nil {
		return false
	}
	defer f.Close()
	rc, err := archive.Decompress(f)
	if err != nil {
		return false
	}
	defer rc.Close()
	_, err = tar.NewReader(rc).Next()
	return err == nil
}

// digest is the cache key of a plan's content: names, modes, link targets
// and file contents, as the classic builder's "file:<sha256>".
func (c *buildContext) digest(p *copyPlan) (string, error) {
	h := sha256.New()
	for _, d := range p.missing {
		fmt.Fprintf(h, "mkdir %s\n", d)
	}
	for _, e := range p.entries {
		fmt.Fprintf(h, "%s %s %o %v\n", e.name, e.rel, e.fi.Mode(), e.unTar)
		if e.fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(filepath.Join(c.dir, e.rel))
			fmt.Fprintf(h, "-> %s\n", l)
		}
		if !e.fi.Mode().IsRegular() {
			continue
		}
		fd, err := unix.Open(filepath.Join(c.dir, e.rel), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("COPY %s: %w", e.rel, err)
		}
		f := os.NewFile(uintptr(fd), e.rel)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("COPY %s: %w", e.rel, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
