package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/containerd/cgroups"
)

// containerState is what state.json holds.
type containerState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Pid         int               `json:"pid"`
	StartTime   uint64            `json:"pidStartTime"` // /proc/<pid>/stat field 22
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	CgroupMode  cgroups.Mode      `json:"cgroupMode"`
	CgroupRoot  string            `json:"cgroupRoot"`
	CgroupPath  string            `json:"cgroupPath"`
	// NoHooks records that config.json has no hooks, so that start and
	// delete need not decode it again to find out. False (a state written
	// before the field) means: look.
	NoHooks bool `json:"noHooks,omitempty"`
}

const (
	stateFile  = "state.json"
	configFile = "config.json"
	fifoFile   = "exec.fifo"
)

func (r *Runtime) dir(id string) string { return filepath.Join(r.root, id) }

func (r *Runtime) load(id string) (*containerState, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(r.dir(id), stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	var st containerState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("container %s: corrupt state: %w", id, err)
	}
	return &st, nil
}

// save writes state.json atomically (rename), so a reader never sees half;
// not durably: it lives under the exec root, which a machine crash clears
// (a tmpfs in an install), and so does the container it describes.
func (r *Runtime) save(st *containerState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := atomicfile.Replace(filepath.Join(r.dir(st.ID), stateFile), b, 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// procStat returns the state letter and start time (field 22, clock ticks
// since boot) of pid, or ok=false when there is no such process.
func procStat(pid int) (state byte, start uint64, ok bool) {
	if pid <= 0 {
		return 0, 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	return parseStat(b)
}

// parseStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and ')', so fields are counted
// from the last ')'.
func parseStat(b []byte) (state byte, start uint64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state); field 22 is fields[19].
	if len(fields) < 20 {
		return 0, 0, false
	}
	start, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], start, true
}

// alive reports whether the recorded init is still the same, non-zombie
// process.
func alive(pid int, start uint64) bool {
	state, s, ok := procStat(pid)
	if !ok || s != start {
		return false
	}
	return state != 'Z' && state != 'X' && state != 'x'
}

// status derives the OCI status of a recorded container.
func (r *Runtime) status(st *containerState) specs.ContainerState {
	if st.Pid == 0 {
		return specs.StateCreating
	}
	if !alive(st.Pid, st.StartTime) {
		return specs.StateStopped
	}
	if _, err := os.Lstat(filepath.Join(r.dir(st.ID), fifoFile)); err == nil {
		return specs.StateCreated
	}
	return specs.StateRunning
}
