package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
)

func newServiceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Manage swarm services", Args: noArgs}
	cmd.AddCommand(
		newServiceCreateCommand(), newServiceListCommand(), newServicePsCommand(), newServiceInspectCommand(),
		newServiceScaleCommand(), newServiceUpdateCommand(), newServiceRollbackCommand(), newServiceRmCommand(),
		newServiceLogsCommand(),
	)
	return cmd
}

const defaultServiceFormat = "{{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}"

var serviceHeaders = map[string]string{
	"ID": "ID", "Name": "NAME", "Mode": "MODE", "Replicas": "REPLICAS", "Image": "IMAGE", "Ports": "PORTS",
}

// serviceRow is one line of `service ls`; its methods are the --format fields.
type serviceRow struct{ s swarm.Service }

func (r serviceRow) ID() string   { return shortID(r.s.ID) }
func (r serviceRow) Name() string { return r.s.Spec.Name }

func (r serviceRow) Mode() string {
	m := r.s.Spec.Mode
	switch {
	case m.Global != nil:
		return "global"
	case m.Replicated != nil:
		return "replicated"
	case m.ReplicatedJob != nil:
		return "replicated job"
	case m.GlobalJob != nil:
		return "global job"
	}
	return ""
}

// Replicas is "running/desired" from the ServiceStatus the daemon adds to
// a status=true listing, with docker's suffix for a per-node maximum.
func (r serviceRow) Replicas() string {
	var running, desired, completed uint64
	if st := r.s.ServiceStatus; st != nil {
		running, desired, completed = st.RunningTasks, st.DesiredTasks, st.CompletedTasks
	}
	m := r.s.Spec.Mode
	switch {
	case m.ReplicatedJob != nil:
		var total uint64
		if m.ReplicatedJob.TotalCompletions != nil {
			total = *m.ReplicatedJob.TotalCompletions
		}
		return fmt.Sprintf("%d/%d (%d/%d completed)", running, desired, completed, total)
	case m.GlobalJob != nil:
		return fmt.Sprintf("%d/%d (%d/%d completed)", running, desired, completed, desired+completed)
	}
	if p := r.s.Spec.TaskTemplate.Placement; m.Replicated != nil && p != nil && p.MaxReplicas > 0 {
		return fmt.Sprintf("%d/%d (max %d per node)", running, desired, p.MaxReplicas)
	}
	return fmt.Sprintf("%d/%d", running, desired)
}

func (r serviceRow) Image() string {
	if cs := r.s.Spec.TaskTemplate.ContainerSpec; cs != nil {
		return familiarImage(cs.Image)
	}
	return ""
}

// Ports lists ingress-published ports as docker does ("*:8080->80/tcp"),
// folding consecutive ports into ranges.
func (r serviceRow) Ports() string { return servicePorts(r.s.Endpoint.Ports) }

func (r serviceRow) MarshalJSON() ([]byte, error) { return rowJSON(r) }

func servicePorts(in []swarm.PortConfig) string {
	ports := append([]swarm.PortConfig(nil), in...)
	sort.SliceStable(ports, func(i, j int) bool {
		if ports[i].Protocol == ports[j].Protocol {
			return ports[i].PublishedPort < ports[j].PublishedPort
		}
		return ports[i].Protocol < ports[j].Protocol
	})
	type span struct {
		pStart, pEnd, tStart, tEnd uint32
		proto                      string
	}
	str := func(s span) string {
		pub, tgt := fmt.Sprint(s.pStart), fmt.Sprint(s.tStart)
		if s.pEnd > s.pStart {
			pub = fmt.Sprintf("%d-%d", s.pStart, s.pEnd)
		}
		if s.tEnd > s.tStart {
			tgt = fmt.Sprintf("%d-%d", s.tStart, s.tEnd)
		}
		return fmt.Sprintf("*:%s->%s/%s", pub, tgt, s.proto)
	}
	var out []string
	var cur span
	for _, p := range ports {
		if p.PublishMode != swarm.PortConfigPublishModeIngress {
			continue
		}
		isRange := cur.tEnd != cur.tStart
		overlaps := p.TargetPort <= cur.tEnd
		if string(p.Protocol) != cur.proto || p.PublishedPort-cur.pEnd != 1 || p.TargetPort-cur.tEnd != 1 || isRange && overlaps {
			if cur.pStart > 0 {
				out = append(out, str(cur))
			}
			cur = span{p.PublishedPort, p.PublishedPort, p.TargetPort, p.TargetPort, string(p.Protocol)}
			continue
		}
		cur.pEnd, cur.tEnd = p.PublishedPort, p.TargetPort
	}
	if cur.pStart > 0 {
		out = append(out, str(cur))
	}
	return strings.Join(out, ", ")
}

