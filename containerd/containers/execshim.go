package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/runtime"
)

// An exec'd process is not the daemon's child but that of a small
// supervisor, the engine's binary re-executed as `exec-shim` in its own
// session: it starts the process in the container, waits for it and writes
// its exit code to a file. A daemon that is killed or restarted meanwhile
// loses nothing: the next one reloads the exec's record, watches the
// supervisor and reads the code it left. The process's stdio are the
// supervisor's, which it closes once the process has them, so that the
// daemon's readers see EOF when the process (not the supervisor) is done.
//
// Files, under <exec root>/execs/<container ID>/<exec ID>/: process.json
// (the process to run), record.json (the exec's state, for inspect after a
// restart) and exit.json (written by the supervisor).

// ExecShimArg is the first argument that makes the engine's binary the exec
// supervisor; the binary's main must call ExecShimMain for it.
const ExecShimArg = "exec-shim"

// execExit is what the supervisor writes when the process is done, and
// reports on fd 3 once it has started (Pid) or could not start (Error).
type execExit struct {
	Pid      int    `json:"pid,omitempty"`
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
	Started  bool   `json:"started,omitempty"`
}

// execFile is the persisted record of an exec.
type execFile struct {
	ExecState
	// Supervisor is the exec-shim's pid while the process runs.
	Supervisor int `json:"supervisor,omitempty"`
}

func (e *Engine) execDir(containerID, execID string) string {
	return filepath.Join(e.opts.ExecRoot, "execs", containerID, execID)
}

// saveExec persists an exec's record; a failure only costs the record
// after a restart, so it is reported but not fatal to the exec.
func (e *Engine) saveExec(x execFile) error {
	b, err := json.Marshal(x)
	if err != nil {
		return err
	}
	return atomicfile.Replace(filepath.Join(e.execDir(x.ContainerID, x.ID), "record.json"), b, 0o600)
}

// startExecShim starts the supervisor of process p in container cid with
// the given stdio (stdin may be nil) and returns it, with the process's pid,
// once the process runs. A process that cannot start is an *ExecError.
func (e *Engine) startExecShim(cid, execID string, p specs.Process, stdin, stdout, stderr *os.File) (*os.Process, int, error) {
	dir := e.execDir(cid, execID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("exec %s: %w", execID[:12], err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, 0, err
	}
	if err := atomicfile.Replace(filepath.Join(dir, "process.json"), b, 0o600); err != nil {
		return nil, 0, fmt.Errorf("exec %s: %w", execID[:12], err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, 0, err
	}
	defer statusR.Close()
	args := []string{ExecShimArg, "--runtime-root", filepath.Join(e.opts.ExecRoot, "runtime"), "--id", cid, "--dir", dir}
	if stdin != nil {
		args = append(args, "--stdin")
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		statusW.Close()
		return nil, 0, err
	}
	defer null.Close()
	attr := &os.ProcAttr{
		Files: []*os.File{null, stdout, stderr, statusW},
		// Its own session: signals to the daemon's group never reach it.
		Sys: &syscall.SysProcAttr{Setsid: true},
	}
	if stdin != nil {
		attr.Files[0] = stdin
	}
	sup, err := os.StartProcess(e.opts.Binary, append([]string{e.opts.Binary}, args...), attr)
	statusW.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("start exec supervisor: %w", err)
	}
	var st execExit
	if err := json.NewDecoder(statusR).Decode(&st); err != nil || !st.Started {
		_, _ = sup.Wait()
		if err != nil {
			return nil, 0, &ExecError{Code: 126, Msg: fmt.Sprintf("OCI runtime exec failed: exec supervisor ended during start: %v", err)}
		}
		return nil, 0, &ExecError{Code: st.ExitCode, Msg: st.Error}
	}
	return sup, st.Pid, nil
}

// readExecExit reads the exit code a supervisor left; ok is false when it
// left none (it was killed).
func readExecExit(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "exit.json"))
	if err != nil {
		return 0, false
	}
	var x execExit
	if json.Unmarshal(b, &x) != nil {
		return 0, false
	}
	return x.ExitCode, true
}

