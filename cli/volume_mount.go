package cli

import (
	"encoding/csv"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/mount"
)

// parseMount parses one --mount value, docker's CSV of key=value fields:
// type, source|src, target|destination|dst, readonly|ro, bind-propagation,
// volume-nocopy, volume-label, volume-driver, volume-opt, tmpfs-size and
// tmpfs-mode. A field that does not belong to the mount's type is refused.
func parseMount(spec string) (mount.Mount, error) {
	bad := func(format string, a ...any) (mount.Mount, error) {
		return mount.Mount{}, fmt.Errorf("invalid argument %q for \"--mount\" flag: %s", spec, fmt.Sprintf(format, a...))
	}
	fields, err := csv.NewReader(strings.NewReader(spec)).Read()
	if err != nil {
		return bad("%v", err)
	}
	m := mount.Mount{Type: mount.TypeVolume}
	var bindOpts mount.BindOptions
	var volOpts mount.VolumeOptions
	var tmpfsOpts mount.TmpfsOptions
	var hasBind, hasVol, hasTmpfs bool
	for _, f := range fields {
		k, v, hasValue := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !hasValue {
			switch k {
			case "readonly", "ro":
				m.ReadOnly = true
				continue
			case "volume-nocopy":
				volOpts.NoCopy, hasVol = true, true
				continue
			}
			return bad("invalid field '%s' must be a key=value pair", f)
		}
		switch k {
		case "type":
			m.Type = mount.Type(strings.ToLower(v))
		case "source", "src":
			m.Source = v
		case "target", "destination", "dst":
			m.Target = v
		case "readonly", "ro":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("invalid value for %s: %s", k, v)
			}
			m.ReadOnly = b
		case "consistency":
			m.Consistency = mount.Consistency(v)
		case "bind-propagation":
			bindOpts.Propagation, hasBind = mount.Propagation(strings.ToLower(v)), true
			if !validPropagation(bindOpts.Propagation) {
				return bad("invalid bind-propagation %q", v)
			}
		case "volume-nocopy":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad("invalid value for volume-nocopy: %s", v)
			}
			volOpts.NoCopy, hasVol = b, true
		case "volume-label":
			lk, lv, _ := strings.Cut(v, "=")
			if volOpts.Labels == nil {
				volOpts.Labels = map[string]string{}
			}
			volOpts.Labels[lk], hasVol = lv, true
		case "volume-driver":
			if volOpts.DriverConfig == nil {
				volOpts.DriverConfig = &mount.Driver{}
			}
			volOpts.DriverConfig.Name, hasVol = v, true
		case "volume-opt":
			ok, ov, found := strings.Cut(v, "=")
			if !found || ok == "" {
				return bad("invalid volume-opt %q: not KEY=VALUE", v)
			}
			if volOpts.DriverConfig == nil {
				volOpts.DriverConfig = &mount.Driver{}
			}
			if volOpts.DriverConfig.Options == nil {
				volOpts.DriverConfig.Options = map[string]string{}
			}
			volOpts.DriverConfig.Options[ok], hasVol = ov, true
		case "volume-subpath":
			volOpts.Subpath, hasVol = v, true
		case "tmpfs-size":
			n, err := units.RAMInBytes(v)
			if err != nil || n <= 0 {
				return bad("invalid tmpfs-size %q", v)
			}
			tmpfsOpts.SizeBytes, hasTmpfs = n, true
		case "tmpfs-mode":
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil || n > 0o7777 {
				return bad("invalid tmpfs-mode %q: an octal mode", v)
			}
			// As docker's CLI: the number as is (0o1770 has its sticky bit at 0o1000).
			tmpfsOpts.Mode, hasTmpfs = os.FileMode(n), true
		default:
			return bad("unexpected key '%s'", k)
		}
	}
	switch m.Type {
	case mount.TypeBind, mount.TypeVolume, mount.TypeTmpfs:
	default:
		return bad("mount type %q is not supported (bind, volume, tmpfs)", m.Type)
	}
	if m.Target == "" {
		return bad("target is required")
	}
	if !path.IsAbs(m.Target) {
		return bad("target %q must be an absolute path", m.Target)
	}
	switch {
	case hasBind && m.Type != mount.TypeBind:
		return bad("cannot mix 'bind-*' options with mount type '%s'", m.Type)
	case hasVol && m.Type != mount.TypeVolume:
		return bad("cannot mix 'volume-*' options with mount type '%s'", m.Type)
	case hasTmpfs && m.Type != mount.TypeTmpfs:
		return bad("cannot mix 'tmpfs-*' options with mount type '%s'", m.Type)
	case m.Type == mount.TypeBind && m.Source == "":
		return bad("source is required for a bind mount")
	case m.Type == mount.TypeTmpfs && m.Source != "":
		return bad("source is not allowed for a tmpfs mount")
	}
	if m.Type == mount.TypeBind && !path.IsAbs(m.Source) {
		return bad("bind source %q must be an absolute path", m.Source)
	}
	if m.Type == mount.TypeVolume && m.Source != "" && !volumeNameRE.MatchString(m.Source) {
		return bad("%q includes invalid characters for a local volume name", m.Source)
	}
	if hasBind {
		m.BindOptions = &bindOpts
	}
	if hasVol {
		m.VolumeOptions = &volOpts
	}
	if hasTmpfs {
		m.TmpfsOptions = &tmpfsOpts
	}
	return m, nil
}

func validPropagation(p mount.Propagation) bool {
	for _, q := range mount.Propagations {
		if p == q {
			return true
		}
	}
	return false
}

// parseTmpfs parses --tmpfs PATH[:OPTIONS] into HostConfig.Tmpfs.
func parseTmpfs(vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range vals {
		target, opts, _ := strings.Cut(v, ":")
		if !path.IsAbs(target) {
			return nil, fmt.Errorf("invalid argument %q for \"--tmpfs\" flag: the path must be absolute", v)
		}
		if _, dup := out[target]; dup {
			return nil, fmt.Errorf("invalid argument %q for \"--tmpfs\" flag: duplicate mount point %s", v, target)
		}
		out[target] = opts
	}
	return out, nil
}

// checkVolumesFrom checks --volumes-from CONTAINER[:ro|rw].
func checkVolumesFrom(vals []string) error {
	for _, v := range vals {
		ref, mode, _ := strings.Cut(v, ":")
		if ref == "" || (mode != "" && mode != "ro" && mode != "rw") {
			return fmt.Errorf("invalid argument %q for \"--volumes-from\" flag: want CONTAINER[:ro|rw]", v)
		}
	}
	return nil
}