// familiarImage drops a pinned digest from name:tag@digest, as docker's
// IMAGE columns do.
func familiarImage(img string) string {
	name, _, hasDigest := strings.Cut(img, "@")
	if !hasDigest {
		return img
	}
	last := name[strings.LastIndex(name, "/")+1:]
	if strings.Contains(last, ":") {
		return name
	}
	return img
}

func newServiceListCommand() *cobra.Command {
	var quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List services",
		Args:    exactArgs(0),
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
			items, err := c.ServiceList(commandContext(cmd), f, !quiet)
			if err != nil {
				return c.apiError(err)
			}
			sort.SliceStable(items, func(i, j int) bool { return items[i].Spec.Name < items[j].Spec.Name })
			out := streamsOf(cmd).out
			if quiet {
				for _, s := range items {
					fmt.Fprintln(out, s.ID)
				}
				return nil
			}
			if format == "" {
				format = "table"
			}
			rows := make([]any, len(items))
			for i, s := range items {
				rows[i] = serviceRow{s}
			}
			return renderRows(out, parseTableFormat(format, defaultServiceFormat), serviceHeaders, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	fl.VarP((*stringArray)(&filters), "filter", "f", "Filter output based on conditions provided")
	return cmd
}

// isNotFound tells a daemon's 404 apart from other failures.
func isNotFound(err error) bool { return apiclient.IsNotFound(err) }

func newServiceInspectCommand() *cobra.Command {
	var format string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] SERVICE [SERVICE...]",
		Short: "Display detailed information on one or more services",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pretty && format != "" {
				return errors.New("--format is incompatible with human friendly format")
			}
			var print func(io.Writer, any, []byte)
			if pretty {
				print = func(w io.Writer, svc any, _ []byte) { printServicePretty(w, svc.(swarm.Service)) }
			}
			return inspectEach(cmd, args, format, func(c *apiClient, ref string) (any, []byte, error) {
				svc, raw, err := c.ServiceInspect(commandContext(cmd), ref, true)
				if isNotFound(err) {
					return nil, nil, errors.New("Error: no such service: " + ref)
				}
				if err != nil {
					return nil, nil, c.apiError(err)
				}
				return svc, raw, nil
			}, print)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "Print the information in a human friendly format")
	return cmd
}

func newServiceRmCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "rm SERVICE [SERVICE...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more services",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachArg(cmd, args, func(c *apiClient, id string) error {
				return c.ServiceRemove(commandContext(cmd), id)
			})
		},
	}
}

func newServiceScaleCommand() *cobra.Command {
	var wait waitFlags
	cmd := &cobra.Command{
		Use:   "scale SERVICE=REPLICAS [SERVICE=REPLICAS...]",
		Short: "Scale one or multiple replicated services",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := parseScaleArgs(args)
			if err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			s := streamsOf(cmd)
			var errs []string
			var scaled []string
			// The update status each service had before its scale: see
			// waitOptions.before.
			before := map[string]*swarm.UpdateStatus{}
			for _, t := range targets {
				warnings, status, err := scaleService(cmd, c, t)
				if err != nil {
					err = c.apiError(err)
					if strings.HasPrefix(err.Error(), "Cannot connect") {
						return err
					}
					errs = append(errs, t.Service+": "+err.Error())
					continue
				}
				for _, w := range warnings {
					fmt.Fprintln(s.err, w)
				}
				fmt.Fprintf(s.out, "%s scaled to %d\n", t.Service, t.Replicas)
				scaled = append(scaled, t.Service)
				before[t.Service] = status
			}
			if !wait.detach {
				for _, id := range scaled {
					o := wait.options(cmd)
					o.before, o.name = before[id], id
					if err := waitOnService(ctx, c.Client, id, s.out, o); err != nil {
						errs = append(errs, id+": "+c.apiError(err).Error())
					}
				}
			}
			return joinErrors(errs)
		},
	}
	addWaitFlags(cmd.Flags(), &wait, false)
	return cmd
}

