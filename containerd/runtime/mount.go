package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/cgroups"
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

// secureJoin resolves path inside root as if root were "/": symlinks are
// followed but can never lead outside root, and ".." stops at root. Missing
// components are kept as they are; the result may not exist yet.
func secureJoin(root, path string) (string, error) {
	resolved := "" // relative to root, symlink-free
	queue := strings.Split(path, "/")
	links := 0
	for len(queue) > 0 {
		part := queue[0]
		queue = queue[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = strings.TrimPrefix(filepath.Dir("/"+resolved), "/")
			continue
		}
		next := filepath.Join(resolved, part)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				resolved = next
				continue
			}
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > 255 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			resolved = ""
		}
		queue = append(strings.Split(target, "/"), queue...)
	}
	return filepath.Join(root, resolved), nil
}

// openInRoot opens path inside root with O_PATH, refusing any escape, so
// that a mount goes exactly where it was resolved (CVE-2021-30465).
func openInRoot(rootFd int, root, abs string) (int, error) {
	rel, err := filepath.Rel(root, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		return -1, fmt.Errorf("%s escapes the rootfs", abs)
	}
	fd, err := unix.Openat2(rootFd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("open %s in rootfs: %w", rel, err)
	}
	return fd, nil
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// mountAt mounts onto target (a host path inside rootfs) through an O_PATH
// descriptor opened inside the rootfs.
func mountAt(rootFd int, rootfs, source, target, fstype string, flags uintptr, data string) error {
	fd, err := openInRoot(rootFd, rootfs, target)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Mount(source, fdPath(fd), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s): %w", source, strings.TrimPrefix(target, rootfs), fstype, err)
	}
	return nil
}

// mountOne performs one entry of mounts[]: target created inside the rootfs
// (directory, or empty file for a bind of a file), then mounted, then
// remounted for flags a bind ignores, then given its propagation.
func mountOne(rootFd int, cfg *initConfig, m specs.Mount) error {
	rootfs := cfg.Rootfs
	if !filepath.IsAbs(m.Destination) {
		return fmt.Errorf("mount destination %q is not absolute", m.Destination)
	}
	target, err := secureJoin(rootfs, m.Destination)
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.Destination, err)
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
			return fmt.Errorf("mount %s: source: %w", m.Destination, err)
		}
		isDir = fi.IsDir()
	}
	if err := makeTarget(target, isDir); err != nil {
		return fmt.Errorf("mount %s: %w", m.Destination, err)
	}
	if typ == "cgroup" || typ == "cgroup2" {
		return mountCgroup(rootFd, cfg, target, flags)
	}
	if bind {
		if err := mountAt(rootFd, rootfs, source, target, "", flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return err
		}
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
			if err := remountBind(rootFd, rootfs, target, rest); err != nil {
				return err
			}
		}
	} else {
		if err := mountAt(rootFd, rootfs, source, target, typ, flags, data); err != nil {
			if typ == "sysfs" && errors.Is(err, unix.EPERM) {
				// No own network namespace: bind the host's /sys instead.
				if err := mountAt(rootFd, rootfs, "/sys", target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
					return err
				}
				return remountBind(rootFd, rootfs, target, flags)
			}
			return err
		}
	}
	for _, p := range prop {
		if err := mountAt(rootFd, rootfs, "", target, "", p, ""); err != nil {
			return err
		}
	}
	return nil
}

// remountBind applies flags (ro, nosuid...) to an existing bind mount,
// keeping the locked flags the kernel refuses to drop.
func remountBind(rootFd int, rootfs, target string, flags uintptr) error {
	fd, err := openInRoot(rootFd, rootfs, target)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err == nil {
		flags |= uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	}
	if err := unix.Mount("", fdPath(fd), "", flags|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
		return fmt.Errorf("remount %s: %w", strings.TrimPrefix(target, rootfs), err)
	}
	return nil
}

