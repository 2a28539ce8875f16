package containers

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/archive"
	"github.com/shoal-project/shoal/containerd/cgroups"
	"github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/inroot"
)

// Lifecycle and observation: the container events the engine emits, pause
// and unpause, rename, update of a running container's limits, stats and
// the changes of its filesystem.

// EventPublisher receives the engine's container events (Options.Events).
type EventPublisher interface {
	Publish(events.Event)
}

// EventAttributes are a container event's attributes, as Docker's: the
// container's labels, its name and image, then extra (exitCode, signal...).
func EventAttributes(c Container, extra map[string]string) map[string]string {
	attrs := map[string]string{}
	for k, v := range c.Config.Labels {
		attrs[k] = v
	}
	attrs["name"] = strings.TrimPrefix(c.Name, "/")
	attrs["image"] = c.Config.Image
	for k, v := range extra {
		attrs[k] = v
	}
	return attrs
}

// emit publishes a container event.
func (e *Engine) emit(action string, c Container, extra map[string]string) {
	if e.opts.Events == nil {
		return
	}
	e.opts.Events.Publish(events.Event{Type: events.TypeContainer, Action: action, ID: c.ID, Attributes: EventAttributes(c, extra)})
}

// emitID is emit for a container known by ID only (a monitor's exit).
func (e *Engine) emitID(action, id string, extra map[string]string) {
	if c, err := e.Get(id); err == nil {
		e.emit(action, c, extra)
	}
}

// Pause freezes every process of a running container (cgroup freezer, v1 or
// v2) until Unpause.
func (e *Engine) Pause(ctx context.Context, idOrName string) error {
	r, err := e.lockOp(idOrName)
	if err != nil {
		return err
	}
	defer r.opMu.Unlock()
	e.mu.Lock()
	c := r.c
	e.mu.Unlock()
	switch {
	case !c.State.Running:
		return fmt.Errorf("%w: Container %s is not running", ErrConflict, c.ID)
	case c.State.Paused:
		return fmt.Errorf("%w: Container %s is already paused", ErrConflict, c.ID)
	}
	release, err := e.pause(ctx, c.ID)
	if err != nil {
		return err
	}
	e.frozen.mu.Lock()
	if e.frozen.user == nil {
		e.frozen.user = map[string]func() error{}
	}
	e.frozen.user[c.ID] = release
	e.frozen.mu.Unlock()
	if c, err = e.updateState(c.ID, func(c *Container) { c.State.Paused = true }); err != nil {
		_ = e.thawUser(c.ID)
		return err
	}
	e.emit("pause", c, nil)
	return nil
}

// Unpause thaws a paused container.
func (e *Engine) Unpause(idOrName string) error {
	r, err := e.lockOp(idOrName)
	if err != nil {
		return err
	}
	defer r.opMu.Unlock()
	e.mu.Lock()
	c := r.c
	e.mu.Unlock()
	if !c.State.Running || !c.State.Paused {
		return fmt.Errorf("%w: Container %s is not paused", ErrConflict, c.ID)
	}
	if err := e.thawUser(c.ID); err != nil {
		return err
	}
	if c, err = e.updateState(c.ID, func(c *Container) { c.State.Paused = false }); err != nil {
		return err
	}
	e.emit("unpause", c, nil)
	return nil
}

// thawUser releases the user's pause of container id. After a daemon
// restart the pause has no holder in memory (the cgroup stayed frozen):
// the cgroup is thawed directly then.
func (e *Engine) thawUser(id string) error {
	e.frozen.mu.Lock()
	release := e.frozen.user[id]
	delete(e.frozen.user, id)
	e.frozen.mu.Unlock()
	if release != nil {
		return release()
	}
	cg, err := e.rt.Cgroup(id)
	if err != nil {
		return fmt.Errorf("unpause %s: %w", id[:12], err)
	}
	fz, ok := cg.(freezer)
	if !ok {
		return fmt.Errorf("unpause %s: this host's cgroups cannot freeze a container", id[:12])
	}
	if err := fz.Thaw(); err != nil {
		return fmt.Errorf("unpause %s: %w", id[:12], err)
	}
	return nil
}

// thawForKill lets a paused container act on a SIGKILL just sent (a frozen
// process dies only once thawed), as dockerd resumes a paused task it kills.
func (e *Engine) thawForKill(c Container) {
	if !c.State.Paused {
		return
	}
	if err := e.thawUser(c.ID); err == nil {
		_, _ = e.updateState(c.ID, func(c *Container) { c.State.Paused = false })
	}
}

// forgetPause drops the pause holders of a container that exited: its
// cgroup is gone, and a next start must freeze the new one afresh.
func (e *Engine) forgetPause(id string) {
	e.frozen.mu.Lock()
	defer e.frozen.mu.Unlock()
	delete(e.frozen.n, id)
	delete(e.frozen.user, id)
}

