package build

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// statFunc reports whether path exists in the image being built, and
// whether it is a directory.
type statFunc func(p string) (exists, isDir bool, err error)

// planCopy lays out a COPY or ADD of srcs (already matched in the context)
// to dest, an absolute path in the image (a trailing "/" says it is a
// directory), as Docker does: a directory source copies its content, a file
// lands at dest or, when dest is a directory, under its own name; several
// sources need a directory destination. unpack says ADD's archives are
// unpacked.
func (c *buildContext) planCopy(srcs []source, dest string, many bool, unpack bool, stat statFunc) (*copyPlan, error) {
	dirDest := strings.HasSuffix(dest, "/")
	dest = path.Clean(dest)
	if many && !dirDest {
		return nil, errors.New("When using COPY with more than one source file, the destination must be a directory and end with a /")
	}
	exists, isDir, err := stat(dest)
	if err != nil {
		return nil, err
	}
	if exists && !isDir && (dirDest || many) {
		return nil, fmt.Errorf("cannot copy to %s: it is not a directory", dest)
	}
	// The directory the sources go into, and a file's own name there.
	target, fileName := dest, ""
	if len(srcs) == 1 && !srcs[0].fi.IsDir() && !dirDest && !(exists && isDir) &&
		!(unpack && c.isArchive(srcs[0].rel)) {
		target, fileName = path.Dir(dest), path.Base(dest)
	}
	point, missing, err := existingAncestor(target, stat)
	if err != nil {
		return nil, err
	}
	p := &copyPlan{point: point, missing: missing}
	base := strings.TrimPrefix(strings.TrimPrefix(target, point), "/")
	seen := map[string]bool{}
	add := func(e planEntry) {
		if !seen[e.name] {
			seen[e.name] = true
			p.entries = append(p.entries, e)
		}
	}
	for _, s := range srcs {
		switch {
		case s.fi.IsDir():
			for _, n := range c.under(s.rel) {
				rel := strings.TrimPrefix(strings.TrimPrefix(n, s.rel), "/")
				add(planEntry{name: path.Join(base, rel), rel: n, fi: c.files[n]})
			}
		case unpack && c.isArchive(s.rel):
			add(planEntry{name: base, rel: s.rel, fi: s.fi, unTar: true})
		default:
			name := fileName
			if name == "" {
				name = path.Base(s.rel)
			}
			add(planEntry{name: path.Join(base, name), rel: s.rel, fi: s.fi})
		}
	}
	return p, nil
}

// existingAncestor returns the deepest existing directory at or above dir
// and the directories to make below it, outermost first, relative to it.
func existingAncestor(dir string, stat statFunc) (string, []string, error) {
	var missing []string
	for d := dir; ; d = path.Dir(d) {
		exists, isDir, err := stat(d)
		if err != nil {
			return "", nil, err
		}
		if exists {
			if !isDir {
				return "", nil, fmt.Errorf("cannot copy to %s: %s is not a directory", dir, d)
			}
			for i, j := 0, len(missing)-1; i < j; i, j = i+1, j-1 {
				missing[i], missing[j] = missing[j], missing[i]
			}
			for i := range missing {
				missing[i] = strings.TrimPrefix(strings.TrimPrefix(missing[i], d), "/")
			}
			return d, missing, nil
		}
		if d == "/" {
			return "", nil, errors.New("the image has no root directory")
		}
		missing = append(missing, d)
	}
}
