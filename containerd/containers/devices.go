package containers

import (
	"fmt"
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
// rootfs is "" for the check at create: then only the values are checked.
func withDevices(s *specs.Spec, devs []Device, rootfs string) error {
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
		var st unix.Stat_t
		if err := unix.Stat(d.PathOnHost, &st); err != nil {
			return fmt.Errorf("%w: error gathering device information while adding custom device %q: %v", ErrInvalidArgument, d.PathOnHost, err)
		}
		var typ string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = "c"
		case unix.S_IFBLK:
			typ = "b"
		default:
			return fmt.Errorf("%w: error gathering device information while adding custom device %q: not a device node", ErrInvalidArgument, d.PathOnHost)
		}
		if rootfs == "" {
			continue
		}
		major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		mode := os.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{
			Path: d.PathInContainer, Type: typ, Major: major, Minor: minor, FileMode: &mode, UID: &uid, GID: &gid,
		})
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: typ, Major: &major, Minor: &minor, Access: d.CgroupPermissions,
		})
	}
	return nil
}
