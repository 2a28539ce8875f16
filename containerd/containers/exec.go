package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shim"
)

// ExecConfig is a process to run in a running container.
type ExecConfig struct {
	Cmd         []string
	Env         []string
	WorkingDir  string
	User        string
	AttachStdin bool
	// Tty runs the process on a pseudo-terminal held by the engine;
	// ConsoleSize is its initial [height, width], zero for the default.
	Tty         bool
	ConsoleSize [2]uint16
	// DetachKeys are the client's escape sequence (docker's syntax) for
	// ending its attach to a Tty exec; the daemon interprets them.
	DetachKeys string
}

// ExecState is what ExecInspect reports.
type ExecState struct {
	ID          string
	ContainerID string
	Config      ExecConfig
	Running     bool
	ExitCode    int
	Pid         int
}

type execRecord struct {
	ExecState
	started bool
	console *os.File // the pty master of a Tty exec while it runs
}

// ExecCreate registers a process to run in a running container.
func (e *Engine) ExecCreate(idOrName string, cfg ExecConfig) (string, error) {
	c, err := e.Get(idOrName)
	if err != nil {
		return "", err
	}
	if !c.State.Running {
		return "", fmt.Errorf("%w: Container %s is not running", ErrConflict, c.ID)
	}
	if c.State.Paused {
		// Its process would start frozen and the exec hang.
		return "", fmt.Errorf("%w: Container %s is paused, unpause the container before exec", ErrConflict, idOrName)
	}
	if len(cfg.Cmd) == 0 {
		return "", fmt.Errorf("%w: no exec command specified", ErrInvalidArgument)
	}
	id := newID()
	e.mu.Lock()
	e.execs[id] = &execRecord{ExecState: ExecState{ID: id, ContainerID: c.ID, Config: cfg}}
	e.mu.Unlock()
	e.emit(execAction("exec_create", cfg.Cmd), c, map[string]string{"execID": id})
	return id, nil
}

// execAction is an exec event's action as dockerd writes it: the
// entrypoint, a space, the arguments ("exec_start: true " for no argument).
func execAction(verb string, cmd []string) string {
	return verb + ": " + cmd[0] + " " + strings.Join(cmd[1:], " ")
}

// ExecInspect reports an exec's state.
func (e *Engine) ExecInspect(execID string) (ExecState, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.execs[execID]
	if !ok {
		return ExecState{}, fmt.Errorf("%w: No such exec instance: %s", ErrNotFound, execID)
	}
	return x.ExecState, nil
}

// ExecIDs are the execs of container id that have not ended: created and
// not started, or running (inspect's ExecIDs: dockerd drops an exec from
// its container's list when it exits). Nil for none, sorted.
func (e *Engine) ExecIDs(id string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for xid, x := range e.execs {
		if x.ContainerID == id && (!x.started || x.Running) {
			out = append(out, xid)
		}
	}
	slices.Sort(out)
	return out
}

// ExecStart runs the exec, streaming its output to out as stdcopy frames
// and stdin (if attached) to it, and returns when it has exited.
func (e *Engine) ExecStart(ctx context.Context, execID string, stdin io.Reader, out io.Writer) error {
	e.mu.Lock()
	x, ok := e.execs[execID]
	if !ok {
		e.mu.Unlock()
		return fmt.Errorf("%w: No such exec instance: %s", ErrNotFound, execID)
	}
	if x.started {
		e.mu.Unlock()
		return fmt.Errorf("%w: Error: Exec command %s has already run", ErrConflict, execID)
	}
	x.started = true
	st := x.ExecState
	e.mu.Unlock()

	// What fails before the process exists (an unknown user, say) fails
	// the exec as dockerd's does: exit code 126.
	notStarted := func(err error) error {
		e.setExec(execID, func(x *execRecord) { x.ExitCode = 126 })
		return err
	}
	c, err := e.Get(st.ContainerID)
	if err != nil {
		return notStarted(err)
	}
	p, err := e.execProcess(c, st.Config)
	if err != nil {
		return notStarted(err)
	}
	sio, err := openExecStdio(st.Config, c.State.Pid, stdin != nil)
	if err != nil {
		return notStarted(err)
	}
	// A client resizes as soon as its stream is up: the console takes it
	// from now on.
	e.setExec(execID, func(x *execRecord) { x.console = sio.console })
	sup, pid, err := e.startExecShim(c.ID, execID, p, sio.childIn, sio.childOut, sio.childErr)
	sio.closeChildEnds()
	if err != nil {
		e.setExec(execID, func(x *execRecord) { x.console = nil })
		sio.closeParentEnds()
		ee := &ExecError{Code: 126, Msg: err.Error()}
		errors.As(err, &ee)
		e.setExec(execID, func(x *execRecord) { x.ExitCode = ee.Code })
		return ee
	}
	rec := execFile{ExecState: st, Supervisor: sup.Pid}
	rec.Running, rec.Pid = true, pid
	// On disk before it shows as running: whoever sees it running (inspect)
	// can count on a restarted daemon finding it.
	_ = e.saveExec(rec)
	e.setExec(execID, func(x *execRecord) { x.Running, x.Pid = true, pid })
	e.emit(execAction("exec_start", st.Config.Cmd), c, map[string]string{"execID": execID})
	if sio.in != nil {
		go func() {
			_, _ = io.Copy(sio.in, stdin)
			// A console's master carries the output too: it stays open.
			if sio.console == nil {
				sio.in.Close()
			}
		}()
	}
	var mu sync.Mutex // serialises frames from the two streams
	var wg sync.WaitGroup
	for _, s := range sio.outputs {
		wg.Add(1)
		go func(n byte, r *os.File) {
			defer wg.Done()
			buf := make([]byte, 32*1024)
			for {
				k, err := r.Read(buf)
				if k > 0 {
					mu.Lock()
					_ = shim.WriteFrame(out, n, buf[:k])
					mu.Unlock()
				}
				if err != nil {
					return
				}
			}
		}(s.n, s.r)
	}
	runtime.AwaitExit(sup.Pid)
	_, werr := sup.Wait()
	shim.DrainOutput(&wg, sio.console)
	e.setExec(execID, func(x *execRecord) { x.console = nil })
	sio.closeParentEnds()
	code, ok := readExecExit(e.execDir(c.ID, execID))
	if werr != nil || !ok {
		code = 137 // the supervisor was killed: the process went with it or is unknown
	}
	e.finishExec(rec, code)
	return nil
}

