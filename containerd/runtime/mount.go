package runtime

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/inroot"
)

type mountFlag struct {
	clear bool
	flag  uintptr
}

var mountFlags = map[string]mountFlag{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"suid": {true, unix.MS_NOSUID}, "nosuid": {false, unix.MS_NOSUID},
	"dev": {true, unix.MS_NODEV}, "nodev": {false, unix.MS_NODEV},
	"exec": {true, unix.MS_NOEXEC}, "noexec": {false, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"dirsync": {false, unix.MS_DIRSYNC}, "remount": {false, unix.MS_REMOUNT},
	"mand": {false, unix.MS_MANDLOCK}, "nomand": {true, unix.MS_MANDLOCK},
	"atime": {true, unix.MS_NOATIME}, "noatime": {false, unix.MS_NOATIME},
	"diratime": {true, unix.MS_NODIRATIME}, "nodiratime": {false, unix.MS_NODIRATIME},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"silent": {false, unix.MS_SILENT}, "loud": {true, unix.MS_SILENT},
}

var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits OCI mount options into mount(2) flags,
// propagation flags and the filesystem's data string.
func parseMountOptions(opts []string) (flags uintptr, prop []uintptr, data string) {
	var d []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			prop = append(prop, p)
			continue
		}
		d = append(d, o)
	}
	return flags, prop, strings.Join(d, ",")
}

// mountOn mounts source on the file open (O_PATH) as fd, inside the
// rootfs: the mount lands exactly where dest was resolved, whatever happens
// to the name meanwhile (CVE-2021-30465).
func mountOn(fd int, dest, source, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, inroot.FdPath(fd, ""), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s): %w", source, dest, fstype, err)
	}
	return nil
}

// mountAt resolves dest inside the rootfs (symlinks followed, never out of
// it) and mounts source there.
func mountAt(root *inroot.Root, source, dest, fstype string, flags uintptr, data string) error {
	fd, err := root.Open(dest, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dest, err)
	}
	defer unix.Close(fd)
	return mountOn(fd, dest, source, fstype, flags, data)
}

// mountOne performs one entry of mounts[]: target created inside the rootfs
// (directory, or empty file for a bind of a file), then mounted, then
// remounted for flags a bind ignores, then given its propagation.
func mountOne(root *inroot.Root, cfg *initConfig, m specs.Mount) error {
	dest := m.Destination
	if !filepath.IsAbs(dest) {
		return fmt.Errorf("mount destination %q is not absolute", dest)
	}
	flags, prop, data := parseMountOptions(m.Options)
	typ := m.Type
	if typ == "bind" {
		if flags&unix.MS_BIND == 0 {
			flags |= unix.MS_BIND
		}
	}
	source := m.Source
	bind := flags&unix.MS_BIND != 0
	if bind && !filepath.IsAbs(source) {
		source = filepath.Join(cfg.Bundle, source)
	}
	isDir := true
	if bind {
		fi, err := os.Stat(source)
		if err != nil {
			return fmt.Errorf("mount %s: source: %w", dest, err)
		}
		isDir = fi.IsDir()
	}
	// proc and sysfs go exactly where their names say: a symlink anywhere
	// on the way could put them over a directory the container then
	// trusts as /proc (CVE-2019-19921), so it is refused, as runc does.
	ordinary := !bind && (typ == "proc" || typ == "sysfs")
	fd, err := makeTarget(root, dest, isDir, ordinary)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dest, err)
	}
	defer unix.Close(fd)
	if typ == "cgroup" || typ == "cgroup2" {
		return mountCgroup(root, fd, cfg, dest, flags)
	}
	if typ == "proc" && cfg.procPidNS > 0 {
		if err := mountProcFor(fd, dest, flags, data, cfg.procPidNS); err != nil {
			return err
		}
	} else if bind {
		if err := mountOn(fd, dest, source, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return err
		}
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
			if err := remountBind(root, dest, rest); err != nil {
				return err
			}
		}
	} else {
		if err := mountOn(fd, dest, source, typ, flags, data); err != nil {
			if typ == "sysfs" && errors.Is(err, unix.EPERM) {
				// No own network namespace: bind the host's /sys instead.
				if err := mountOn(fd, dest, "/sys", "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
					return err
				}
				return remountBind(root, dest, flags)
			}
			return err
		}
	}
	for _, p := range prop {
		if err := mountAt(root, "", dest, "", p, ""); err != nil {
			return err
		}
	}
	return nil
}

