package cli

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newNodeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage Swarm nodes", Args: noArgs}
	cmd.AddCommand(
		newNodeListCommand(), newNodeInspectCommand(), newNodeUpdateCommand(),
		newNodeRoleCommand("promote"), newNodeRoleCommand("demote"), newNodeRmCommand(), newNodePsCommand(),
	)
	return cmd
}

// The default node table: the ID column carries " *" for the node the CLI
// talks to, with an empty header of its own, as docker's does.
const defaultNodeFormat = "{{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}"

var nodeHeaders = map[string]string{
	"ID": "ID", "Self": "", "Hostname": "HOSTNAME", "Status": "STATUS", "Availability": "AVAILABILITY",
	"ManagerStatus": "MANAGER STATUS", "EngineVersion": "ENGINE VERSION", "TLSStatus": "TLS STATUS",
}

// nodeRow is one line of `node ls`; its methods are the --format fields.
type nodeRow struct {
	n      swarm.Node
	selfID string
}

func (r nodeRow) ID() string            { return r.n.ID }
func (r nodeRow) Self() bool            { return r.n.ID != "" && r.n.ID == r.selfID }
func (r nodeRow) Hostname() string      { return r.n.Description.Hostname }
func (r nodeRow) Status() string        { return titleCase(string(r.n.Status.State)) }
func (r nodeRow) Availability() string  { return titleCase(string(r.n.Spec.Availability)) }
func (r nodeRow) EngineVersion() string { return r.n.Description.Engine.EngineVersion }

// ManagerStatus is "Leader", "Reachable", "Unreachable" or empty for a worker.
func (r nodeRow) ManagerStatus() string {
	ms := r.n.ManagerStatus
	if ms == nil {
		return ""
	}
	if ms.Leader {
		return "Leader"
	}
	return titleCase(string(ms.Reachability))
}

func (r nodeRow) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	b, err := rowJSON(r)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["Self"] = r.Self()
	return json.Marshal(m)
}

// selfNodeID is the ID of the node the daemon runs on, from /info ("" when
// the daemon is not in a swarm).
func selfNodeID(cmd *cobra.Command, c *apiClient) (string, error) {
	info, err := c.Info(commandContext(cmd))
	if err != nil {
		return "", c.apiError(err)
	}
	return info.Swarm.NodeID, nil
}

// nodeReference resolves "self" to this node's ID, as docker does; other
// references go to the daemon as they are.
func nodeReference(cmd *cobra.Command, c *apiClient, ref string) (string, error) {
	if ref != "self" {
		return ref, nil
	}
	id, err := selfNodeID(cmd, c)
	if err != nil {
		return "", err
	}
	if id == "" {
		// Ask a swarm endpoint for the daemon's own explanation
		// ("This node is not a swarm manager...").
		if _, err := c.NodeList(commandContext(cmd), nil); err != nil {
			return "", c.apiError(err)
		}
		return "", errors.New("node ID not found in /info")
	}
	return id, nil
}

func newNodeListCommand() *cobra.Command {
	var quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List nodes in the swarm",
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
			items, err := c.NodeList(commandContext(cmd), f)
			if err != nil {
				return c.apiError(err)
			}
			sort.SliceStable(items, func(i, j int) bool {
				return naturalLess(items[i].Description.Hostname, items[j].Description.Hostname)
			})
			out := streamsOf(cmd).out
			if quiet {
				for _, n := range items {
					fmt.Fprintln(out, n.ID)
				}
				return nil
			}
			self := ""
			if len(items) > 0 {
				if self, err = selfNodeID(cmd, c); err != nil {
					return err
				}
			}
			if format == "" {
				format = "table"
			}
			rows := make([]any, len(items))
			for i, n := range items {
				rows[i] = nodeRow{n: n, selfID: self}
			}
			return renderRows(out, parseTableFormat(format, defaultNodeFormat), nodeHeaders, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	fl.VarP((*stringArray)(&filters), "filter", "f", "Filter output based on conditions provided")
	return cmd
}

func newNodeInspectCommand() *cobra.Command {
	var format string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] self|NODE [NODE...]",
		Short: "Display detailed information on one or more nodes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pretty && format != "" {
				return errors.New("--format is incompatible with human friendly format")
			}
			var print func(io.Writer, any, []byte)
			if pretty {
				print = func(w io.Writer, n any, raw []byte) { printNodePretty(w, n.(swarm.Node), raw) }
			}
			return inspectEach(cmd, args, format, func(c *apiClient, ref string) (any, []byte, error) {
				id, err := nodeReference(cmd, c, ref)
				if err != nil {
					return nil, nil, err
				}
				node, raw, err := c.NodeInspect(commandContext(cmd), id)
				if err != nil {
					return nil, nil, c.apiError(err)
				}
				return node, raw, nil
			}, print)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "Print the information in a human friendly format")
	return cmd
}

