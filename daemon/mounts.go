package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/volumes"
)

// volumeUse is one volume a container being created uses. An empty name
// is an anonymous volume, named when it is made.
type volumeUse struct {
	name, target string
	ro, nocopy   bool
	labels, opts map[string]string
	// made says the create made the volume: a failure removes it again.
	made bool
}

// mountPlan is what a create asks to mount, checked, before anything is
// made: host binds as the engine takes them, tmpfs mounts, volumes.
type mountPlan struct {
	binds   []string
	tmpfs   map[string]string
	vols    []volumeUse
	targets map[string]bool
}

func (p *mountPlan) target(t string) error {
	if !path.IsAbs(t) {
		return badRequest("invalid mount config: mount path must be absolute: %q", t)
	}
	t = path.Clean(t)
	if t == "/" {
		return badRequest("invalid mount config: cannot mount over the container's root /")
	}
	if p.targets[t] {
		return badRequest("Duplicate mount point: %s", t)
	}
	p.targets[t] = true
	return nil
}

// defaultTmpfsOptions are Docker's for --tmpfs and --mount type=tmpfs.
const defaultTmpfsOptions = "nosuid,nodev,noexec"

// tmpfsFlags are the options a tmpfs mount takes besides size/mode/uid/gid/nr_*.
var tmpfsFlags = map[string]bool{"ro": true, "rw": true, "exec": true, "noexec": true, "suid": true, "nosuid": true,
	"dev": true, "nodev": true, "sync": true, "async": true, "atime": true, "noatime": true, "relatime": true,
	"strictatime": true, "nodiratime": true, "diratime": true, "private": true, "rprivate": true, "shared": true,
	"rshared": true, "slave": true, "rslave": true}

func checkTmpfsOptions(target, opts string) error {
	if opts == "" {
		return nil
	}
	for _, o := range strings.Split(opts, ",") {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case !hasValue && tmpfsFlags[o]:
		case hasValue && (k == "size" || k == "nr_blocks" || k == "nr_inodes"):
			if _, err := parseTmpfsSize(v); err != nil {
				return badRequest("invalid tmpfs option %q for %s: %v", o, target, err)
			}
		case hasValue && k == "mode":
			if _, err := strconv.ParseUint(v, 8, 32); err != nil {
				return badRequest("invalid tmpfs option %q for %s: mode must be octal", o, target)
			}
		case hasValue && (k == "uid" || k == "gid"):
			if _, err := strconv.ParseUint(v, 10, 32); err != nil {
				return badRequest("invalid tmpfs option %q for %s: not a number", o, target)
			}
		default:
			return badRequest("invalid tmpfs option %q for %s", o, target)
		}
	}
	return nil
}