// procMountFlags are the mount flags mountProcFor can apply.
const procMountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY |
	unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME

// mountProcFor mounts on fd a proc filesystem of the pid namespace pidns,
// which the caller is not in (a first process's; see firstproc.go): a
// plain mount would show the caller's own. data's options (hidepid=2,
// subset=pid) are passed on as they are.
func mountProcFor(fd int, dest string, flags uintptr, data string, pidns int) error {
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("mount proc on %s: %w", dest, err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigSetString(fs, "source", "proc"); err != nil {
		return fmt.Errorf("mount proc on %s: %w", dest, err)
	}
	if err := unix.FsconfigSetFd(fs, "pidns", pidns); err != nil {
		return fmt.Errorf("mount proc on %s: pidns: %w", dest, err)
	}
	for _, o := range strings.Split(data, ",") {
		k, v, ok := strings.Cut(o, "=")
		switch {
		case o == "":
			continue
		case ok:
			err = unix.FsconfigSetString(fs, k, v)
		default:
			err = unix.FsconfigSetFlag(fs, k)
		}
		if err != nil {
			return fmt.Errorf("mount proc on %s: option %s: %w", dest, o, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return fmt.Errorf("mount proc on %s: %w", dest, err)
	}
	var attr int
	for _, a := range []struct {
		ms   uintptr
		attr int
	}{
		{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID}, {unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
		{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC}, {unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
		{unix.MS_NOATIME, unix.MOUNT_ATTR_NOATIME}, {unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
		{unix.MS_STRICTATIME, unix.MOUNT_ATTR_STRICTATIME},
	} {
		if flags&a.ms != 0 {
			attr |= a.attr
		}
	}
	m, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return fmt.Errorf("mount proc on %s: %w", dest, err)
	}
	defer unix.Close(m)
	if err := unix.MoveMount(m, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount proc on %s: %w", dest, err)
	}
	return nil
}

// remountBind applies flags (ro, nosuid...) to an existing bind mount,
// keeping the locked flags the kernel refuses to drop.
func remountBind(root *inroot.Root, dest string, flags uintptr) error {
	fd, err := root.Open(dest, unix.O_PATH)
	if err != nil {
		return fmt.Errorf("remount %s: %w", dest, err)
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err == nil {
		flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	}
	if err := unix.Mount("", inroot.FdPath(fd, ""), "", flags|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
		return fmt.Errorf("remount %s: %w", dest, err)
	}
	return nil
}

// makeTarget returns an O_PATH descriptor of the mount point dest inside
// the rootfs, creating what is missing (directories, and the last component
// as an empty file when isDir is false) relative to descriptors resolved in
// the rootfs: a symlink swapped in meanwhile (by another container sharing
// a volume) leads somewhere inside the rootfs, never out of it. With
// ordinary, dest must be a directory reached without any symlink.
func makeTarget(root *inroot.Root, dest string, isDir, ordinary bool) (int, error) {
	open := root.Open
	if ordinary {
		open = root.OpenNoSymlinks
	}
	fd, err := open(dest, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) {
		if err := createIn(root, dest, isDir); err != nil {
			return -1, err
		}
		fd, err = open(dest, unix.O_PATH)
	}
	if ordinary && errors.Is(err, unix.ELOOP) {
		return -1, fmt.Errorf("must be mounted on an ordinary directory: %s is, or is reached through, a symlink", dest)
	}
	if err != nil {
		return -1, err
	}
	if ordinary {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			unix.Close(fd)
			return -1, fmt.Errorf("must be mounted on an ordinary directory: %s is not a directory", dest)
		}
	}
	return fd, nil
}

// createIn makes dest inside the rootfs, a directory or an empty file, with
// its missing parents; one that exists already is left as it is.
func createIn(root *inroot.Root, dest string, isDir bool) error {
	pfd, base, err := parentIn(root, dest)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if isDir {
		err = unix.Mkdirat(pfd, base, 0o755)
	} else {
		var fd int
		fd, err = unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create %s: %w", dest, err)
	}
	return nil
}

// parentIn makes the parent directories of dest inside the rootfs and
// returns an O_PATH descriptor of the parent with dest's last component.
func parentIn(root *inroot.Root, dest string) (int, string, error) {
	dir, base := path.Split(inroot.Clean(dest))
	fd, _, err := root.MkdirAll(dir, 0o755)
	if err != nil {
		return -1, "", fmt.Errorf("%s: %w", dest, err)
	}
	return fd, base, nil
}

// mountCgroup gives the container a read-only view of its own cgroup: on v2
// the unified directory of the container; on v1 a tmpfs with one bind per
// hierarchy (co-mounted names become symlinks, as on the host). fd is the
// mount point, open.
func mountCgroup(root *inroot.Root, fd int, cfg *initConfig, dest string, flags uintptr) error {
	ro := flags & unix.MS_RDONLY
	base := flags &^ (unix.MS_RDONLY | unix.MS_BIND | unix.MS_REC)
	if cfg.CgroupMode == cgroups.Unified {
		src := filepath.Join(cfg.CgroupRoot, cfg.CgroupPath)
		if err := mountOn(fd, dest, src, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		return remountBind(root, dest, base|ro)
	}
	if err := mountOn(fd, dest, "tmpfs", "tmpfs", base, "mode=755"); err != nil {
		return err
	}
	// The fresh tmpfs, reopened: fd is the directory under it.
	tfd, err := root.Open(dest, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("cgroup mount: %w", err)
	}
	defer unix.Close(tfd)
	ents, err := os.ReadDir(cfg.CgroupRoot)
	if err != nil {
		return fmt.Errorf("cgroup mount: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		host := filepath.Join(cfg.CgroupRoot, name)
		dst := path.Join(dest, name)
		if e.Type()&os.ModeSymlink != 0 {
			link, err := os.Readlink(host)
			if err == nil {
				_ = unix.Symlinkat(link, tfd, name)
			}
			continue
		}
		if !e.IsDir() {
			continue
		}
		src := filepath.Join(host, cfg.CgroupPath)
		if _, err := os.Stat(src); err != nil {
			continue // a hierarchy we did not join (systemd, blkio...): never show the host's
		}
		if err := unix.Mkdirat(tfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("cgroup mount %s: %w", dst, err)
		}
		if err := mountAt(root, src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := remountBind(root, dst, base|ro); err != nil {
			return err
		}
	}
	if ro != 0 {
		return remountBind(root, dest, base|ro)
	}
	return nil
}

// defaultDevices are created in every container's /dev.
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// createDevices makes the default nodes and linux.devices in the rootfs's
// /dev, plus the standard symlinks, each relative to its parent directory's
// descriptor, never following a symlink in the last component. An existing
// node that differs from a requested device is an error.
// In a user namespace mknod is not allowed: the host's node is bind-mounted
// over an empty file instead.
func createDevices(root *inroot.Root, devs []specs.LinuxDevice, userns bool) error {
	all := append([]specs.LinuxDevice(nil), defaultDevices...)
	all = append(all, devs...)
	for i, d := range all {
		if err := createDevice(root, d, i >= len(defaultDevices), userns); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
		{"pts/ptmx", "/dev/ptmx"}, {"/proc/kcore", "/dev/core"},
	}
	for _, l := range links {
		pfd, base, err := parentIn(root, l[1])
		if err != nil {
			return err
		}
		if l[1] == "/dev/ptmx" {
			_ = unix.Unlinkat(pfd, base, 0) // a device node of the image must not win
		}
		err = unix.Symlinkat(l[0], pfd, base)
		unix.Close(pfd)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
	}
	return nil
}

func createDevice(root *inroot.Root, d specs.LinuxDevice, explicit, userns bool) error {
	if !filepath.IsAbs(d.Path) {
		return fmt.Errorf("device path %q is not absolute", d.Path)
	}
	var typ uint32
	switch d.Type {
	case "c", "u":
		typ = unix.S_IFCHR
	case "b":
		typ = unix.S_IFBLK
	case "p":
		typ = unix.S_IFIFO
	default:
		return fmt.Errorf("device %s: type %q", d.Path, d.Type)
	}
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(*d.FileMode) & 0o7777
	}
	dev := int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))
	pfd, base, err := parentIn(root, d.Path)
	if err != nil {
		return fmt.Errorf("device %w", err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if st.Mode&unix.S_IFMT == typ && (typ == unix.S_IFIFO || st.Rdev == uint64(dev)) {
			if explicit {
				return fixDevice(pfd, base, d, mode)
			}
			return nil
		}
		if explicit {
			return fmt.Errorf("device %s: a different file exists there", d.Path)
		}
		return nil
	}
	if userns {
		fd, err := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
		unix.Close(fd)
		tfd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
		defer unix.Close(tfd)
		return mountOn(tfd, d.Path, d.Path, "", unix.MS_BIND, "")
	}
	if err := unix.Mknodat(pfd, base, typ|mode, dev); err != nil {
		return fmt.Errorf("mknod %s: %w", d.Path, err)
	}
	return fixDevice(pfd, base, d, mode)
}

// fixDevice sets the mode and owner of the node base in the directory open
// as dir, without following a symlink there.
func fixDevice(dir int, base string, d specs.LinuxDevice, mode uint32) error {
	if err := inroot.Chmod(dir, base, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Fchownat(dir, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown %s: %w", d.Path, err)
	}
	return nil
}

// pivotRoot makes rootfs the root: pivot_root(".", ".") stacks the old root
// on the new one, which is then made a slave (so the unmount does not
// propagate to the host) and lazily detached.
func pivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return err
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// moveRoot is the NoPivot variant: move the rootfs mount over / and chroot.
func moveRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return err
	}
	if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move rootfs: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// readonlyPath remounts path (inside the new root) read-only.
func readonlyPath(path string) error {
	if err := unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("readonly %s: %w", path, err)
	}
	var st unix.Statfs_t
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	if unix.Statfs(path, &st) == nil {
		flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	}
	if err := unix.Mount("", path, "", flags, ""); err != nil {
		return fmt.Errorf("readonly %s: %w", path, err)
	}
	return nil
}

// maskPath hides path: /dev/null over a file (after checking that /dev/null
// is the real device, CVE-2025-31133), an empty read-only tmpfs over a
// directory.
func maskPath(path string, devNull int) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("mask %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := unix.Mount("tmpfs", path, "tmpfs", unix.MS_RDONLY, "size=0k"); err != nil {
			return fmt.Errorf("mask %s: %w", path, err)
		}
		return nil
	}
	// A bind of the descriptor itself, not of /proc/self/fd/N: a first
	// process's thread (firstproc.go) is not in the pid namespace of the
	// /proc it sees by now.
	tree, err := unix.OpenTree(devNull, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("mask %s: %w", path, err)
	}
	defer unix.Close(tree)
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, path, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mask %s: %w", path, err)
	}
	return nil
}

// openDevNull opens /dev/null and checks that it is the character device
// 1:3, so a container cannot make us bind something else over a masked path.
func openDevNull() (int, error) {
	fd, err := unix.Open("/dev/null", unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/null: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		unix.Close(fd)
		return -1, fmt.Errorf("/dev/null in the container is not the null device")
	}
	return fd, nil
}
