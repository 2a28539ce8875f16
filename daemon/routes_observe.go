package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal-project/shoal/containerd/containers"
)

// Lifecycle and observation of containers: pause, unpause, rename, update,
// stats and changes (the diff).

// containerObserver is what these routes need of the engine beyond
// containerService.
type containerObserver interface {
	Pause(ctx context.Context, idOrName string) error
	Unpause(idOrName string) error
	Rename(idOrName, newName string) error
	Update(idOrName string, upd containers.UpdateConfig) (containers.Container, error)
	Stats(idOrName string) (containers.Stats, error)
	Changes(idOrName string) ([]containers.Change, error)
	SizeRw(idOrName string) (int64, error)
}

func (d *Daemon) observeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /containers/{id}/pause", d.containerPause)
	mux.HandleFunc("POST /containers/{id}/unpause", d.containerUnpause)
	mux.HandleFunc("POST /containers/{id}/rename", d.containerRename)
	mux.HandleFunc("POST /containers/{id}/update", d.containerUpdate)
	mux.HandleFunc("GET /containers/{id}/stats", d.containerStats)
	mux.HandleFunc("GET /containers/{id}/changes", d.containerChanges)
	mux.HandleFunc("GET /events", d.eventsStream)
	mux.HandleFunc("GET /system/df", d.systemDF)
	mux.HandleFunc("POST /build/prune", d.buildPrune)
}

