package volumes

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mountOpts are a volume's --opt type/device/o, checked.
type mountOpts struct {
	typ, device string
	flags       uintptr
	data        string
}

// Flags of -o that are mount(2) flags, not file system data.
var mountFlags = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"noatime": {false, unix.MS_NOATIME}, "relatime": {false, unix.MS_RELATIME},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
	"sync": {false, unix.MS_SYNCHRONOUS},
}

// parseOptions checks the local driver's options: nil when the volume is a
// plain directory.
func parseOptions(opts map[string]string) (*mountOpts, error) {
	if len(opts) == 0 {
		return nil, nil
	}
	for k := range opts {
		switch k {
		case "type", "device", "o", "size":
		default:
			return nil, fmt.Errorf("%w: invalid option key: %q", ErrInvalid, k)
		}
	}
	if _, ok := opts["size"]; ok {
		return nil, fmt.Errorf("%w: quota size requested but no quota support", ErrInvalid)
	}
	m := &mountOpts{typ: opts["type"], device: opts["device"]}
	if m.typ == "" {
		return nil, fmt.Errorf("%w: missing required option: \"type\"", ErrInvalid)
	}
	var data []string
	if o := opts["o"]; o != "" {
		for _, f := range strings.Split(o, ",") {
			if mf, ok := mountFlags[f]; ok {
				if mf.clear {
					m.flags &^= mf.flag
				} else {
					m.flags |= mf.flag
				}
				continue
			}
			if strings.HasPrefix(f, "addr=") && m.typ != "nfs" && m.typ != "nfs4" {
				return nil, fmt.Errorf("%w: option addr= is for nfs only", ErrInvalid)
			}
			data = append(data, f)
		}
	}
	m.data = strings.Join(data, ",")
	switch {
	case m.typ == "nfs" || m.typ == "nfs4" || m.typ == "cifs":
		// The kernel's nfs client needs mount helpers (and the network)
		// that a node of this engine does not have.
		return nil, fmt.Errorf("%w: volume type %s is not supported on this node (tmpfs, bind and block-device file systems are)", ErrInvalid, m.typ)
	case m.typ == "tmpfs":
		if m.device == "" {
			m.device = "tmpfs"
		}
	case m.flags&unix.MS_BIND != 0:
		if !filepath.IsAbs(m.device) {
			return nil, fmt.Errorf("%w: a bind volume needs device=/absolute/path, not %q", ErrInvalid, m.device)
		}
	case m.typ == "none":
		return nil, fmt.Errorf("%w: type=none needs o=bind", ErrInvalid)
	default:
		if m.device == "" {
			return nil, fmt.Errorf("%w: missing required option: \"device\"", ErrInvalid)
		}
	}
	return m, nil
}

// mount mounts the options over dir. A read-only bind needs a second,
// remounting call: the first ignores MS_RDONLY.
func (m *mountOpts) mount(dir string) error {
	if m.flags&unix.MS_BIND != 0 {
		if err := unix.Mount(m.device, dir, "", m.flags&(unix.MS_BIND|unix.MS_REC), ""); err != nil {
			return fmt.Errorf("bind %s: %w", m.device, err)
		}
		if rest := m.flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
			if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|rest, ""); err != nil {
				_ = unix.Unmount(dir, unix.MNT_DETACH)
				return fmt.Errorf("remount %s: %w", dir, err)
			}
		}
		return nil
	}
	if err := unix.Mount(m.device, dir, m.typ, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s (type %s, o=%s): %w", m.device, m.typ, m.data, err)
	}
	return nil
}

func unmount(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// isMountpoint reports whether dir is a mount point in this namespace.
func isMountpoint(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountPath(fields[4]) == dir {
			return true
		}
	}
	return false
}

// unescapeMountPath undoes mountinfo's octal escapes of space, tab, newline
// and backslash.
func unescapeMountPath(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