// printNodePretty is `node inspect --pretty`, after docker's template, with
// the certificate's expiry (shoal's Description.TLSInfo.CertExpiry in raw).
func printNodePretty(w io.Writer, n swarm.Node, raw []byte) {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("ID:\t\t\t%s", n.ID)
	if n.Spec.Name != "" {
		p("Name:\t\t\t%s", n.Spec.Name)
	}
	if len(n.Spec.Labels) > 0 {
		p("Labels:")
		for _, k := range sortedKeys(n.Spec.Labels) {
			if v := n.Spec.Labels[k]; v != "" {
				p(" - %s=%s", k, v)
			} else {
				p(" - %s", k)
			}
		}
	}
	p("Hostname:              \t%s", n.Description.Hostname)
	p("Joined at:             \t%s", prettyPrint(n.CreatedAt))
	p("Status:")
	p(" State:\t\t\t%s", titleCase(string(n.Status.State)))
	if n.Status.Message != "" {
		p(" Message:              \t%s", n.Status.Message)
	}
	p(" Availability:         \t%s", titleCase(string(n.Spec.Availability)))
	if n.Status.Addr != "" {
		p(" Address:\t\t%s", n.Status.Addr)
	}
	if ms := n.ManagerStatus; ms != nil {
		p("Manager Status:")
		p(" Address:\t\t%s", ms.Addr)
		p(" Raft Status:\t\t%s", titleCase(string(ms.Reachability)))
		if ms.Leader {
			p(" Leader:\t\tYes")
		} else {
			p(" Leader:\t\tNo")
		}
	}
	p("Platform:")
	p(" Operating System:\t%s", n.Description.Platform.OS)
	p(" Architecture:\t\t%s", n.Description.Platform.Architecture)
	p("Resources:")
	p(" CPUs:\t\t\t%d", n.Description.Resources.NanoCPUs/1e9)
	p(" Memory:\t\t%s", humanBinarySize(n.Description.Resources.MemoryBytes))
	p("Engine Version:\t\t%s", n.Description.Engine.EngineVersion)
	if l := n.Description.Engine.Labels; len(l) > 0 {
		p("Engine Labels:")
		for _, k := range sortedKeys(l) {
			p(" - %s=%s", k, l[k])
		}
	}
	if tls := n.Description.TLSInfo; tls.TrustRoot != "" {
		p("TLS Info:")
		p(" TrustRoot:\n%s", tls.TrustRoot)
		p(" Issuer Subject:\t%s", base64.StdEncoding.EncodeToString(tls.CertIssuerSubject))
		p(" Issuer Public Key:\t%s", base64.StdEncoding.EncodeToString(tls.CertIssuerPublicKey))
		var ext struct {
			Description struct {
				TLSInfo struct{ CertExpiry time.Time }
			}
		}
		if json.Unmarshal(raw, &ext) == nil && !ext.Description.TLSInfo.CertExpiry.IsZero() {
			p(" Certificate Expiry:\t%s", ext.Description.TLSInfo.CertExpiry.Format(time.RFC3339))
		}
	}
	io.WriteString(w, b.String())
}

// nodeUpdateOptions are the flags of `node update`.
type nodeUpdateOptions struct {
	availability, role string
	labelAdd, labelRm  []string
}

// apply merges the changed flags into a node's spec, as docker does.
func (o nodeUpdateOptions) apply(fl *pflag.FlagSet, spec *swarm.NodeSpec) error {
	if fl.Changed("role") {
		switch r := swarm.NodeRole(strings.ToLower(o.role)); r {
		case swarm.NodeRoleWorker, swarm.NodeRoleManager:
			spec.Role = r
		default:
			return fmt.Errorf("invalid role %q, only worker and manager are supported", o.role)
		}
	}
	if fl.Changed("availability") {
		a, err := parseAvailability(o.availability)
		if err != nil {
			return err
		}
		spec.Availability = a
	}
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	add, err := parseKVMap(o.labelAdd)
	if err != nil {
		return err
	}
	for k, v := range add {
		spec.Labels[k] = v
	}
	for _, k := range o.labelRm {
		if _, ok := spec.Labels[k]; !ok {
			return fmt.Errorf("key %s doesn't exist in node's labels", k)
		}
		delete(spec.Labels, k)
	}
	return nil
}

// labelSet makes a label map holding keys, so that a dry run of apply
// does not trip over --label-rm of labels it cannot see.
func labelSet(keys []string) map[string]string {
	m := map[string]string{}
	for _, k := range keys {
		m[k] = ""
	}
	return m
}

