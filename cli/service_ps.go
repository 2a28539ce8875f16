package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
)

const defaultTaskFormat = "{{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}"

var taskHeaders = map[string]string{
	"ID": "ID", "Name": "NAME", "Image": "IMAGE", "Node": "NODE", "DesiredState": "DESIRED STATE",
	"CurrentState": "CURRENT STATE", "Error": "ERROR", "Ports": "PORTS",
}

// taskRow is one line of `service ps` and `node ps`.
type taskRow struct {
	t     swarm.Task
	name  string // "svc.slot", with " \_ " before history rows in tables
	node  string
	trunc bool
	now   time.Time
}

func (r taskRow) ID() string {
	if r.trunc {
		return shortID(r.t.ID)
	}
	return r.t.ID
}

func (r taskRow) Name() string { return r.name }
func (r taskRow) Node() string { return r.node }

func (r taskRow) Image() string {
	if cs := r.t.Spec.ContainerSpec; cs != nil {
		if r.trunc {
			return familiarImage(cs.Image)
		}
		return cs.Image
	}
	return ""
}

func (r taskRow) DesiredState() string { return titleCase(string(r.t.DesiredState)) }
func (r taskRow) CurrentState() string { return taskAge(r.t.Status.State, r.t.Status.Timestamp, r.now) }

func (r taskRow) Error() string {
	e := r.t.Status.Err
	if e == "" {
		return ""
	}
	if r.trunc {
		e = ellipsis(e, 30)
	}
	return `"` + e + `"`
}

func (r taskRow) Ports() string {
	var out []string
	for _, p := range r.t.Status.PortStatus.Ports {
		out = append(out, fmt.Sprintf("*:%d->%d/%s", p.PublishedPort, p.TargetPort, p.Protocol))
	}
	return strings.Join(out, ",")
}

func (r taskRow) MarshalJSON() ([]byte, error) { return rowJSON(r) }

// taskName is docker's task name: "service.slot", or "service.nodeID" for
// a global service's task (slot 0).
func taskName(service string, t swarm.Task) string {
	if t.Slot != 0 {
		return service + "." + strconv.Itoa(t.Slot)
	}
	return service + "." + t.NodeID
}

// taskRows sorts tasks as docker does (by name, naturally; newest first
// within a name) and marks every older task of a name as history.
func taskRows(tasks []swarm.Task, serviceNames, nodeNames map[string]string, table, trunc bool, now time.Time) []taskRow {
	type named struct {
		t    swarm.Task
		name string
	}
	list := make([]named, 0, len(tasks))
	for _, t := range tasks {
		svc := serviceNames[t.ServiceID]
		if svc == "" {
			svc = t.ServiceID
		}
		list = append(list, named{t, taskName(svc, t)})
	}
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].name != list[j].name {
			return naturalLess(list[i].name, list[j].name)
		}
		return list[j].t.CreatedAt.Before(list[i].t.CreatedAt)
	})
	rows := make([]taskRow, 0, len(list))
	prev := ""
	for _, n := range list {
		name := n.name
		if name == prev && table {
			name = ` \_ ` + name
		}
		prev = n.name
		node := nodeNames[n.t.NodeID]
		if node == "" {
			node = n.t.NodeID
		}
		rows = append(rows, taskRow{t: n.t, name: name, node: node, trunc: trunc, now: now})
	}
	return rows
}