// ExecResize sets the terminal size of a running Tty exec.
func (e *Engine) ExecResize(execID string, height, width uint16) error {
	e.mu.Lock()
	x, ok := e.execs[execID]
	var console *os.File
	if ok {
		console = x.console
	}
	e.mu.Unlock()
	switch {
	case !ok:
		return fmt.Errorf("%w: No such exec instance: %s", ErrNotFound, execID)
	case !x.Config.Tty:
		return fmt.Errorf("%w: exec %s has no terminal (-t)", ErrConflict, execID)
	case console == nil:
		return fmt.Errorf("%w: exec %s is not running", ErrConflict, execID)
	}
	if err := runtime.Resize(console, height, width); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	return nil
}

func (e *Engine) setExec(id string, fn func(*execRecord)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.execs[id]; ok {
		fn(x)
	}
}

// execProcess is the container's process settings (capabilities, rlimits,
// no_new_privs) with the exec's command, env, cwd and user.
func (e *Engine) execProcess(c Container, cfg ExecConfig) (specs.Process, error) {
	b, err := os.ReadFile(filepath.Join(e.bundleDir(c.ID), "config.json"))
	if err != nil {
		return specs.Process{}, fmt.Errorf("exec in %s: %w", c.ID[:12], err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil || s.Process == nil {
		return specs.Process{}, fmt.Errorf("exec in %s: bad bundle", c.ID[:12])
	}
	p := *s.Process
	p.Args = cfg.Cmd
	// The exec's own choice, whatever the container's.
	p.Terminal = cfg.Tty
	p.Env = mergeEnv(p.Env, cfg.Env)
	if cfg.WorkingDir != "" {
		p.Cwd = cfg.WorkingDir
	}
	if cfg.User != "" {
		rootfs, release, err := e.rootView(c)
		if err != nil {
			return specs.Process{}, fmt.Errorf("exec in %s: %w", c.ID[:12], err)
		}
		db, err := readUserDB(rootfs)
		release()
		if err != nil {
			return specs.Process{}, err
		}
		if p.User, err = processUser(db, cfg.User); err != nil {
			return specs.Process{}, err
		}
		// HOME follows the exec's user (runc sets it from /etc/passwd),
		// unless the exec sets it or the container's is not the default
		// its own user got.
		if !hasEnv(cfg.Env, "HOME") && envValue(p.Env, "HOME") == userHome(db, s.Process.User.UID) {
			p.Env = mergeEnv(p.Env, []string{"HOME=" + userHome(db, p.User.UID)})
		}
		// The container's --group-add applies to its execs too, as in Docker.
		gids, err := groupIDs(db, c.Config.GroupAdd)
		if err != nil {
			return specs.Process{}, err
		}
		addGroups(&p.User, gids)
	}
	return p, nil
}

// LogsOptions select a container's log records.
type LogsOptions = logs.ReadOptions

// Logs calls fn for each record of the container's log; with Follow it
// returns when the container has stopped and the log is drained.
func (e *Engine) Logs(ctx context.Context, idOrName string, opts LogsOptions, fn func(logs.Entry) error) error {
	c, err := e.Get(idOrName)
	if err != nil {
		return err
	}
	opts.Config = c.Config.Log
	opts.Done = func() bool {
		cur, err := e.Get(c.ID)
		return err != nil || !cur.State.Running
	}
	return logs.Read(ctx, e.LogPath(c.ID), opts, fn)
}
