package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/network"
	"github.com/spf13/cobra"
)

// `shoal network`: create, ls, inspect, rm, prune, connect, disconnect.

func newNetworkCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks", Args: noArgs}
	cmd.AddCommand(newNetworkCreateCommand(), newNetworkListCommand(), newNetworkInspectCommand(),
		newNetworkRemoveCommand(), newNetworkPruneCommand(), newNetworkConnectCommand(), newNetworkDisconnectCommand())
	return cmd
}

// networking is the NetworkingConfig of run/create: --network-alias and
// --ip on the container's network.
func (o *containerOptions) networking(mode string) (*network.NetworkingConfig, error) {
	if len(o.netAliases) == 0 && o.ip == "" {
		return nil, nil
	}
	es := &network.EndpointSettings{Aliases: o.netAliases}
	if o.ip != "" {
		a, err := netip.ParseAddr(o.ip)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("invalid argument %q for \"--ip\" flag: not an IPv4 address", o.ip)
		}
		es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: a}
	}
	return &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{mode: es}}, nil
}

// parseKV parses KEY=VALUE flags (--opt, --label given as k=v).
func parseKV(flag string, vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vals {
		k, val, _ := strings.Cut(v, "=")
		if k == "" {
			return nil, fmt.Errorf("invalid argument %q for \"--%s\" flag: KEY=VALUE expected", v, flag)
		}
		out[k] = val
	}
	return out, nil
}