// Rename gives a container a new name; the name must be free.
func (e *Engine) Rename(idOrName, newName string) error {
	// The container first, as dockerd: a missing one is "No such container".
	r, err := e.lockOp(idOrName)
	if err != nil {
		return err
	}
	defer r.opMu.Unlock()
	if !namePattern().MatchString(newName) {
		return fmt.Errorf("%w: Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", ErrInvalidArgument, newName)
	}
	name := "/" + strings.TrimPrefix(newName, "/")
	r.saveMu.Lock()
	e.mu.Lock()
	old := r.c.Name
	if old == name {
		e.mu.Unlock()
		r.saveMu.Unlock()
		return fmt.Errorf("%w: Renaming a container with the same name as its current name", ErrInvalidArgument)
	}
	for _, o := range e.records {
		if o.c.Name == name && !o.removed {
			e.mu.Unlock()
			r.saveMu.Unlock()
			return fmt.Errorf("%w: Error when allocating new name: Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", ErrConflict, name, o.c.ID)
		}
	}
	// Taken under the lock that creates check, so no create takes the
	// name meanwhile; given back if the record cannot be written.
	r.c.Name = name
	c := r.c
	e.mu.Unlock()
	err = e.persist(c)
	e.mu.Lock()
	if err != nil {
		r.c.Name = old
	}
	close(r.changed)
	r.changed = make(chan struct{})
	e.mu.Unlock()
	r.saveMu.Unlock()
	if err != nil {
		return fmt.Errorf("rename %s: %w", c.ID[:12], err)
	}
	e.emit("rename", c, map[string]string{"oldName": old})
	return nil
}

// UpdateConfig is what Update changes: limits, and the restart policy;
// zero fields (nil PidsLimit, nil RestartPolicy) are left as they are. A
// PidsLimit of 0 or less removes the limit.
type UpdateConfig struct {
	Memory, MemorySwap, NanoCPUs, CPUShares int64
	PidsLimit                               *int64
	CpusetCpus, CpusetMems                  string
	RestartPolicy                           *RestartPolicy
}

func (r UpdateConfig) applyTo(cfg *Config) {
	set := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	set(&cfg.Memory, r.Memory)
	set(&cfg.MemorySwap, r.MemorySwap)
	set(&cfg.NanoCPUs, r.NanoCPUs)
	set(&cfg.CPUShares, r.CPUShares)
	if r.PidsLimit != nil {
		cfg.PidsLimit = max(*r.PidsLimit, 0)
	}
	if r.CpusetCpus != "" {
		cfg.CpusetCpus = r.CpusetCpus
	}
	if r.CpusetMems != "" {
		cfg.CpusetMems = r.CpusetMems
	}
	if r.RestartPolicy != nil {
		cfg.RestartPolicy = *r.RestartPolicy
	}
}

// Update changes a container's limits: written to its cgroup at once when
// it runs, kept for its next start either way. The new limits are checked
// as at create; a cgroup that refuses one (a memory limit under the current
// usage) gets the old limits back and the container's record is unchanged.
func (e *Engine) Update(idOrName string, res UpdateConfig) (Container, error) {
	r, err := e.lockOp(idOrName)
	if err != nil {
		return Container{}, err
	}
	defer r.opMu.Unlock()
	e.mu.Lock()
	c := r.c
	e.mu.Unlock()
	next := c
	res.applyTo(&next.Config)
	if err := next.Config.RestartPolicy.Validate(); err != nil {
		return Container{}, err
	}
	if next.Config.RestartPolicy.Enabled() && next.Config.AutoRemove {
		return Container{}, fmt.Errorf("%w: Restart policy cannot be updated because AutoRemove is enabled for the container", ErrInvalidArgument)
	}
	if next.Config.MemorySwap > 0 && next.Config.Memory == 0 {
		return Container{}, fmt.Errorf("%w: You should always set the Memory limit when using Memoryswap limit", ErrInvalidArgument)
	}
	if err := CheckInitPids(next.Config.Init, next.Config.PidsLimit); err != nil {
		return Container{}, err
	}
	if next.Config.MemorySwap > 0 && next.Config.MemorySwap < next.Config.Memory {
		return Container{}, fmt.Errorf("%w: Minimum memoryswap limit should be larger than memory limit, see usage", ErrInvalidArgument)
	}
	newRes, err := e.resourcesOf(next)
	if err != nil {
		return Container{}, err
	}
	if c.State.Running {
		cg, err := e.rt.Cgroup(c.ID)
		if err != nil {
			return Container{}, fmt.Errorf("update %s: %w", c.ID[:12], err)
		}
		if err := cg.Set(newRes); err != nil {
			if oldRes, oerr := e.resourcesOf(c); oerr == nil {
				_ = cg.Set(oldRes)
			}
			return Container{}, fmt.Errorf("%w: update %s: %v", ErrInvalidArgument, c.ID[:12], err)
		}
	}
	c, err = e.update(c.ID, func(cur *Container) {
		cur.Config.Memory, cur.Config.MemorySwap = next.Config.Memory, next.Config.MemorySwap
		cur.Config.NanoCPUs, cur.Config.CPUShares, cur.Config.PidsLimit = next.Config.NanoCPUs, next.Config.CPUShares, next.Config.PidsLimit
		cur.Config.CpusetCpus, cur.Config.CpusetMems = next.Config.CpusetCpus, next.Config.CpusetMems
		cur.Config.RestartPolicy = next.Config.RestartPolicy
		cur.Config.RawHostConfig = patchHostConfig(cur.Config.RawHostConfig, cur.Config)
	})
	if err != nil {
		return Container{}, err
	}
	e.emit("update", c, nil)
	return c, nil
}