// sendServiceUpdate is ServiceUpdate of spec, made from the service as read
// (id, version, and raw, its inspect document). When the manager moved the
// version meanwhile only to record an update's progress (its status: the
// spec read again is the same), the update is sent again at the new
// version; a spec someone else changed stays the daemon's conflict.
func sendServiceUpdate(ctx context.Context, c *apiClient, id string, version swarm.Version, raw []byte, spec swarm.ServiceSpec, o apiclient.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	for attempt := 1; ; attempt++ {
		up, err := c.ServiceUpdate(ctx, id, version, spec, o)
		var ae *apiclient.Error
		if err == nil || attempt == 5 || !errors.As(err, &ae) || ae.StatusCode != 409 || !strings.Contains(ae.Message, "update out of sequence") {
			return up, err
		}
		cur, curRaw, ierr := c.ServiceInspect(ctx, id, false)
		if ierr != nil || !bytes.Equal(specJSON(curRaw), specJSON(raw)) {
			return up, err
		}
		version = cur.Version
	}
}

// specJSON is the Spec member of a service's inspect document, as sent.
func specJSON(raw []byte) []byte {
	var d struct{ Spec json.RawMessage }
	_ = json.Unmarshal(raw, &d)
	return d.Spec
}

// scaleService sets one service's replica count (inspect, then update with
// the version read), refusing services that have no replica count. It
// returns the daemon's warnings and the update status read before.
func scaleService(cmd *cobra.Command, c *apiClient, t scaleTarget) ([]string, *swarm.UpdateStatus, error) {
	ctx := commandContext(cmd)
	svc, raw, err := c.ServiceInspect(ctx, t.Service, false)
	if err != nil {
		return nil, nil, err
	}
	mode := &svc.Spec.Mode
	n := t.Replicas
	switch {
	case mode.Replicated != nil:
		mode.Replicated.Replicas = &n
	case mode.ReplicatedJob != nil:
		mode.ReplicatedJob.TotalCompletions = &n
	default:
		return nil, nil, errors.New("scale can only be used with replicated or replicated-job mode")
	}
	tagServiceImage(&svc.Spec)
	up, err := sendServiceUpdate(ctx, c, svc.ID, svc.Version, raw, svc.Spec, apiclient.ServiceUpdateOptions{})
	if err != nil {
		return nil, nil, err
	}
	return up.Warnings, svc.UpdateStatus, nil
}

