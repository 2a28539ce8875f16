package cli

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrInvalidVolume is wrapped by every -v parse error.
var ErrInvalidVolume = errors.New("invalid volume specification")

// volumeSpec is one parsed -v value. Bind is the string sent to the daemon
// in HostConfig.Binds ("src:dst[:mode]"); an anonymous volume ("-v /data")
// has no Bind and goes into Config.Volumes.
type volumeSpec struct {
	Source, Target, Mode string
}

// Bind is the HostConfig.Binds entry, or "" for an anonymous volume.
func (v volumeSpec) Bind() string {
	if v.Source == "" {
		return ""
	}
	s := v.Source + ":" + v.Target
	if v.Mode != "" {
		s += ":" + v.Mode
	}
	return s
}

var volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// parseVolume parses -v [SRC:]DST[:MODE]. SRC is an absolute host path, a
// relative one starting with "." (made absolute, as docker does), or a
// volume name; DST is an absolute container path; MODE is a comma list of
// ro/rw, z/Z, nocopy and a mount propagation.
func parseVolume(spec string) (volumeSpec, error) {
	bad := func(why string) (volumeSpec, error) {
		return volumeSpec{}, fmt.Errorf("%w: '%s': %s", ErrInvalidVolume, spec, why)
	}
	parts := strings.Split(spec, ":")
	var v volumeSpec
	switch len(parts) {
	case 1:
		v.Target = parts[0]
	case 2:
		v.Source, v.Target = parts[0], parts[1]
	case 3:
		v.Source, v.Target, v.Mode = parts[0], parts[1], parts[2]
	default:
		return bad("too many colons")
	}
	if v.Target == "" {
		return bad("empty container path")
	}
	if !path.IsAbs(v.Target) {
		return bad("container path must be absolute")
	}
	if v.Target != "/" {
		v.Target = path.Clean(v.Target)
	}
	if len(parts) > 1 {
		switch {
		case v.Source == "":
			return bad("empty source")
		case path.IsAbs(v.Source):
			v.Source = path.Clean(v.Source)
		case strings.HasPrefix(v.Source, "."):
			abs, err := filepath.Abs(v.Source)
			if err != nil {
				return bad(err.Error())
			}
			v.Source = abs
		case !volumeNameRE.MatchString(v.Source):
			return bad(fmt.Sprintf("%q includes invalid characters for a local volume name", v.Source))
		}
	}
	if v.Mode != "" {
		if err := validateVolumeMode(v.Mode); err != nil {
			return bad(err.Error())
		}
	}
	return v, nil
}

func validateVolumeMode(mode string) error {
	seen := map[string]string{}
	for _, m := range strings.Split(mode, ",") {
		var kind string
		switch m {
		case "ro", "rw":
			kind = "rw"
		case "z", "Z":
			kind = "label"
		case "nocopy":
			kind = "copy"
		case "shared", "rshared", "slave", "rslave", "private", "rprivate":
			kind = "propagation"
		default:
			return fmt.Errorf("invalid mode: %s", m)
		}
		if prev, dup := seen[kind]; dup {
			return fmt.Errorf("invalid mode: %s conflicts with %s", m, prev)
		}
		seen[kind] = m
	}
	return nil
}
