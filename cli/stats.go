package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cli/apiclient"
)

// statsRow is one line of `stats`; its methods are the --format fields.
type statsRow struct {
	id, name string
	noTrunc  bool
	s        *container.StatsResponse // nil: no sample yet
	prev     *container.StatsResponse // the sample before, for CPU % in a stream
	err      string
}

var statsHeaders = map[string]string{
	"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
	"MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
}

const defaultStatsFormat = "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"

func (r statsRow) ID() string {
	if r.noTrunc {
		return r.id
	}
	return shortID(r.id)
}
func (r statsRow) Container() string { return r.name }
func (r statsRow) Name() string      { return strings.TrimPrefix(r.name, "/") }

func (r statsRow) dash() bool { return r.s == nil || r.s.Read.IsZero() }

// CPUPerc is the CPU time the container used over the host's, times the
// CPUs, as docker computes it; the previous sample is the stream's own or
// the daemon's precpu_stats.
func (r statsRow) CPUPerc() string {
	if r.dash() {
		return "--"
	}
	pre := r.s.PreCPUStats
	if r.prev != nil && !r.prev.Read.IsZero() {
		pre = r.prev.CPUStats
	}
	cur := r.s.CPUStats
	cpuDelta := float64(cur.CPUUsage.TotalUsage) - float64(pre.CPUUsage.TotalUsage)
	sysDelta := float64(cur.SystemUsage) - float64(pre.SystemUsage)
	p := 0.0
	if sysDelta > 0 && cpuDelta > 0 && pre.SystemUsage > 0 {
		p = cpuDelta / sysDelta * float64(cur.OnlineCPUs) * 100
	}
	return percent(p)
}

// memUsed is usage without the inactive page cache, as docker stats shows it.
func (r statsRow) memUsed() float64 {
	m := r.s.MemoryStats
	if v, ok := m.Stats["total_inactive_file"]; ok && v < m.Usage {
		return float64(m.Usage - v)
	}
	if v, ok := m.Stats["inactive_file"]; ok && v < m.Usage {
		return float64(m.Usage - v)
	}
	return float64(m.Usage)
}

func (r statsRow) MemUsage() string {
	if r.dash() {
		return "-- / --"
	}
	return units.BytesSize(r.memUsed()) + " / " + units.BytesSize(float64(r.s.MemoryStats.Limit))
}

func (r statsRow) MemPerc() string {
	if r.dash() {
		return "--"
	}
	if r.s.MemoryStats.Limit == 0 {
		return percent(0)
	}
	return percent(r.memUsed() / float64(r.s.MemoryStats.Limit) * 100)
}

func (r statsRow) NetIO() string {
	if r.dash() {
		return "-- / --"
	}
	var rx, tx float64
	for _, n := range r.s.Networks {
		rx += float64(n.RxBytes)
		tx += float64(n.TxBytes)
	}
	return units.HumanSizeWithPrecision(rx, 3) + " / " + units.HumanSizeWithPrecision(tx, 3)
}

func (r statsRow) BlockIO() string {
	if r.dash() {
		return "-- / --"
	}
	var rd, wr float64
	for _, e := range r.s.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			rd += float64(e.Value)
		case "write":
			wr += float64(e.Value)
		}
	}
	return units.HumanSizeWithPrecision(rd, 3) + " / " + units.HumanSizeWithPrecision(wr, 3)
}

func (r statsRow) PIDs() string {
	if r.dash() {
		return "--"
	}
	return strconv.FormatUint(r.s.PidsStats.Current, 10)
}

// percent renders a ratio as docker stats does ("12.34%").
func percent(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + "%" }