func newNetworkCreateCommand() *cobra.Command {
	var driver, subnet, gateway, ipRange, scope string
	var internal, attachable, ingress, ipv6, configOnly bool
	var labels, opts, auxAddrs []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := network.CreateRequest{Name: args[0], Driver: driver, Scope: scope, Internal: internal, Attachable: attachable, Ingress: ingress, ConfigOnly: configOnly}
			if ipv6 {
				o.EnableIPv6 = &ipv6
			}
			var err error
			if o.Options, err = parseKV("opt", opts); err != nil {
				return err
			}
			if o.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			if len(auxAddrs) > 0 || ipRange != "" {
				return errors.New("--ip-range and --aux-address are not supported")
			}
			if subnet != "" || gateway != "" {
				cfg := network.IPAMConfig{}
				if subnet != "" {
					p, err := netip.ParsePrefix(subnet)
					if err != nil {
						return fmt.Errorf("invalid argument %q for \"--subnet\" flag: not a CIDR", subnet)
					}
					cfg.Subnet = p
				}
				if gateway != "" {
					a, err := netip.ParseAddr(gateway)
					if err != nil {
						return fmt.Errorf("invalid argument %q for \"--gateway\" flag: not an IP address", gateway)
					}
					cfg.Gateway = a
				}
				o.IPAM = &network.IPAM{Driver: "default", Config: []network.IPAMConfig{cfg}}
			}
			return withClient(cmd, func(c *apiClient) error {
				res, err := c.NetworkCreate(commandContext(cmd), o)
				if err == nil {
					fmt.Fprintln(streamsOf(cmd).out, res.ID)
				}
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&driver, "driver", "d", "bridge", "Driver to manage the Network (bridge, overlay)")
	fl.StringVar(&subnet, "subnet", "", "Subnet in CIDR format that represents a network segment")
	fl.StringVar(&gateway, "gateway", "", "IPv4 Gateway for the master subnet")
	fl.StringVar(&ipRange, "ip-range", "", "Allocate container ip from a sub-range (not supported)")
	fl.Var((*stringArray)(&auxAddrs), "aux-address", "Auxiliary IPv4 addresses used by Network driver (not supported)")
	fl.StringVar(&scope, "scope", "", "Control the network's scope")
	fl.BoolVar(&internal, "internal", false, "Restrict external access to the network")
	fl.BoolVar(&attachable, "attachable", false, "Enable manual container attachment (overlay)")
	fl.BoolVar(&ingress, "ingress", false, "Create swarm routing-mesh network")
	fl.BoolVar(&ipv6, "ipv6", false, "Enable IPv6 networking (not supported)")
	fl.BoolVar(&configOnly, "config-only", false, "Create a configuration only network (not supported)")
	fl.Var((*stringArray)(&labels), "label", "Set metadata on a network")
	fl.VarP((*stringArray)(&opts), "opt", "o", "Set driver specific options (e.g. encrypted for overlay)")
	return cmd
}

// networkRow is one line of `network ls`; its methods are --format fields.
type networkRow struct{ n network.Summary }

func (r networkRow) ID() string     { return r.n.ID[:min(12, len(r.n.ID))] }
func (r networkRow) Name() string   { return r.n.Name }
func (r networkRow) Driver() string { return r.n.Driver }
func (r networkRow) Scope() string  { return r.n.Scope }
func (r networkRow) IPv4() string   { return fmt.Sprint(r.n.EnableIPv4) }
func (r networkRow) IPv6() string   { return fmt.Sprint(r.n.EnableIPv6) }
func (r networkRow) Internal() string {
	return fmt.Sprint(r.n.Internal)
}
func (r networkRow) CreatedAt() string { return r.n.Created.String() }
func (r networkRow) Labels() string {
	var kv []string
	for k, v := range r.n.Labels {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// Label is the value of one label (the {{.Label "k"}} of docker).
func (r networkRow) Label(k string) string { return r.n.Labels[k] }

var networkHeaders = map[string]string{"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
	"IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "CreatedAt": "CREATED AT", "Labels": "LABELS"}

const defaultNetworkFormat = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"

func newNetworkListCommand() *cobra.Command {
	var quiet, noTrunc bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filters)
			if err != nil {
				return err
			}
			var items []network.Summary
			if err := withClient(cmd, func(c *apiClient) error {
				res, err := c.NetworkList(commandContext(cmd), f)
				items = res
				return err
			}); err != nil {
				return err
			}
			sort.SliceStable(items, func(i, j int) bool { return items[i].Name < items[j].Name })
			out := streamsOf(cmd).out
			if quiet {
				for _, n := range items {
					id := n.ID
					if !noTrunc {
						id = id[:min(12, len(id))]
					}
					fmt.Fprintln(out, id)
				}
				return nil
			}
			if format == "" {
				format = "table"
			}
			rows := make([]any, len(items))
			for i, n := range items {
				if noTrunc {
					rows[i] = networkRowFull{networkRow{n}}
				} else {
					rows[i] = networkRow{n}
				}
			}
			return renderRows(out, parseTableFormat(format, defaultNetworkFormat), networkHeaders, rows)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&quiet, "quiet", "q", false, "Only display network IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "Do not truncate the output")
	fl.StringVar(&format, "format", "", "Format output using a custom template")
	fl.VarP((*stringArray)(&filters), "filter", "f", "Provide filter values (e.g. \"driver=bridge\")")
	return cmd
}

// networkRowFull is a row of `network ls --no-trunc`.
type networkRowFull struct{ networkRow }

func (r networkRowFull) ID() string { return r.n.ID }

func newNetworkInspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectEach(cmd, args, format, func(c *apiClient, ref string) (any, []byte, error) {
				n, raw, err := c.NetworkInspectWithRaw(commandContext(cmd), ref)
				if err != nil {
					return nil, nil, c.apiError(err)
				}
				return n, raw, nil
			}, nil)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

func newNetworkRemoveCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			var errs []string
			for _, ref := range args {
				if err := c.NetworkRemove(commandContext(cmd), ref); err != nil {
					err = c.apiError(err)
					if force && strings.Contains(err.Error(), "not found") {
						continue
					}
					errs = append(errs, err.Error())
					continue
				}
				fmt.Fprintln(streamsOf(cmd).out, ref)
			}
			return joinErrors(errs)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not error if the network does not exist")
	return cmd
}

func newNetworkPruneCommand() *cobra.Command {
	var force bool
	var filterArgs []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all unused networks",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilters(filterArgs)
			if err != nil {
				return err
			}
			s := streamsOf(cmd)
			if !force && !confirm(s, "WARNING! This will remove all custom networks not used by at least one container.\n") {
				return nil
			}
			return withClient(cmd, func(c *apiClient) error {
				res, err := c.NetworkPrune(commandContext(cmd), f)
				if err == nil {
					printDeleted(s.out, "Deleted Networks:", res.NetworksDeleted)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	cmd.Flags().Var((*stringArray)(&filterArgs), "filter", "Provide filter values (e.g. \"until=<timestamp>\")")
	return cmd
}

func newNetworkConnectCommand() *cobra.Command {
	var aliases []string
	var ip string
	cmd := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a container to a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := containerOptions{netAliases: aliases, ip: ip}
			nc, err := o.networking(args[0])
			if err != nil {
				return err
			}
			var es *network.EndpointSettings
			if nc != nil {
				es = nc.EndpointsConfig[args[0]]
			}
			return withClient(cmd, func(c *apiClient) error {
				err := c.NetworkConnect(commandContext(cmd), args[0], args[1], es)
				return err
			})
		},
	}
	cmd.Flags().Var((*stringArray)(&aliases), "alias", "Add network-scoped alias for the container")
	cmd.Flags().StringVar(&ip, "ip", "", "IPv4 address (e.g., 172.30.100.104)")
	return cmd
}

func newNetworkDisconnectCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "disconnect [OPTIONS] NETWORK CONTAINER",
		Short: "Disconnect a container from a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd, func(c *apiClient) error {
				err := c.NetworkDisconnect(commandContext(cmd), args[0], args[1], force)
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the container to disconnect from a network")
	return cmd
}

// withClient runs fn with a client of the daemon; an error fn returns is
// an API error and reported as the daemon words it.
func withClient(cmd *cobra.Command, fn func(c *apiClient) error) error {
	c, err := connect(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := fn(c); err != nil {
		return c.apiError(err)
	}
	return nil
}