// updateNode inspects a node, lets change edit its spec and writes it back
// with the version read.
func updateNode(cmd *cobra.Command, c *apiClient, ref string, change func(*swarm.Node) (bool, error)) error {
	ctx := commandContext(cmd)
	id, err := nodeReference(cmd, c, ref)
	if err != nil {
		return err
	}
	node, _, err := c.NodeInspect(ctx, id)
	if err != nil {
		return c.apiError(err)
	}
	send, err := change(&node)
	if err != nil || !send {
		return err
	}
	return c.apiError(c.NodeUpdate(ctx, node.ID, node.Version, node.Spec))
}

func newNodeUpdateCommand() *cobra.Command {
	var o nodeUpdateOptions
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] NODE",
		Short: "Update a node",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Check the flags before anything is read or sent.
			if err := o.apply(cmd.Flags(), &swarm.NodeSpec{Annotations: swarm.Annotations{Labels: labelSet(o.labelRm)}}); err != nil {
				return err
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			err = updateNode(cmd, c, args[0], func(n *swarm.Node) (bool, error) {
				return true, o.apply(cmd.Flags(), &n.Spec)
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(streamsOf(cmd).out, args[0])
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.availability, "availability", "", `Availability of the node ("active", "pause", "drain")`)
	fl.StringVar(&o.role, "role", "", `Role of the node ("worker", "manager")`)
	fl.Var((*stringArray)(&o.labelAdd), "label-add", "Add or update a node label (key=value)")
	fl.Var((*stringArray)(&o.labelRm), "label-rm", "Remove a node label if exists")
	return cmd
}

// newNodeRoleCommand makes `node promote` and `node demote`.
func newNodeRoleCommand(verb string) *cobra.Command {
	role, short := swarm.NodeRoleManager, "Promote one or more nodes to manager in the swarm"
	if verb == "demote" {
		role, short = swarm.NodeRoleWorker, "Demote one or more nodes from manager in the swarm"
	}
	return &cobra.Command{
		Use:   verb + " NODE [NODE...]",
		Short: short,
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			out := streamsOf(cmd).out
			for _, ref := range args {
				changed := false
				err := updateNode(cmd, c, ref, func(n *swarm.Node) (bool, error) {
					if n.Spec.Role == role {
						if role == swarm.NodeRoleManager {
							fmt.Fprintf(out, "Node %s is already a manager.\n", n.ID)
						} else {
							fmt.Fprintf(out, "Node %s is already a worker.\n", n.ID)
						}
						return false, nil
					}
					n.Spec.Role, changed = role, true
					return true, nil
				})
				if err != nil {
					return err
				}
				if !changed {
					continue // as docker: no "promoted" line for a node already in the role
				}
				if role == swarm.NodeRoleManager {
					fmt.Fprintf(out, "Node %s promoted to a manager in the swarm.\n", ref)
				} else {
					fmt.Fprintf(out, "Manager %s demoted in the swarm.\n", ref)
				}
			}
			return nil
		},
	}
}

func newNodeRmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] NODE [NODE...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more nodes from the swarm",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return forEachArg(cmd, args, func(c *apiClient, id string) error {
				return c.NodeRemove(commandContext(cmd), id, force)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force remove a node from the swarm")
	return cmd
}

func newNodePsCommand() *cobra.Command {
	var noTrunc, noResolve, quiet bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS] [NODE...]",
		Short: "List tasks running on one or more nodes, defaults to current node",
		Args:  cobra.ArbitraryArgs,
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
			if len(args) == 0 {
				args = []string{"self"}
			}
			var tasks []swarm.Task
			var errs []string
			for _, ref := range args {
				id, err := nodeReference(cmd, c, ref)
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				node, _, err := c.NodeInspect(commandContext(cmd), id)
				if err != nil {
					err = c.apiError(err)
					if strings.HasPrefix(err.Error(), "Cannot connect") {
						return err
					}
					errs = append(errs, err.Error())
					continue
				}
				nf := apiclient.Filters{}
				for k, v := range f {
					nf[k] = slices.Clone(v)
				}
				nf.Add("node", node.ID)
				res, err := c.TaskList(commandContext(cmd), nf)
				if err != nil {
					return c.apiError(err)
				}
				tasks = append(tasks, res...)
			}
			if len(tasks) > 0 || len(errs) == 0 {
				if err := printTasks(cmd, c, tasks, map[string]string{}, noTrunc || quiet, noResolve, quiet, format); err != nil {
					return err
				}
			}
			return joinErrors(errs)
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