// loadExecs reloads the exec records of container cid after a restart and
// watches the supervisors of the ones still running.
func (e *Engine) loadExecs(cid string) {
	ents, _ := os.ReadDir(filepath.Join(e.opts.ExecRoot, "execs", cid))
	for _, ent := range ents {
		dir := e.execDir(cid, ent.Name())
		b, err := os.ReadFile(filepath.Join(dir, "record.json"))
		if err != nil {
			continue
		}
		var x execFile
		if json.Unmarshal(b, &x) != nil || x.ID != ent.Name() {
			continue
		}
		rec := &execRecord{ExecState: x.ExecState, started: true}
		e.execs[x.ID] = rec
		if !x.Running {
			continue
		}
		if code, ok := readExecExit(dir); ok {
			rec.Running, rec.ExitCode = false, code
			continue
		}
		fd, err := unix.PidfdOpen(x.Supervisor, 0)
		if err != nil || !isExecShim(x.Supervisor, dir) {
			if err == nil {
				unix.Close(fd)
			}
			// The supervisor is gone without a word (killed with the
			// daemon): the code is unknown, reported as a kill.
			rec.Running, rec.ExitCode = false, 137
			continue
		}
		go e.watchExecShim(fd, x)
	}
}

// isExecShim checks that pid is still the supervisor of the exec in dir
// (and not a reused pid).
func isExecShim(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "\x00"+dir+"\x00")
}

// watchExecShim waits for a supervisor that is not this daemon's child (a
// pidfd turns readable when it ends) and records the exit it left.
func (e *Engine) watchExecShim(fd int, x execFile) {
	defer unix.Close(fd)
	for e.ctx.Err() == nil {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if n <= 0 {
			continue
		}
		code, ok := readExecExit(e.execDir(x.ContainerID, x.ID))
		if !ok {
			code = 137
		}
		e.finishExec(x, code)
		return
	}
}

// finishExec records an exec's exit in memory and on disk.
func (e *Engine) finishExec(x execFile, code int) {
	e.setExec(x.ID, func(r *execRecord) { r.Running, r.ExitCode = false, code })
	x.Running, x.ExitCode, x.Supervisor = false, code, 0
	_ = e.saveExec(x)
	e.emitID("exec_die", x.ContainerID, map[string]string{"execID": x.ID, "exitCode": strconv.Itoa(code)})
}

// ExecShimMain is the exec supervisor: `exec-shim --runtime-root DIR --id
// CONTAINER --dir EXECDIR [--stdin]`, with the process's stdio on fds 0-2
// and the start report on fd 3. It does not return.
func ExecShimMain(args []string) {
	status := os.NewFile(3, "status")
	var root, id, dir string
	stdin := false
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--stdin":
			stdin = true
		case i+1 < len(args) && args[i] == "--runtime-root":
			i++
			root = args[i]
		case i+1 < len(args) && args[i] == "--id":
			i++
			id = args[i]
		case i+1 < len(args) && args[i] == "--dir":
			i++
			dir = args[i]
		}
	}
	fail := func(code int, err error) {
		_ = json.NewEncoder(status).Encode(execExit{ExitCode: code, Error: err.Error()})
		os.Exit(1)
	}
	if root == "" || id == "" || dir == "" {
		fail(126, errors.New("exec-shim: --runtime-root, --id and --dir are needed"))
	}
	var p specs.Process
	b, err := os.ReadFile(filepath.Join(dir, "process.json"))
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err != nil {
		fail(126, fmt.Errorf("exec-shim: %w", err))
	}
	stdio := runtime.Stdio{Stdout: os.Stdout, Stderr: os.Stderr}
	if stdin {
		stdio.Stdin = os.Stdin
	}
	proc, err := runtime.New(root).Exec(context.Background(), id, p, stdio)
	if err != nil {
		code := 126
		if errors.Is(err, runtime.ErrExecNotFound) {
			code = 127
		}
		fail(code, fmt.Errorf("OCI runtime exec failed: %w", err))
	}
	// The process has its stdio: the daemon's readers must see EOF when it
	// (not this supervisor) closes them.
	os.Stdin.Close()
	os.Stdout.Close()
	os.Stderr.Close()
	_ = json.NewEncoder(status).Encode(execExit{Pid: proc.Pid, Started: true})
	status.Close()
	ps, werr := proc.Wait()
	code := -1
	if werr == nil {
		code = ps.ExitCode()
		// Killed by a signal: 128+N, as a shell and Docker report it.
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	x, _ := json.Marshal(execExit{ExitCode: code, Started: true})
	for i := 0; ; i++ {
		// The code is the one thing this process is for: retry a failed
		// write (a full disk) for a while rather than lose it; but a
		// removed container's directory is gone for good.
		err := atomicfile.Replace(filepath.Join(dir, "exit.json"), x, 0o600)
		if err == nil || errors.Is(err, os.ErrNotExist) || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	os.Exit(0)
}