// resourcesOf is the cgroup limits of c, built and checked as at create
// (the container's user and rootfs play no part in them). The device rules
// stay out: they were set at start and do not change.
func (e *Engine) resourcesOf(c Container) (*specs.LinuxResources, error) {
	c.Config.User = ""
	s, err := buildSpec(c, ocispec.ImageConfig{}, nil, e.rt.CgroupRoot)
	if err != nil {
		return nil, err
	}
	res := &specs.LinuxResources{}
	if s.Linux != nil && s.Linux.Resources != nil {
		*res = *s.Linux.Resources
	}
	res.Devices = nil
	limit := c.Config.PidsLimit
	if limit <= 0 {
		limit = -1 // pids.max "max"
	}
	res.Pids = &specs.LinuxPids{Limit: &limit}
	if c.Config.NanoCPUs == 0 {
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		unlimited := int64(-1)
		res.CPU.Quota = &unlimited
	}
	return res, nil
}

// patchHostConfig writes the updated limits into the API's HostConfig as
// kept for inspect, leaving every other field as it was sent.
func patchHostConfig(raw []byte, cfg Config) []byte {
	m := map[string]any{}
	if len(raw) > 0 && json.Unmarshal(raw, &m) != nil {
		return raw
	}
	m["Memory"], m["MemorySwap"], m["NanoCpus"], m["CpuShares"] = cfg.Memory, cfg.MemorySwap, cfg.NanoCPUs, cfg.CPUShares
	m["PidsLimit"], m["CpusetCpus"], m["CpusetMems"] = cfg.PidsLimit, cfg.CpusetCpus, cfg.CpusetMems
	m["RestartPolicy"] = map[string]any{"Name": cfg.RestartPolicy.Name, "MaximumRetryCount": cfg.RestartPolicy.MaximumRetryCount}
	b, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return b
}

// NetStats are one interface's counters, from the container's
// /proc/net/dev.
type NetStats struct {
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// Stats is one sample of a running container's usage.
type Stats struct {
	Read time.Time
	cgroups.Stats
	// SystemCPU is the host's CPU time since boot in nanoseconds (the
	// "cpu" line of /proc/stat), against which CPU % is computed.
	SystemCPU  uint64
	OnlineCPUs int
	// Networks by interface name (lo left out), read in the container's
	// network namespace.
	Networks map[string]NetStats
	// IORead and IOWrite are the bytes the container's current processes
	// have read from and written to storage (/proc/PID/io): no blkio
	// cgroup is made per container, so the I/O of exited processes is not
	// counted.
	IORead, IOWrite uint64
}

// Stats samples a running container's usage.
func (e *Engine) Stats(idOrName string) (Stats, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return Stats{}, err
	}
	if !c.State.Running {
		return Stats{}, fmt.Errorf("%w: Container %s is not running", ErrConflict, c.ID)
	}
	cg, err := e.rt.Cgroup(c.ID)
	if err != nil {
		return Stats{}, fmt.Errorf("stats %s: %w", c.ID[:12], err)
	}
	s := Stats{Read: time.Now().UTC(), OnlineCPUs: runtime.NumCPU()}
	if s.Stats, err = cg.Stats(); err != nil {
		return Stats{}, fmt.Errorf("stats %s: %w", c.ID[:12], err)
	}
	s.SystemCPU = systemCPU()
	if c.Config.NetworkMode != "host" {
		// A host-network container has no interfaces of its own: dockerd
		// reports none, not the host's traffic.
		s.Networks = netDev(c.State.Pid)
	}
	if pids, err := cg.Pids(); err == nil {
		for _, pid := range pids {
			rd, wr := procIO(pid)
			s.IORead += rd
			s.IOWrite += wr
		}
	}
	return s, nil
}