// parseTmpfsSize reads a tmpfs size as the kernel does: a number with an
// optional k, m, g or % suffix.
func parseTmpfsSize(v string) (uint64, error) {
	num := strings.TrimRight(v, "kKmMgG%")
	if len(v)-len(num) > 1 {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return strconv.ParseUint(num, 10, 64)
}

// planMounts checks the mounts a create asks for: -v, --mount, --tmpfs,
// --volumes-from, and the anonymous volumes of Config.Volumes and of the
// image's VOLUMEs. Nothing is made yet.
func (d *Daemon) planMounts(hc *container.HostConfig, cfgVolumes map[string]struct{}, imageVolumes map[string]struct{}) (*mountPlan, error) {
	p := &mountPlan{tmpfs: map[string]string{}, targets: map[string]bool{}}
	for _, b := range hc.Binds {
		if err := p.addBind(b); err != nil {
			return nil, err
		}
	}
	for _, m := range hc.Mounts {
		if err := p.addMount(m); err != nil {
			return nil, err
		}
	}
	for target, opts := range hc.Tmpfs {
		if err := p.target(target); err != nil {
			return nil, err
		}
		if err := checkTmpfsOptions(target, opts); err != nil {
			return nil, err
		}
		p.tmpfs[path.Clean(target)] = joinOpts(defaultTmpfsOptions, opts)
	}
	for _, from := range hc.VolumesFrom {
		if err := d.addVolumesFrom(p, from); err != nil {
			return nil, err
		}
	}
	var anon []string
	for t := range cfgVolumes {
		anon = append(anon, t)
	}
	for t := range imageVolumes {
		if _, dup := cfgVolumes[t]; !dup {
			anon = append(anon, t)
		}
	}
	sort.Strings(anon)
	for _, t := range anon {
		if !path.IsAbs(t) {
			return nil, badRequest("invalid volume specification: '%s': container path must be absolute", t)
		}
		if p.targets[path.Clean(t)] {
			continue // a bind, volume or tmpfs given for it wins, as in Docker
		}
		_ = p.target(t)
		p.vols = append(p.vols, volumeUse{target: path.Clean(t)})
	}
	return p, nil
}

func joinOpts(a, b string) string {
	if b == "" {
		return a
	}
	return a + "," + b
}

// addBind takes one -v SRC:DST[:MODE]: a host path is the engine's bind
// (checked by it), a name is a named volume.
func (p *mountPlan) addBind(b string) error {
	parts := strings.Split(b, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return badRequest("invalid volume specification: '%s'", b)
	}
	if err := p.target(parts[1]); err != nil {
		return err
	}
	if path.IsAbs(parts[0]) {
		p.binds = append(p.binds, b)
		return nil
	}
	if err := volumes.ValidateName(parts[0]); err != nil {
		return badRequest("invalid volume specification: '%s': %v", b, err)
	}
	u := volumeUse{name: parts[0], target: path.Clean(parts[1])}
	if len(parts) == 3 {
		for _, m := range strings.Split(parts[2], ",") {
			switch m {
			case "ro":
				u.ro = true
			case "rw":
			case "nocopy":
				u.nocopy = true
			case "rprivate", "private":
			default:
				return badRequest("invalid volume specification: '%s': mode %q is not supported (ro, rw, nocopy)", b, m)
			}
		}
	}
	p.vols = append(p.vols, u)
	return nil
}

// addMount takes one --mount.
func (p *mountPlan) addMount(m mount.Mount) error {
	if m.Target == "" {
		return badRequest("invalid mount config for type %q: field Target must not be empty", m.Type)
	}
	if err := p.target(m.Target); err != nil {
		return err
	}
	target := path.Clean(m.Target)
	if m.Type != mount.TypeBind && m.BindOptions != nil {
		return badRequest("invalid mount config for type %q: bind options given", m.Type)
	}
	if m.Type != mount.TypeVolume && m.VolumeOptions != nil {
		return badRequest("invalid mount config for type %q: volume options given", m.Type)
	}
	if m.Type != mount.TypeTmpfs && m.TmpfsOptions != nil {
		return badRequest("invalid mount config for type %q: tmpfs options given", m.Type)
	}
	switch m.Type {
	case mount.TypeBind:
		if !path.IsAbs(m.Source) {
			return badRequest("invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", m.Source)
		}
		if o := m.BindOptions; o != nil {
			switch {
			case o.Propagation != "" && o.Propagation != mount.PropagationRPrivate && o.Propagation != mount.PropagationPrivate:
				return badRequest("bind-propagation=%s is not supported (rprivate is)", o.Propagation)
			case o.NonRecursive || o.CreateMountpoint || o.ReadOnlyNonRecursive || o.ReadOnlyForceRecursive:
				return badRequest("bind-nonrecursive, bind-create-mountpoint and bind-recursive are not supported")
			}
		}
		b := m.Source + ":" + target
		if m.ReadOnly {
			b += ":ro"
		}
		p.binds = append(p.binds, b)
	case mount.TypeVolume:
		u := volumeUse{name: m.Source, target: target, ro: m.ReadOnly}
		if m.Source != "" {
			if err := volumes.ValidateName(m.Source); err != nil {
				return badRequest("invalid mount config for type \"volume\": %v", err)
			}
		}
		if o := m.VolumeOptions; o != nil {
			if o.Subpath != "" {
				return badRequest("volume-subpath is not supported")
			}
			if dc := o.DriverConfig; dc != nil {
				if dc.Name != "" && dc.Name != volumes.DriverLocal {
					return badRequest("volume-driver %q is not supported (only local)", dc.Name)
				}
				u.opts = dc.Options
			}
			u.nocopy, u.labels = o.NoCopy, o.Labels
		}
		p.vols = append(p.vols, u)
	case mount.TypeTmpfs:
		if m.Source != "" {
			return badRequest("invalid mount config for type \"tmpfs\": field Source must not be specified")
		}
		opts := defaultTmpfsOptions
		if m.ReadOnly {
			opts += ",ro"
		}
		if o := m.TmpfsOptions; o != nil {
			if o.SizeBytes < 0 {
				return badRequest("invalid tmpfs-size %d", o.SizeBytes)
			}
			if o.SizeBytes > 0 {
				opts += fmt.Sprintf(",size=%d", o.SizeBytes)
			}
			if o.Mode != 0 {
				opts += fmt.Sprintf(",mode=%o", tmpfsMode(o.Mode))
			}
			for _, kv := range o.Options {
				opts += "," + strings.Join(kv, "=")
			}
			if err := checkTmpfsOptions(target, strings.TrimPrefix(opts, defaultTmpfsOptions+",")); err != nil {
				return err
			}
		}
		p.tmpfs[target] = opts
	case "":
		return badRequest("invalid mount config: mount type must be given (bind, volume or tmpfs)")
	default:
		return badRequest("mount type %q is not supported (bind, volume and tmpfs are)", m.Type)
	}
	return nil
}

// addVolumesFrom takes CTR[:ro|:rw]: the binds and volumes of another
// container, at the same targets, in its modes or the one given.
func (d *Daemon) addVolumesFrom(p *mountPlan, spec string) error {
	ref, mode, _ := strings.Cut(spec, ":")
	switch mode {
	case "", "ro", "rw":
	default:
		return badRequest("invalid --volumes-from %q: mode must be ro or rw", spec)
	}
	c, err := d.containers.Get(ref)
	if err != nil {
		return err
	}
	for _, b := range c.Config.Binds {
		src, dst, ro, err := containers.ParseBind(b)
		if err != nil {
			continue
		}
		switch mode {
		case "ro":
			ro = true
		case "rw":
			ro = false
		}
		if err := p.target(dst); err != nil {
			return err
		}
		if name := d.volumes.NameOf(src); name != "" {
			p.vols = append(p.vols, volumeUse{name: name, target: dst, ro: ro, nocopy: true})
			continue
		}
		b := src + ":" + dst
		if ro {
			b += ":ro"
		}
		p.binds = append(p.binds, b)
	}
	return nil
}

// makeVolumes creates the volumes of p that do not exist yet and adds
// their binds; on error the ones it made are gone again.
func (d *Daemon) makeVolumes(p *mountPlan) (err error) {
	defer func() {
		if err != nil {
			d.dropVolumes(p, "")
		}
	}()
	if len(p.vols) > 0 && d.volumes == nil {
		return badRequest("volumes are not available on this daemon")
	}
	for i := range p.vols {
		u := &p.vols[i]
		if u.name != "" {
			if _, err := d.volumes.Get(u.name); err == nil {
				if len(u.opts) > 0 {
					// Docker ignores the options of an existing volume; shoal says so.
					return badRequest("volume %s exists: its options cannot be changed by --mount volume-opt", u.name)
				}
				p.binds = append(p.binds, bindOf(d.volumes.Mountpoint(u.name), u))
				continue
			}
		}
		v, made, err := d.volumes.Create(u.name, "", u.labels, u.opts)
		if err != nil {
			return volumeError(err)
		}
		u.name, u.made = v.Name, made
		if made {
			d.publishVolume("create", v.Name, nil)
		}
		p.binds = append(p.binds, bindOf(v.Mountpoint, u))
	}
	return nil
}

func bindOf(src string, u *volumeUse) string {
	b := src + ":" + u.target
	if u.ro {
		b += ":ro"
	}
	return b
}

// dropVolumes undoes makeVolumes (and the mounts of id, if given) after a
// failed create.
func (d *Daemon) dropVolumes(p *mountPlan, id string) {
	for _, u := range p.vols {
		if id != "" {
			_ = d.volumes.Unmount(u.name, id)
		}
		if u.made {
			if err := d.volumes.Remove(u.name, true, ""); err == nil {
				d.publishVolume("destroy", u.name, nil)
			}
		}
	}
}

// attachVolumes takes the references of container id on its volumes and
// copies the image's content at each target into a new, empty volume
// (unless nocopy), as Docker does.
func (d *Daemon) attachVolumes(ctx context.Context, p *mountPlan, id string, autoRemove bool) error {
	for _, u := range p.vols {
		if _, err := d.volumes.Mount(u.name, id); err != nil {
			return volumeError(err)
		}
		d.publishVolume("mount", u.name, map[string]string{"container": id, "destination": u.target,
			"read/write": strconv.FormatBool(!u.ro), "propagation": "", "driver": volumes.DriverLocal})
		if autoRemove && u.made {
			if v, err := d.volumes.Get(u.name); err == nil && v.Anonymous() {
				if err := d.volumes.SetRemoveWith(u.name, id); err != nil {
					return err
				}
			}
		}
		if u.nocopy {
			continue
		}
		err := d.volumes.CopyUp(ctx, u.name, func(w io.Writer) error {
			// The mount target resolves through symlinks: so does its content.
			return d.containers.ArchiveResolved(ctx, id, u.target, w)
		})
		if err != nil && !errors.Is(err, containers.ErrNotFound) {
			return fmt.Errorf("copy the image's %s into volume %s: %w", u.target, u.name, err)
		}
	}
	return nil
}

// releaseVolumes drops the references of a removed container, and removes
// its anonymous volumes when removeAnonymous (rm -v) or when they were
// made to go with it (run --rm).
func (d *Daemon) releaseVolumes(id string, removeAnonymous bool) {
	if d.volumes == nil {
		return
	}
	for _, v := range d.volumes.UsedBy(id) {
		if err := d.volumes.Unmount(v.Name, id); err != nil {
			slog.Warn("release volume", "volume", v.Name, "container", id, "err", err)
			continue
		}
		d.publishVolume("unmount", v.Name, map[string]string{"container": id})
		if v.Anonymous() && (removeAnonymous || v.RemoveWith == id) {
			if err := d.removeVolume(v.Name, false); err != nil && !errors.Is(err, volumes.ErrInUse) {
				slog.Warn("remove anonymous volume", "volume", v.Name, "container", id, "err", err)
			}
		}
	}
}

// anonymousVolumes names the anonymous volumes of a container that rm -v
// is to remove (none without -v).
func (d *Daemon) anonymousVolumes(idOrName string, v bool) []string {
	if !v || d.volumes == nil {
		return nil
	}
	c, err := d.containers.Get(idOrName)
	if err != nil {
		return nil
	}
	var out []string
	for _, vol := range d.volumes.UsedBy(c.ID) {
		if vol.Anonymous() {
			out = append(out, vol.Name)
		}
	}
	return out
}

// removeAnonymous removes volumes after their container; one that another
// container still uses (--volumes-from) stays, as in Docker.
func (d *Daemon) removeAnonymous(names []string) {
	for _, n := range names {
		if err := d.removeVolume(n, false); err != nil {
			slog.Warn("rm -v", "volume", n, "err", err)
		}
	}
}

// mountPoints is inspect's Mounts: binds, volumes (by name) and tmpfs.
func (d *Daemon) mountPoints(c containers.Container) []container.MountPoint {
	out := mountPoints(c)
	for i, m := range out {
		if name := d.volumes.NameOf(m.Source); name != "" {
			out[i].Type, out[i].Name, out[i].Driver, out[i].Propagation = "volume", name, volumes.DriverLocal, ""
		}
	}
	targets := make([]string, 0, len(c.Config.Tmpfs))
	for t := range c.Config.Tmpfs {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	for _, t := range targets {
		ro := strings.Contains(","+c.Config.Tmpfs[t]+",", ",ro,")
		out = append(out, container.MountPoint{Type: "tmpfs", Destination: t, RW: !ro})
	}
	return out
}

// tmpfsMode is the numeric mode of a --mount tmpfs-mode: docker's CLI sends
// the number as typed (sticky at 0o1000), Go clients may send os.FileMode's
// own bits; both are taken.
func tmpfsMode(m os.FileMode) uint32 {
	n := uint32(m) & 0o7777
	if m&os.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		n |= 0o1000
	}
	return n
}
