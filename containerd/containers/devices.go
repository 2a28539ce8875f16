package containers

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Device is one --device: a host device node made in the container at
// PathInContainer, with cgroup access Permissions (r, w, m).
type Device struct {
	PathOnHost        string `json:"pathOnHost"`
	PathInContainer   string `json:"pathInContainer"`
	CgroupPermissions string `json:"cgroupPermissions"`
}

// checkDevice refuses a --device whose paths or permissions are bad; the
// host node itself is read at start (it may come and go).
func checkDevice(d Device) error {
	if !filepath.IsAbs(d.PathOnHost) || !filepath.IsAbs(d.PathInContainer) {
		return fmt.Errorf("%w: invalid device %s:%s: paths must be absolute", ErrInvalidArgument, d.PathOnHost, d.PathInContainer)
	}
	if d.CgroupPermissions == "" || strings.Trim(d.CgroupPermissions, "rwm") != "" {
		return fmt.Errorf("%w: invalid device mode: %s", ErrInvalidArgument, d.CgroupPermissions)
	}
	return nil
}

// withDevices adds each device node and its cgroup rule to s, reading the
// host's node for its type, numbers, mode and owner, as dockerd does.
// With checkOnly (a create) only the values are checked.
func withDevices(s *specs.Spec, devs []Device, checkOnly bool) error {
	for _, d := range devs {
		if d.PathInContainer == "" {
			d.PathInContainer = d.PathOnHost
		}
		if d.CgroupPermissions == "" {
			d.CgroupPermissions = "rwm"
		}
		if err := checkDevice(d); err != nil {
			return err
		}
		dev, err := hostDevice(d.PathOnHost, d.PathInContainer, unix.Stat)
		if err != nil {
			return fmt.Errorf("%w: error gathering device information while adding custom device %q: %v", ErrInvalidArgument, d.PathOnHost, err)
		}
		if checkOnly {
			continue
		}
		s.Linux.Devices = append(s.Linux.Devices, dev)
		major, minor := dev.Major, dev.Minor
		typ := dev.Type
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: typ, Major: &major, Minor: &minor, Access: d.CgroupPermissions,
		})
	}
	return nil
}

// hostDevices are the device nodes of the host's /dev (not its pts, shm or
// mqueue), for --privileged.
func hostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // a node that went away meanwhile
		}
		if e.IsDir() {
			switch path {
			case "/dev/pts", "/dev/shm", "/dev/mqueue":
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type()&fs.ModeDevice == 0 || path == "/dev/console" || path == "/dev/ptmx" {
			return nil
		}
		if dev, err := hostDevice(path, path, unix.Lstat); err == nil {
			out = append(out, dev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the host's devices: %w", err)
	}
	return out, nil
}

// hostDevice describes the host's device node at path (read with stat or
// lstat) as a node to make at dst, with its type, numbers, mode and owner.
func hostDevice(path, dst string, stat func(string, *unix.Stat_t) error) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := stat(path, &st); err != nil {
		return specs.LinuxDevice{}, err
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, errors.New("not a device node")
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{Path: dst, Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)), FileMode: &mode, UID: &uid, GID: &gid}, nil
}