// systemCPU reads the host's total CPU time from /proc/stat, in
// nanoseconds, as dockerd does (clock ticks of 1/100 s).
func systemCPU() uint64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[0] != "cpu" {
			continue
		}
		var total uint64
		for _, v := range fields[1:8] { // user nice system idle iowait irq softirq
			n, _ := strconv.ParseUint(v, 10, 64)
			total += n
		}
		return total * 1e7
	}
	return 0
}

// netDev reads the interfaces of pid's network namespace.
func netDev(pid int) map[string]NetStats {
	out := map[string]NetStats{}
	if pid <= 0 {
		return out
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "lo" || strings.Contains(name, "|") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			continue
		}
		n := make([]uint64, 16)
		for i := range n {
			n[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		out[name] = NetStats{RxBytes: n[0], RxPackets: n[1], RxErrors: n[2], RxDropped: n[3],
			TxBytes: n[8], TxPackets: n[9], TxErrors: n[10], TxDropped: n[11]}
	}
	return out
}

// procIO reads read_bytes and write_bytes of /proc/PID/io.
func procIO(pid int) (read, write uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		switch k {
		case "read_bytes":
			read = n
		case "write_bytes":
			write = n
		}
	}
	return read, write
}

// Change kinds of Changes, as the Engine API numbers them.
const (
	ChangeModify = 0
	ChangeAdd    = 1
	ChangeDelete = 2
)

// Change is one path of a container's filesystem that differs from its image.
type Change struct {
	Path string
	Kind int
}

// Changes lists what the container changed in its filesystem: its overlay's
// upper layer, each entry compared with the image's layers (present there:
// modified, else added; a whiteout: deleted). Nothing is followed through a
// symlink, in the upper layer or in the image's.
func (e *Engine) Changes(idOrName string) ([]Change, error) {
	c, rfs, err := e.rootfsOf(idOrName)
	if err != nil {
		return nil, err
	}
	var lowers []*inroot.Root
	defer func() {
		for _, l := range lowers {
			l.Close()
		}
	}()
	for _, dir := range rfs.Lower {
		l, err := inroot.OpenRoot(dir)
		if err != nil {
			return nil, fmt.Errorf("changes %s: %w", c.ID[:12], err)
		}
		lowers = append(lowers, l)
	}
	inLower := func(rel string) bool {
		for _, l := range lowers {
			dir, base, err := l.OpenParent(rel)
			if err != nil {
				continue
			}
			var st unix.Stat_t
			err = unix.Fstatat(dir, base, &st, unix.AT_SYMLINK_NOFOLLOW)
			unix.Close(dir)
			if err == nil {
				return true
			}
		}
		return false
	}
	out := []Change{}
	err = filepath.WalkDir(rfs.Upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == rfs.Upper {
			return nil
		}
		rel, _ := filepath.Rel(rfs.Upper, p)
		ch := Change{Path: "/" + rel, Kind: ChangeAdd}
		if d.Type()&fs.ModeCharDevice != 0 {
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil && archive.IsWhiteout(st.Mode, st.Rdev) {
				ch.Kind = ChangeDelete // an overlay whiteout
				out = append(out, ch)
				return nil
			}
		}
		if inLower(rel) {
			ch.Kind = ChangeModify
		}
		out = append(out, ch)
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("changes %s: %w", c.ID[:12], err)
	}
	return out, nil
}

// SizeRw is the bytes of the files the container wrote (its upper layer),
// symlinks not followed.
func (e *Engine) SizeRw(idOrName string) (int64, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return 0, err
	}
	rfs, err := e.opts.Images.RootfsOf(c.ID)
	if err != nil {
		return 0, err
	}
	var n int64
	_ = filepath.WalkDir(rfs.Upper, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n, nil
}

// GraphDriver is the container's overlay as dockerd's overlay2 shows it in
// inspect's GraphDriver.Data (users read UpperDir from it): the image's
// layers, top first, with the init layer above them, and the container's
// upper and work directories. There is no MergedDir here: the overlay is
// mounted in the container's mount namespace only.
func (e *Engine) GraphDriver(idOrName string) (map[string]string, error) {
	_, rfs, err := e.rootfsOf(idOrName)
	if err != nil {
		return nil, err
	}
	return map[string]string{"LowerDir": strings.Join(rfs.Lower, ":"), "UpperDir": rfs.Upper, "WorkDir": rfs.Work}, nil
}

// rootfsOf is the container and the overlay its image store made for it.
func (e *Engine) rootfsOf(idOrName string) (Container, images.Rootfs, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return Container{}, images.Rootfs{}, err
	}
	rfs, err := e.opts.Images.RootfsOf(c.ID)
	return c, rfs, err
}