// printServicePretty is `service inspect --pretty`: the fields docker's
// pretty template shows, in its order.
func printServicePretty(w interface{ Write([]byte) (int, error) }, s swarm.Service) {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("")
	p("ID:\t\t%s", s.ID)
	p("Name:\t\t%s", s.Spec.Name)
	if len(s.Spec.Labels) > 0 {
		p("Labels:")
		for _, k := range sortedKeys(s.Spec.Labels) {
			p(" %s=%s", k, s.Spec.Labels[k])
		}
	}
	p("Service Mode:\t%s", titleCase(serviceRow{s}.Mode()))
	if r := s.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
		p(" Replicas:\t%d", *r.Replicas)
	}
	if us := s.UpdateStatus; us != nil {
		p("UpdateStatus:")
		p(" State:\t\t%s", us.State)
		if us.Message != "" {
			p(" Message:\t%s", us.Message)
		}
	}
	if pl := s.Spec.TaskTemplate.Placement; pl != nil {
		p("Placement:")
		if len(pl.Constraints) > 0 {
			p(" Constraints:\t%s", pl.Constraints)
		}
		for _, pref := range pl.Preferences {
			if pref.Spread != nil {
				p(" Preferences:\tSpread=%s", pref.Spread.SpreadDescriptor)
			}
		}
		if pl.MaxReplicas > 0 {
			p(" Max Replicas Per Node:\t%d", pl.MaxReplicas)
		}
	}
	for _, c := range []struct {
		name, order string
		uc          *swarm.UpdateConfig
	}{{"UpdateConfig", "Update", s.Spec.UpdateConfig}, {"RollbackConfig", "Rollback", s.Spec.RollbackConfig}} {
		uc := c.uc
		if uc == nil {
			continue
		}
		p("%s:", c.name)
		p(" Parallelism:\t%d", uc.Parallelism)
		if uc.Delay > 0 {
			p(" Delay:\t\t%s", uc.Delay)
		}
		p(" On failure:\t%s", uc.FailureAction)
		p(" Monitoring Period: %s", uc.Monitor)
		p(" Max failure ratio: %g", uc.MaxFailureRatio)
		p(" %-18s %s", c.order+" order:", uc.Order)
	}
	p("ContainerSpec:")
	if cs := s.Spec.TaskTemplate.ContainerSpec; cs != nil {
		p(" Image:\t\t%s", cs.Image)
		// Each word followed by a space, as docker's template writes them.
		if len(cs.Args) > 0 {
			p(" Args:\t\t%s ", strings.Join(cs.Args, " "))
		}
		if len(cs.Env) > 0 {
			p(" Env:\t\t%s ", strings.Join(cs.Env, " "))
		}
		if cs.Init != nil {
			p(" Init:\t\t%t", *cs.Init)
		}
		if cs.Dir != "" {
			p(" Dir:\t\t%s", cs.Dir)
		}
		if cs.User != "" {
			p(" User:\t\t%s", cs.User)
		}
		if len(cs.Configs) > 0 {
			p("Configs:")
			for _, r := range cs.Configs {
				if r.File != nil {
					p(" Target:\t%s", r.File.Name)
				}
				p("  Source:\t%s", r.ConfigName)
			}
		}
		if len(cs.Secrets) > 0 {
			p("Secrets:")
			for _, r := range cs.Secrets {
				if r.File != nil {
					p(" Target:\t%s", r.File.Name)
				}
				p("  Source:\t%s", r.SecretName)
			}
		}
	}
	if res := s.Spec.TaskTemplate.Resources; res != nil {
		p("Resources:")
		if r := res.Reservations; r != nil && (r.NanoCPUs != 0 || r.MemoryBytes != 0) {
			p(" Reservations:")
			if r.NanoCPUs != 0 {
				p("  CPU:\t\t%g", float64(r.NanoCPUs)/1e9)
			}
			if r.MemoryBytes != 0 {
				p("  Memory:\t%s", humanBinarySize(r.MemoryBytes))
			}
		}
		if l := res.Limits; l != nil && (l.NanoCPUs != 0 || l.MemoryBytes != 0) {
			p(" Limits:")
			if l.NanoCPUs != 0 {
				p("  CPU:\t\t%g", float64(l.NanoCPUs)/1e9)
			}
			if l.MemoryBytes != 0 {
				p("  Memory:\t%s", humanBinarySize(l.MemoryBytes))
			}
		}
	}
	if nets := s.Spec.TaskTemplate.Networks; len(nets) > 0 {
		var names []string
		for _, n := range nets {
			names = append(names, n.Target)
		}
		p("Networks:\t%s ", strings.Join(names, " "))
	}
	if es := s.Spec.EndpointSpec; es != nil {
		p("Endpoint Mode:\t%s", es.Mode)
	}
	if ports := s.Endpoint.Ports; len(ports) > 0 {
		p("Ports:")
		for _, pc := range ports {
			p(" PublishedPort = %d", pc.PublishedPort)
			p("  Protocol = %s", pc.Protocol)
			p("  TargetPort = %d", pc.TargetPort)
			p("  PublishMode = %s", pc.PublishMode)
		}
	}
	w.Write([]byte(b.String()))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// taskAge renders "Running 5 seconds ago" for the CURRENT STATE column.
func taskAge(state swarm.TaskState, ts, now time.Time) string {
	s := titleCase(string(state))
	if ts.IsZero() {
		return s
	}
	return s + " " + strings.ToLower(humanAgo(ts, now))
}