func newStatsCommand() *cobra.Command {
	var all, noStream, noTrunc bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a live stream of container(s) resource usage statistics",
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == "" {
				format = "table"
			}
			tf := parseTableFormat(format, defaultStatsFormat)
			if _, err := parseTemplate(tf.row); err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			rows, err := statsTargets(ctx, c, args, all, noTrunc)
			if err != nil {
				return err
			}
			out := streamsOf(cmd).out
			if noStream {
				var wg sync.WaitGroup
				for i := range rows {
					wg.Add(1)
					go func(r *statsRow) {
						defer wg.Done()
						r.s, r.err = oneStats(ctx, c, r.id)
					}(&rows[i])
				}
				wg.Wait()
				return renderStats(out, tf, rows, len(args) > 0)
			}
			return streamStats(ctx, c, out, tf, rows, streamOptions{named: len(args) > 0, all: all, noTrunc: noTrunc, tty: isTerminal(out)})
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	fl.BoolVar(&noStream, "no-stream", false, "Disable streaming stats and only pull the first result")
	fl.BoolVar(&noTrunc, "no-trunc", false, "Do not truncate output")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

// statsTargets resolves the containers to show: those named (each must
// exist), else the running ones (all with -a).
func statsTargets(ctx context.Context, c *apiClient, args []string, all, noTrunc bool) ([]statsRow, error) {
	var rows []statsRow
	if len(args) > 0 {
		var errs []string
		for _, a := range args {
			ctr, _, err := c.ContainerInspect(ctx, a)
			if err != nil {
				errs = append(errs, c.apiError(err).Error())
				continue
			}
			rows = append(rows, statsRow{id: ctr.ID, name: ctr.Name, noTrunc: noTrunc})
		}
		return rows, joinErrors(errs)
	}
	items, err := c.ContainerList(ctx, apiclient.ContainerListOptions{All: all})
	if err != nil {
		return nil, c.apiError(err)
	}
	for _, it := range items {
		name := ""
		if len(it.Names) > 0 {
			name = it.Names[0]
		}
		rows = append(rows, statsRow{id: it.ID, name: name, noTrunc: noTrunc})
	}
	return rows, nil
}

// oneStats is one sample with its precpu_stats filled (the daemon waits a
// second between the two).
func oneStats(ctx context.Context, c *apiClient, id string) (*container.StatsResponse, string) {
	body, err := c.ContainerStats(ctx, id, false)
	if err != nil {
		return nil, c.apiError(err).Error()
	}
	defer body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(body).Decode(&s); err != nil {
		return nil, err.Error()
	}
	return &s, ""
}

// renderStats prints the table; with named containers an error of one
// fails the command, as docker's.
func renderStats(w io.Writer, tf tableFormat, rows []statsRow, named bool) error {
	list := make([]any, 0, len(rows))
	var errs []string
	for _, r := range rows {
		if r.err != "" && named {
			errs = append(errs, r.err)
		}
		list = append(list, r)
	}
	if err := renderRows(w, tf, statsHeaders, list); err != nil {
		return err
	}
	return joinErrors(errs)
}

// statsStream is `stats` without --no-stream: one stats stream per
// container, and the table redrawn every second.
type statsStream struct {
	c       *apiClient
	noTrunc bool
	mu      sync.Mutex // guards rows
	rows    []*statsRow
	wg      sync.WaitGroup
}

// follow adds a row and reads its container's stream into it until ctx ends
// or the stream does.
func (st *statsStream) follow(ctx context.Context, r *statsRow) {
	st.mu.Lock()
	for _, o := range st.rows {
		if o.id == r.id {
			st.mu.Unlock()
			return
		}
	}
	st.rows = append(st.rows, r)
	st.mu.Unlock()
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		body, err := st.c.ContainerStats(ctx, r.id, true)
		if err != nil {
			st.mu.Lock()
			r.err = st.c.apiError(err).Error()
			st.mu.Unlock()
			return
		}
		defer body.Close()
		dec := json.NewDecoder(body)
		for {
			var s container.StatsResponse
			if err := dec.Decode(&s); err != nil {
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					st.mu.Lock()
					r.err = err.Error()
					st.mu.Unlock()
				}
				return
			}
			st.mu.Lock()
			r.prev, r.s = r.s, &s
			st.mu.Unlock()
		}
	}()
}

// drop removes the row of a container that is gone (or stopped, without -a).
func (st *statsStream) drop(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i, r := range st.rows {
		if r.id == id {
			st.rows = append(st.rows[:i], st.rows[i+1:]...)
			return
		}
	}
}

// watch follows the daemon's container events, as docker stats does
// without names: started containers join the table, removed ones (and,
// without -a, stopped ones) leave it.
func (st *statsStream) watch(ctx context.Context, all bool) {
	f := apiclient.Filters{}.Add("type", "container").Add("event", "start", "die", "destroy")
	msgs, errc := st.c.Events(ctx, apiclient.EventsOptions{Filters: f})
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-errc:
				return
			case m := <-msgs:
				switch {
				case m.Action == "start":
					st.follow(ctx, &statsRow{id: m.Actor.ID, name: "/" + m.Actor.Attributes["name"], noTrunc: st.noTrunc})
				case m.Action == "destroy" || !all:
					st.drop(m.Actor.ID)
				}
			}
		}
	}()
}

// streamOptions are stats' flags as the stream needs them; named: the
// containers were given by name.
type streamOptions struct{ named, all, noTrunc, tty bool }

// streamStats redraws the table every second (clearing the screen on a
// terminal) until ctx ends or, with named containers, every stream has
// failed; without names it follows the containers that start and go.
func streamStats(ctx context.Context, c *apiClient, out io.Writer, tf tableFormat, rows []statsRow, o streamOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &statsStream{c: c, noTrunc: o.noTrunc}
	defer st.wg.Wait()
	named := o.named
	if !named {
		st.watch(ctx, o.all)
	}
	for i := range rows {
		st.follow(ctx, &rows[i])
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var buf bytes.Buffer
		if o.tty {
			buf.WriteString("\033[2J\033[H")
		}
		st.mu.Lock()
		snapshot := make([]statsRow, 0, len(st.rows))
		failed := 0
		for _, r := range st.rows {
			snapshot = append(snapshot, *r)
			if r.err != "" {
				failed++
			}
		}
		st.mu.Unlock()
		err := renderStats(&buf, tf, snapshot, false)
		if _, werr := out.Write(buf.Bytes()); werr != nil || err != nil {
			return errors.Join(err, werr)
		}
		if named && failed == len(snapshot) {
			var errs []string
			for _, r := range snapshot {
				errs = append(errs, r.err)
			}
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
	}
}
