package archive

import "golang.org/x/sys/unix"

// IsWhiteout tells whether a file of a layer directory, by its mode and
// device number (unix.Stat_t's Mode and Rdev), is an overlayfs whiteout: a
// 0/0 character device, the form Apply gives a ".wh." entry and Diff reads
// back as one.
func IsWhiteout(mode uint32, rdev uint64) bool {
	return mode&unix.S_IFMT == unix.S_IFCHR && rdev == 0
}

// IsOpaque tells whether dir, a directory of a layer directory, is marked
// opaque (it hides what the layers below have there), as Apply marks it
// for a ".wh..wh..opq" entry.
func IsOpaque(dir string) bool {
	var b [1]byte
	n, err := unix.Lgetxattr(dir, opaqueXattr, b[:])
	return err == nil && n == 1 && b[0] == 'y'
}