// makeTarget creates a mount point: every missing component is created as
// a directory (the last one as a file when isDir is false), refusing to
// create through symlinks (secureJoin already resolved the existing ones).
func makeTarget(target string, isDir bool) error {
	if fi, err := os.Lstat(target); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symlink", target)
		}
		return nil
	}
	if isDir {
		return os.MkdirAll(target, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// mountCgroup gives the container a read-only view of its own cgroup: on v2
// the unified directory of the container; on v1 a tmpfs with one bind per
// hierarchy (co-mounted names become symlinks, as on the host).
func mountCgroup(rootFd int, cfg *initConfig, target string, flags uintptr) error {
	rootfs := cfg.Rootfs
	ro := flags & unix.MS_RDONLY
	base := flags &^ (unix.MS_RDONLY | unix.MS_BIND | unix.MS_REC)
	if cfg.CgroupMode == cgroups.Unified {
		src := filepath.Join(cfg.CgroupRoot, cfg.CgroupPath)
		if err := mountAt(rootFd, rootfs, src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		return remountBind(rootFd, rootfs, target, base|ro)
	}
	if err := mountAt(rootFd, rootfs, "tmpfs", target, "tmpfs", base, "mode=755"); err != nil {
		return err
	}
	ents, err := os.ReadDir(cfg.CgroupRoot)
	if err != nil {
		return fmt.Errorf("cgroup mount: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		host := filepath.Join(cfg.CgroupRoot, name)
		dst := filepath.Join(target, name)
		if e.Type()&os.ModeSymlink != 0 {
			link, err := os.Readlink(host)
			if err == nil {
				_ = os.Symlink(link, dst)
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
		if err := os.Mkdir(dst, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if err := mountAt(rootFd, rootfs, src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := remountBind(rootFd, rootfs, dst, base|ro); err != nil {
			return err
		}
	}
	if ro != 0 {
		return remountBind(rootFd, rootfs, target, base|ro)
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
// /dev, plus the standard symlinks. An existing node that differs from a
// requested device is an error.
// In a user namespace mknod is not allowed: the host's node is bind-mounted
// over an empty file instead.
func createDevices(rootFd int, rootfs string, devs []specs.LinuxDevice, userns bool) error {
	all := append([]specs.LinuxDevice(nil), defaultDevices...)
	all = append(all, devs...)
	for i, d := range all {
		explicit := i >= len(defaultDevices)
		if !filepath.IsAbs(d.Path) {
			return fmt.Errorf("device path %q is not absolute", d.Path)
		}
		target, err := secureJoin(rootfs, d.Path)
		if err != nil {
			return err
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
		var st unix.Stat_t
		if err := unix.Lstat(target, &st); err == nil {
			if st.Mode&unix.S_IFMT == typ && (typ == unix.S_IFIFO || st.Rdev == uint64(dev)) {
				if explicit {
					if err := fixDevice(target, d, mode); err != nil {
						return err
					}
				}
				continue
			}
			if explicit {
				return fmt.Errorf("device %s: a different file exists there", d.Path)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		if userns {
			if err := makeTarget(target, false); err != nil {
				return fmt.Errorf("device %s: %w", d.Path, err)
			}
			if err := mountAt(rootFd, rootfs, d.Path, target, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			continue
		}
		if err := unix.Mknod(target, typ|mode, dev); err != nil {
			return fmt.Errorf("mknod %s: %w", d.Path, err)
		}
		if err := fixDevice(target, d, mode); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
		{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
		{"pts/ptmx", "/dev/ptmx"}, {"/proc/kcore", "/dev/core"},
	}
	for _, l := range links {
		target, err := secureJoin(rootfs, l[1])
		if err != nil {
			return err
		}
		if l[1] == "/dev/ptmx" {
			_ = os.Remove(target) // a device node of the image must not win
		}
		if err := os.Symlink(l[0], target); err != nil && !os.IsExist(err) {
			return fmt.Errorf("symlink %s: %w", l[1], err)
		}
	}
	return nil
}

func fixDevice(path string, d specs.LinuxDevice, mode uint32) error {
	if err := unix.Chmod(path, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", d.Path, err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Lchown(path, uid, gid); err != nil {
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
	if err := unix.Mount(fdPath(devNull), path, "", unix.MS_BIND, ""); err != nil {
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
