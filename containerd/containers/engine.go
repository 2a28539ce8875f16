// Package containers is the local engine's container service: Docker-shaped
// container records over the image store, the OCI runtime and one shim per
// running container.
//
// # Ownership
//
// The Engine's mutex guards the in-memory table of records and execs; it is
// never held across a shim start, a mount, a wait or a disk write. A record's
// saveMu orders the writes of its config.v2.json: an update is on disk before
// it is broadcast (by closing and replacing the record's changed channel, so
// waiters never poll), and a daemon restarted right after a Wait reads the
// same state; or, for a --rm container, whose exit is not written, removes
// it as the removal that follows the exit does.
//
// Goroutines: one monitor per running container holds a "wait" connection to
// its shim and records the exit; it stops when the shim answers or the
// engine's context ends. A container with a healthcheck has one health
// goroutine per run (health.go), ended and waited for at its exit; one
// whose restart policy restarts it has one timer goroutine while it waits
// its back-off (restart.go), ended by a stop, a remove, a user's start or
// the engine's context. An attach pump lives until the container's output
// ends or its client's context does; an exec's two copiers until the exec'd
// process closes its output. One trash goroutine deletes the directories of
// removed containers after their removal is answered (emptyTrash), until
// the engine's context ends. The daemon may die at any moment: the shims
// (own session, own cgroup) keep the containers, and Open re-adopts them by
// asking each shim for its state, or reads the exit.json it left.
//
// # Layout
//
//	<Root>/containers/<id>/config.v2.json   the record (fsync + rename; no fsync for --rm)
//	<Root>/containers/<id>/<id>-json.log    the json-file log
//	<ExecRoot>/containers/<id>/             bundle: config.json and the rootfs mount
//	<ExecRoot>/shim/<id>/                   shim.sock, exit.json, shim.log
//	<ExecRoot>/runtime/                     OCI runtime state
package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"
)

// Error classes; the daemon maps them to HTTP statuses with errors.Is.
var (
	ErrNotFound        = errors.New("No such container")
	ErrConflict        = errors.New("conflict")
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotModified: the container is already in the asked state (HTTP 304).
	ErrNotModified = errors.New("not modified")
)

// Options configure an Engine.
type Options struct {
	Root, ExecRoot string
	// CgroupParent holds every container's cgroup (<parent>/<id>).
	CgroupParent string
	Images       *images.Store
	// Binary is the shoal binary that is re-executed as the supervisor of
	// exec'd processes and copied in as --init. It must not be writable by
	// anyone (a sealed view).
	Binary string
	// Shim is the binary executed as each container's shim and init (roles
	// "shim" and "init", as cmd/shoal-shim's); empty means Binary. It must
	// not be writable by anyone either.
	Shim string
	// Released is called after a container is removed (the daemon frees its network).
	Released func(id string)
	// Events receives the container events (create, start, die, ...); nil drops them.
	Events EventPublisher
	// Restart starts a container for its restart policy (the daemon's
	// start, which sets up the container's network first); nil is Start.
	// ctx must be passed on to Start: it marks the start as a restart.
	Restart func(ctx context.Context, id string) error
}

// Engine runs and keeps the containers of one daemon.
type Engine struct {
	opts Options
	rt   *runtime.Runtime
	ctx  context.Context // ends with the engine: monitors stop on it

	mu      sync.Mutex // guards records and execs
	records map[string]*record
	execs   map[string]*execRecord

	frozen pauses // commits holding a container frozen

	init initCopy // the --init binary

	// restartsOn is closed by EnableRestarts: restarts wait for it.
	restartsOn  chan struct{}
	restartOnce sync.Once

	// shimPool starts the shim processes and hands containers to them.
	shimPool shimPool

	// trash takes removed containers' directories to emptyTrash.
	trash chan []string

	// userDBs are image layer stacks' /etc/passwd and /etc/group.
	userDBs userDBCache
}

type record struct {
	// opMu serialises Start and Remove of this container (two starts, or a
	// start and a remove, would otherwise race over its bundle, shim and
	// cgroup). It is taken before saveMu and e.mu, and is not held while
	// calling out of the engine (opts.Released).
	opMu sync.Mutex
	// saveMu serialises the writes of this record's config.v2.json, so the
	// file always ends with the latest state; it is taken before e.mu.
	saveMu  sync.Mutex
	c       Container
	changed chan struct{} // closed and replaced on every change
	removed bool          // Remove has begun: invisible to lookups
	gone    bool          // Remove has finished: nothing of it is left
	pending []*attachReq  // attach requests waiting for the start

	// Guarded by the engine's mu:
	// restartDelay is the last back-off of the restart policy.
	restartDelay time.Duration
	// restartCancel, when not nil, cancels the pending restart.
	restartCancel chan struct{}
	// healthCancel ends the healthcheck of the current run; healthDone is
	// closed when its goroutine has ended.
	healthCancel context.CancelFunc
	healthDone   chan struct{}
}

var namePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`) })

// Open loads the containers under opts.Root and re-adopts running ones.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Images == nil || opts.Root == "" || opts.ExecRoot == "" || opts.Binary == "" {
		return nil, fmt.Errorf("%w: containers.Open needs Root, ExecRoot, Images and Binary", ErrInvalidArgument)
	}
	if opts.CgroupParent == "" {
		opts.CgroupParent = "shoal"
	}
	if opts.Shim == "" {
		opts.Shim = opts.Binary
	}
	for _, d := range []string{filepath.Join(opts.Root, "containers"), filepath.Join(opts.ExecRoot, "containers"), filepath.Join(opts.ExecRoot, "shim"),
		filepath.Join(opts.Root, "trash"), filepath.Join(opts.ExecRoot, "trash")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("containers: %w", err)
		}
	}
	// What removals before a crash had not deleted yet.
	for _, root := range []string{opts.Root, opts.ExecRoot} {
		left, _ := filepath.Glob(filepath.Join(root, "trash", "*"))
		removeAll(left)
	}
	rt := runtime.New(filepath.Join(opts.ExecRoot, "runtime"))
	rt.CgroupParent = cgroupParent(opts.CgroupParent)
	e := &Engine{opts: opts, rt: rt, ctx: ctx, records: map[string]*record{}, execs: map[string]*execRecord{}, restartsOn: make(chan struct{}),
		trash: make(chan []string, 64)}
	go e.emptyTrash()
	ents, err := os.ReadDir(filepath.Join(opts.Root, "containers"))
	if err != nil {
		return nil, fmt.Errorf("containers: %w", err)
	}
	var leftover []string
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(opts.Root, "containers", ent.Name(), "config.v2.json"))
		if err != nil {
			// A create that died before writing its record: nothing to keep.
			e.cleanup(ent.Name())
			continue
		}
		var c Container
		if err := json.Unmarshal(b, &c); err != nil || c.ID != ent.Name() {
			continue
		}
		r := &record{c: c, changed: make(chan struct{})}
		e.records[c.ID] = r
		e.loadExecs(c.ID)
		if c.State.Running {
			e.readopt(r)
		} else {
			// A shim killed before it cleaned up leaves the runtime's state
			// and cgroup behind; a stopped container needs neither.
			_ = rt.Delete(ctx, c.ID, true)
			if c.Config.AutoRemove {
				leftover = append(leftover, c.ID)
			}
		}
	}
	// A --rm container that is not running (its removal was cut short, or
	// it was created and never started) is removed, as dockerd does at its
	// start. This is also why a --rm container's record need not be synced:
	// whatever a crash kept of it, it is removed here.
	// One that cannot be removed stays listed, for the user to remove.
	for _, id := range leftover {
		if err := e.Remove(ctx, id, true); err != nil && !errors.Is(err, ErrNotFound) {
			slog.Warn("remove a --rm container left from before", "container", id, "err", err)
		}
	}
	return e, nil
}

func cgroupParent(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return "/" + p
}

// readopt reconnects to the shim of a container that was running when the
// daemon stopped, or records the exit the shim left behind.
func (e *Engine) readopt(r *record) {
	id := r.c.ID
	// Ask the shim rather than trust the socket's presence: the container
	// may have ended a moment ago, with the shim about to go.
	if st, err := shim.QueryState(e.shimDir(id)); err == nil {
		if st.Exit != nil {
			e.setExited(id, *st.Exit)
			return
		}
		if st.Running && e.startMonitor(id) == nil {
			e.resumeHealth(id)
			return
		}
	}
	ex, err := readExit(e.opts.ExecRoot, id)
	if err != nil {
		// The shim died with the container without a record (e.g. kill -9 of both).
		ex.ExitCode, ex.FinishedAt = 137, time.Now().UTC()
		ex.Error = "container's shim is gone"
	}
	_ = e.rt.Delete(context.Background(), id, true)
	e.setExited(id, ex)
}

func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (e *Engine) containerDir(id string) string { return filepath.Join(e.opts.Root, "containers", id) }
func (e *Engine) bundleDir(id string) string    { return filepath.Join(e.opts.ExecRoot, "containers", id) }
func (e *Engine) shimDir(id string) string      { return filepath.Join(e.opts.ExecRoot, "shim", id) }

// LogPath is the json-file log of a container.
func (e *Engine) LogPath(id string) string {
	return filepath.Join(e.containerDir(id), id+"-json.log")
}

// persist writes a record durably; it is called without e.mu held.
func (e *Engine) persist(c Container) error {
	return e.save(c, true)
}

// save writes a record, durably or not (atomicfile.Replace: what a machine
// crash undoes by itself, such as a container marked running or its
// addresses, need not wait for the disk).
func (e *Engine) save(c Container, durable bool) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	write := atomicfile.WriteFile
	if !durable {
		write = atomicfile.Replace
	}
	// 0600: the record holds the container's environment.
	if err := write(filepath.Join(e.containerDir(c.ID), "config.v2.json"), b, 0o600); err != nil {
		return fmt.Errorf("save container %s: %w", c.ID[:12], err)
	}
	return nil
}

// update applies fn to a record, persists it and then broadcasts the change:
// a waiter that sees the new state can rely on it being on disk (a daemon
// restarted right after a Wait reads the same state).
func (e *Engine) update(id string, fn func(c *Container)) (Container, error) {
	return e.modify(id, saveDurable, fn)
}

// updateState is update for a change a machine crash makes moot (the
// record is written without waiting for the disk): a start (after a crash
// the container is not running, whatever the record says), its network
// settings, pause, health. An exit, a rename or a policy's choice stay
// durable.
func (e *Engine) updateState(id string, fn func(c *Container)) (Container, error) {
	return e.modify(id, saveAtomic, fn)
}

// saveMode is how modify writes a record.
type saveMode int

const (
	saveDurable saveMode = iota // synced (atomicfile.WriteFile)
	saveAtomic                  // not synced (atomicfile.Replace)
	saveNone                    // not written: memory only, still broadcast
)

func (e *Engine) modify(id string, mode saveMode, fn func(c *Container)) (Container, error) {
	e.mu.Lock()
	r, ok := e.records[id]
	e.mu.Unlock()
	if !ok {
		return Container{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	e.mu.Lock()
	if r.removed {
		e.mu.Unlock()
		return Container{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	fn(&r.c)
	c := r.c
	e.mu.Unlock()
	var err error
	if mode != saveNone {
		err = e.save(c, mode == saveDurable)
	}
	e.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	e.mu.Unlock()
	return c, err
}

// lockOp finds a container and takes its operation lock; the record it
// returns is current (not removed) and must be unlocked with r.opMu.Unlock.
func (e *Engine) lockOp(idOrName string) (*record, error) {
	e.mu.Lock()
	r, err := e.lookupLocked(idOrName)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	r.opMu.Lock()
	e.mu.Lock()
	removed := r.removed
	e.mu.Unlock()
	if removed {
		// Removed while this call waited for the lock.
		r.opMu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, idOrName)
	}
	return r, nil
}

// Get finds a container by full ID, name or unique ID prefix.
func (e *Engine) Get(idOrName string) (Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.lookupLocked(idOrName)
	if err != nil {
		return Container{}, err
	}
	return r.c, nil
}

func (e *Engine) lookupLocked(idOrName string) (*record, error) {
	if idOrName == "" {
		return nil, fmt.Errorf("%w: ", ErrNotFound)
	}
	if r, ok := e.records[idOrName]; ok && !r.removed {
		return r, nil
	}
	name := "/" + strings.TrimPrefix(idOrName, "/")
	for _, r := range e.records {
		if r.c.Name == name && !r.removed {
			return r, nil
		}
	}
	var found *record
	for id, r := range e.records {
		if strings.HasPrefix(id, idOrName) && !r.removed {
			if found != nil {
				return nil, fmt.Errorf("%w: multiple IDs found with provided prefix: %s", ErrInvalidArgument, idOrName)
			}
			found = r
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, idOrName)
	}
	return found, nil
}

// List returns the containers, newest first; all includes stopped ones.
func (e *Engine) List(all bool) []Container {
	e.mu.Lock()
	var out []Container
	for _, r := range e.records {
		if !r.removed && (all || r.c.State.Running || r.c.State.Restarting) {
			out = append(out, r.c)
		}
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// ImageInUse reports whether a container uses the image ID.
func (e *Engine) ImageInUse(imageID string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.records {
		if r.c.ImageID == imageID && !r.removed {
			return r.c.ID, true
		}
	}
	return "", false
}

// Wait conditions, as in the Engine API.
const (
	WaitNotRunning = "not-running"
	WaitNextExit   = "next-exit"
	WaitRemoved    = "removed"
)

// WaitRegistered is Wait with a callback run once the wait is registered
// (the daemon flushes its response headers then, as dockerd does).
func (e *Engine) Wait(ctx context.Context, idOrName, condition string, registered func()) (State, error) {
	e.mu.Lock()
	r, err := e.lookupLocked(idOrName)
	if err != nil {
		e.mu.Unlock()
		return State{}, err
	}
	exitedBefore := r.c.State.FinishedAt
	e.mu.Unlock()
	if registered != nil {
		registered()
	}
	for {
		e.mu.Lock()
		st, removed, gone, ch := r.c.State, r.removed, r.gone, r.changed
		e.mu.Unlock()
		switch condition {
		case WaitRemoved:
			if gone {
				return st, nil
			}
		case WaitNextExit:
			if !st.Running && st.FinishedAt.After(exitedBefore) {
				return st, nil
			}
			if removed {
				return st, nil
			}
		default:
			if !st.Running || removed {
				return st, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// cleanup removes every trace of a container that has no record.
func (e *Engine) cleanup(id string) {
	removeAll(e.detach(id))
}

// detach does cleanup's work but for the deletion of the directories: they
// are renamed out of the container's paths, into a trash directory on their
// filesystem, and returned for removeAll. A removal answers its waiters
// in between: the container is gone, and the deletion of its files (1-2 ms
// of unlinks for a container that wrote nothing) is not on their path. A
// trash left by a crash is emptied by the next Open.
func (e *Engine) detach(id string) []string {
	_ = e.rt.Delete(context.Background(), id, true)
	unmountRootfs(e.bundleDir(id))
	var trash []string
	if p, _ := e.opts.Images.DetachRootfs(context.Background(), id); p != "" {
		trash = append(trash, p)
	}
	for _, d := range []struct{ root, dir string }{
		{e.opts.ExecRoot, e.bundleDir(id)},
		{e.opts.ExecRoot, e.shimDir(id)},
		{e.opts.ExecRoot, filepath.Join(e.opts.ExecRoot, "execs", id)},
		{e.opts.Root, e.containerDir(id)},
	} {
		if p := moveToTrash(d.root, d.dir); p != "" {
			trash = append(trash, p)
		}
	}
	return trash
}

// moveToTrash renames dir into root/trash and returns its new path; a dir
// that does not exist gives "", one that cannot be moved is removed here.
func moveToTrash(root, dir string) string {
	p := filepath.Join(root, "trash", filepath.Base(dir)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	err := os.Rename(dir, p)
	if err == nil {
		return p
	}
	if !errors.Is(err, fs.ErrNotExist) {
		os.RemoveAll(dir)
	}
	return ""
}

func removeAll(paths []string) {
	for _, p := range paths {
		os.RemoveAll(p)
	}
}

// discard removes paths in the background, by the engine's trash goroutine
// (emptyTrash); if that is behind, here.
func (e *Engine) discard(paths []string) {
	if len(paths) == 0 {
		return
	}
	select {
	case e.trash <- paths:
	default:
		removeAll(paths)
	}
}

// emptyTrash removes what discard hands it until the engine's context ends.
func (e *Engine) emptyTrash() {
	for {
		select {
		case <-e.ctx.Done():
			return
		case paths := <-e.trash:
			removeAll(paths)
		}
	}
}

// SetNetwork records the namespace a created container joins and its addresses.
//
// Given to a container that is not running, they are kept in memory only:
// the daemon sets them just before Start, which writes the record with the
// running state anyway (one write of it per start instead of two). A crash
// in between leaves the record without them and the namespace known to the
// network's own state, which releases it at the container's next start or
// its removal. Their clearing after a --rm container's exit is not written
// either: the record goes with the removal that follows.
func (e *Engine) SetNetwork(id, netnsPath string, s NetworkSettings) error {
	set := func(c *Container) {
		c.Config.NetNSPath = netnsPath
		c.Config.Network = s
	}
	e.mu.Lock()
	r, ok := e.records[id]
	inMemory := ok && !r.removed && !r.c.State.Running && (netnsPath != "" || r.c.Config.AutoRemove)
	if inMemory {
		set(&r.c)
		close(r.changed)
		r.changed = make(chan struct{})
	}
	e.mu.Unlock()
	if inMemory {
		return nil
	}
	_, err := e.updateState(id, set)
	return err
}