func (d *Daemon) containerPause(w http.ResponseWriter, r *http.Request) {
	if err := d.containers.Pause(r.Context(), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) containerUnpause(w http.ResponseWriter, r *http.Request) {
	if err := d.containers.Unpause(r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Daemon) containerRename(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if name == "" {
		writeError(w, badRequest("Neither old nor new names may be empty"))
		return
	}
	if err := d.containers.Rename(r.PathValue("id"), name); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// containerUpdate is `update`: new CPU, memory and pids limits, written to
// a running container's cgroup, and a new restart policy, which its next
// exit follows. Every other resource is refused by name rather than
// accepted and not applied.
func (d *Daemon) containerUpdate(w http.ResponseWriter, r *http.Request) {
	var upd container.UpdateConfig
	if err := decodeJSON(r, &upd); err != nil {
		writeError(w, err)
		return
	}
	res := upd.Resources
	if opt := unsupportedHostOption(&container.HostConfig{Resources: res}); opt != "" {
		writeError(w, badRequest("%s cannot be updated: not supported", opt))
		return
	}
	switch {
	case len(res.Devices) > 0 || len(res.Ulimits) > 0:
		writeError(w, badRequest("devices and ulimits cannot be updated"))
		return
	case res.Memory < 0 || res.NanoCPUs < 0 || res.CPUShares < 0 || res.MemorySwap < -1:
		writeError(w, badRequest("invalid resources: memory, CPUs and CPU shares cannot be negative"))
		return
	case res.Memory > 0 && res.Memory < minMemory:
		writeError(w, badRequest("Minimum memory limit allowed is 6MB"))
		return
	case res.NanoCPUs > int64(runtime.NumCPU())*1e9 || res.NanoCPUs > 0 && res.NanoCPUs < 1e7:
		writeError(w, badRequest("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", runtime.NumCPU(), runtime.NumCPU()))
		return
	}
	cu := containers.UpdateConfig{
		Memory: res.Memory, MemorySwap: res.MemorySwap, NanoCPUs: res.NanoCPUs, CPUShares: res.CPUShares,
		PidsLimit: res.PidsLimit, CpusetCpus: res.CpusetCpus, CpusetMems: res.CpusetMems,
	}
	if p := upd.RestartPolicy; p.Name != "" {
		cu.RestartPolicy = &containers.RestartPolicy{Name: string(p.Name), MaximumRetryCount: p.MaximumRetryCount}
	}
	_, err := d.containers.Update(r.PathValue("id"), cu)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, container.UpdateResponse{Warnings: []string{}})
}

// statsInterval is how often a stats stream sends a sample, as dockerd.
const statsInterval = time.Second

// containerStats is GET /containers/{id}/stats in Docker's JSON: a sample
// every second (stream=true, the default), or one (stream=false) whose
// precpu_stats are those of a sample a second earlier, so that the CPU %
// can be computed from it alone; one-shot=true skips that second. A
// container that does not run gives zeros, as dockerd's.
func (d *Daemon) containerStats(w http.ResponseWriter, r *http.Request) {
	c, err := d.containers.Get(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	stream := !r.URL.Query().Has("stream") || boolParam(r, "stream")
	oneShot := boolParam(r, "one-shot")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fw := newFlushWriter(w)
	enc := json.NewEncoder(fw)
	ctx, cancel := d.streamContext(r)
	defer cancel()
	var prev *containers.Stats
	sample := func() *containers.Stats {
		s, err := d.containers.Stats(c.ID)
		if err != nil {
			return nil
		}
		return &s
	}
	if !stream {
		cur := sample()
		if cur != nil && !oneShot {
			prev = cur
			select {
			case <-ctx.Done():
				return
			case <-time.After(statsInterval):
			}
			cur = sample()
		}
		_ = enc.Encode(statsResponse(c, cur, prev))
		return
	}
	t := time.NewTicker(statsInterval)
	defer t.Stop()
	for {
		cur := sample()
		if err := enc.Encode(statsResponse(c, cur, prev)); err != nil {
			return
		}
		prev = cur
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// statsResponse is one sample in Docker's shape; nil samples are zeros.
func statsResponse(c containers.Container, cur, prev *containers.Stats) container.StatsResponse {
	out := container.StatsResponse{ID: c.ID, Name: c.Name, OSType: "linux"}
	if prev != nil {
		out.PreRead, out.PreCPUStats = prev.Read, cpuStats(prev)
	}
	if cur == nil {
		return out
	}
	out.Read, out.CPUStats = cur.Read, cpuStats(cur)
	limit := cur.MemoryLimit
	if limit == 0 {
		limit = uint64(memTotal()) // unlimited: the host's memory, as dockerd
	}
	out.MemoryStats = container.MemoryStats{Usage: cur.MemoryUsage, MaxUsage: cur.MemoryMaxUsage, Limit: limit, Stats: cur.MemoryStat}
	out.PidsStats = container.PidsStats{Current: cur.PidsCurrent, Limit: cur.PidsLimit}
	out.Networks = map[string]container.NetworkStats{}
	for name, n := range cur.Networks {
		out.Networks[name] = container.NetworkStats{
			RxBytes: n.RxBytes, RxPackets: n.RxPackets, RxErrors: n.RxErrors, RxDropped: n.RxDropped,
			TxBytes: n.TxBytes, TxPackets: n.TxPackets, TxErrors: n.TxErrors, TxDropped: n.TxDropped,
		}
	}
	out.BlkioStats.IoServiceBytesRecursive = []container.BlkioStatEntry{
		{Op: "read", Value: cur.IORead}, {Op: "write", Value: cur.IOWrite},
	}
	return out
}

func cpuStats(s *containers.Stats) container.CPUStats {
	return container.CPUStats{
		CPUUsage:    container.CPUUsage{TotalUsage: s.CPUUsage, UsageInUsermode: s.CPUUser, UsageInKernelmode: s.CPUSystem},
		SystemUsage: s.SystemCPU, OnlineCPUs: uint32(s.OnlineCPUs),
	}
}

// changeResponse is one entry of GET /containers/{id}/changes.
type changeResponse struct {
	Path string
	Kind int
}

func (d *Daemon) containerChanges(w http.ResponseWriter, r *http.Request) {
	changes, err := d.containers.Changes(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]changeResponse, 0, len(changes))
	for _, ch := range changes {
		out = append(out, changeResponse{Path: ch.Path, Kind: ch.Kind})
	}
	writeJSON(w, http.StatusOK, out)
}