// naturalLess compares strings with digit runs compared as numbers, so
// "web.2" sorts before "web.10".
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da != "" && db != "" {
			na, _ := strconv.ParseUint(da, 10, 64)
			nb, _ := strconv.ParseUint(db, 10, 64)
			if na != nb {
				return na < nb
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// nodeNamer resolves node IDs to hostnames for the NODE column, one
// inspect per node; a node that cannot be inspected keeps its ID.
type nodeNamer struct {
	c     *apiClient
	ctx   context.Context
	names map[string]string
}

func (n *nodeNamer) name(id string) string {
	if id == "" {
		return ""
	}
	if v, ok := n.names[id]; ok {
		return v
	}
	v := id
	if node, _, err := n.c.NodeInspect(n.ctx, id); err == nil && node.Description.Hostname != "" {
		v = node.Description.Hostname
	}
	n.names[id] = v
	return v
}

// printTasks renders tasks as `service ps` / `node ps` do.
func printTasks(cmd *cobra.Command, c *apiClient, tasks []swarm.Task, serviceNames map[string]string, noTrunc, noResolve, quiet bool, format string) error {
	out := streamsOf(cmd).out
	ctx := commandContext(cmd)
	if quiet {
		rows := taskRows(tasks, serviceNames, nil, false, false, time.Now())
		for _, r := range rows {
			fmt.Fprintln(out, r.t.ID)
		}
		return nil
	}
	if format == "" {
		format = "table"
	}
	tf := parseTableFormat(format, defaultTaskFormat)
	nodeNames := map[string]string{}
	if !noResolve {
		nn := &nodeNamer{c: c, ctx: ctx, names: map[string]string{}}
		for _, t := range tasks {
			nodeNames[t.NodeID] = nn.name(t.NodeID)
		}
		// Service names of tasks not named yet (node ps).
		for _, t := range tasks {
			if _, ok := serviceNames[t.ServiceID]; ok || t.ServiceID == "" {
				continue
			}
			if svc, _, err := c.ServiceInspect(ctx, t.ServiceID, false); err == nil {
				serviceNames[t.ServiceID] = svc.Spec.Name
			} else {
				serviceNames[t.ServiceID] = t.ServiceID
			}
		}
	}
	rows := taskRows(tasks, serviceNames, nodeNames, tf.table, !noTrunc, time.Now())
	anyRows := make([]any, len(rows))
	for i, r := range rows {
		anyRows[i] = r
	}
	return renderRows(out, tf, taskHeaders, anyRows)
}

func newServicePsCommand() *cobra.Command {
	var noTrunc, noResolve, quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS] SERVICE [SERVICE...]",
		Short: "List the tasks of one or more services",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filters)
			if err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			services, notFound, err := resolveServices(cmd, c, args)
			if err != nil {
				return err
			}
			names := map[string]string{}
			for _, s := range services {
				f.Add("service", s.ID)
				names[s.ID] = s.Spec.Name
			}
			if nodes, ok := f["node"]; ok {
				ids := make([]string, 0, len(nodes))
				for _, ref := range nodes {
					id, err := nodeReference(cmd, c, ref)
					if err != nil {
						return err
					}
					ids = append(ids, id)
				}
				f["node"] = ids
			}
			tasks, err := c.TaskList(ctx, f)
			if err != nil {
				return c.apiError(err)
			}
			if err := printTasks(cmd, c, tasks, names, noTrunc || quiet, noResolve, quiet, format); err != nil {
				return err
			}
			return joinErrors(notFound)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&noTrunc, "no-trunc", false, "Do not truncate output")
	fl.BoolVar(&noResolve, "no-resolve", false, "Do not map IDs to Names")
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display task IDs")
	fl.StringVar(&format, "format", "", "Pretty-print tasks using a Go template")
	fl.VarP((*stringArray)(&filters), "filter", "f", "Filter output based on conditions provided")
	return cmd
}

// resolveServices finds the services named by refs (full ID, name, or
// unique ID prefix), as docker's service ps does with two listings. Refs
// that match nothing come back as "no such service" lines; none matching
// at all is an error.
func resolveServices(cmd *cobra.Command, c *apiClient, refs []string) ([]swarm.Service, []string, error) {
	ctx := commandContext(cmd)
	byID, byName := apiclient.Filters{}, apiclient.Filters{}
	for _, r := range refs {
		byID.Add("id", r)
		byName.Add("name", r)
	}
	ids, err := c.ServiceList(ctx, byID, false)
	if err != nil {
		return nil, nil, c.apiError(err)
	}
	named, err := c.ServiceList(ctx, byName, false)
	if err != nil {
		return nil, nil, c.apiError(err)
	}
	var out []swarm.Service
	var notFound []string
next:
	for _, r := range refs {
		for _, s := range ids {
			if s.ID == r {
				out = append(out, s)
				continue next
			}
		}
		for _, s := range named {
			if s.Spec.Name == r {
				out = append(out, s)
				continue next
			}
		}
		var match []swarm.Service
		for _, s := range ids {
			if strings.HasPrefix(s.ID, r) {
				match = append(match, s)
			}
		}
		switch len(match) {
		case 0:
			notFound = append(notFound, "no such service: "+r)
		case 1:
			out = append(out, match[0])
		default:
			return nil, nil, errors.New("multiple services found with provided prefix: " + r)
		}
	}
	if len(out) == 0 {
		return nil, nil, errors.New(strings.Join(notFound, "\n"))
	}
	return out, notFound, nil
}
