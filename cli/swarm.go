package cli

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/shoal-project/shoal/cli/apiclient"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// defaultListenAddr is where a manager listens for other nodes unless
// --listen-addr says otherwise (docker's default).
const defaultListenAddr = "0.0.0.0:2377"

func newSwarmCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "swarm", Short: "Manage Swarm", Args: noArgs}
	cmd.AddCommand(
		newSwarmInitCommand(), newSwarmJoinCommand(), newSwarmJoinTokenCommand(),
		newSwarmLeaveCommand(), newSwarmUpdateCommand(), newSwarmCACommand(),
		newSwarmUnlockCommand(), newSwarmUnlockKeyCommand(), newSwarmRegistryTokenCommand(),
	)
	return cmd
}

// listenAddr is a pflag.Value for --listen-addr: "<ip|interface>[:port]",
// the port defaulting to 2377, as docker's NodeAddrOption.
type listenAddr struct{ addr string }

func (l *listenAddr) Set(s string) error {
	a, err := parseNodeAddr(s, defaultListenAddr)
	if err != nil {
		return err
	}
	l.addr = a
	return nil
}

func (l *listenAddr) String() string { return l.addr }
func (l *listenAddr) Type() string   { return "node-addr" }

// parseNodeAddr fills in the host or port of addr from def, as docker's
// ParseTCPAddr does ("eth0" -> "eth0:2377", ":4000" -> "0.0.0.0:4000").
func parseNodeAddr(addr, def string) (string, error) {
	defHost, defPort, _ := net.SplitHostPort(def)
	addr = strings.TrimPrefix(addr, "tcp://")
	if addr == "" {
		return "", errors.New("invalid empty address")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// No port: the whole value is a host (or interface).
		host, port = addr, defPort
		if strings.Count(addr, ":") > 1 && !strings.HasPrefix(addr, "[") {
			host = addr // a bare IPv6 address
		}
	}
	if host == "" {
		host = defHost
	}
	if port == "" {
		port = defPort
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("invalid port in address %q", addr)
	}
	return net.JoinHostPort(host, port), nil
}

// swarmSpecFlags are the flags of init and update that edit the cluster spec.
type swarmSpecFlags struct {
	taskHistoryLimit int64
	certExpiry       time.Duration
	heartbeat        time.Duration
	snapshotInterval uint64
	maxSnapshots     uint64
	autolock         bool
	// dataKeyRotation is shoal's --data-key-rotation (0: not given); it
	// has no place in Docker's spec type (withExtensions).
	dataKeyRotation time.Duration
}

// swarmSpecFlagNames are the flags swarmSpecFlags reads: `swarm update`
// without any of them prints its help, as docker does.
var swarmSpecFlagNames = []string{"task-history-limit", "cert-expiry", "dispatcher-heartbeat", "snapshot-interval", "max-snapshots", "autolock", "data-key-rotation"}

func addSwarmSpecFlags(fl *pflag.FlagSet, o *swarmSpecFlags) {
	fl.Int64Var(&o.taskHistoryLimit, "task-history-limit", 5, "Task history retention limit")
	addCertExpiryFlag(fl, o)
	fl.DurationVar(&o.heartbeat, "dispatcher-heartbeat", time.Second, "Dispatcher heartbeat period (ns|us|ms|s|m|h); fixed at 1s in shoal")
	fl.Uint64Var(&o.snapshotInterval, "snapshot-interval", 10000, "Number of log entries between Raft snapshots")
	fl.Uint64Var(&o.maxSnapshots, "max-snapshots", 1, "Number of additional Raft snapshots to retain; fixed at 1 in shoal")
	fl.BoolVar(&o.autolock, "autolock", false, "Enable manager autolocking (requiring an unlock key to start a stopped manager)")
	fl.DurationVar(&o.dataKeyRotation, "data-key-rotation", 6*time.Hour,
		"How often the cluster's data key (gossip and encrypted overlay networks) is rotated, 1m to 12h; shoal's extension")
}

func addCertExpiryFlag(fl *pflag.FlagSet, o *swarmSpecFlags) {
	fl.DurationVar(&o.certExpiry, "cert-expiry", 90*24*time.Hour, "Validity period for node certificates (ns|us|ms|s|m|h)")
}

// merge sets only the fields whose flags were given, as docker does. The
// daemon checks the values (minimum expiry, settings shoal cannot change).
func (o *swarmSpecFlags) merge(fl *pflag.FlagSet, spec *swarm.Spec) error {
	if fl.Changed("task-history-limit") {
		if o.taskHistoryLimit < 0 {
			return fmt.Errorf("invalid task history limit %d: must not be negative", o.taskHistoryLimit)
		}
		v := o.taskHistoryLimit
		spec.Orchestration.TaskHistoryRetentionLimit = &v
	}
	if fl.Changed("cert-expiry") {
		if o.certExpiry <= 0 {
			return fmt.Errorf("invalid cert expiry %s: must be positive", o.certExpiry)
		}
		spec.CAConfig.NodeCertExpiry = o.certExpiry
	}
	if fl.Changed("dispatcher-heartbeat") {
		if o.heartbeat <= 0 {
			return fmt.Errorf("invalid dispatcher heartbeat %s: must be positive", o.heartbeat)
		}
		spec.Dispatcher.HeartbeatPeriod = o.heartbeat
	}
	if fl.Changed("snapshot-interval") {
		if o.snapshotInterval == 0 {
			return errors.New("invalid snapshot interval 0: must be positive")
		}
		spec.Raft.SnapshotInterval = o.snapshotInterval
	}
	if fl.Changed("max-snapshots") {
		v := o.maxSnapshots
		spec.Raft.KeepOldSnapshots = &v
	}
	if fl.Changed("autolock") {
		spec.EncryptionConfig.AutoLockManagers = o.autolock
	}
	if !fl.Changed("data-key-rotation") {
		o.dataKeyRotation = 0
	} else if o.dataKeyRotation <= 0 {
		return fmt.Errorf("invalid data key rotation %s: must be positive", o.dataKeyRotation)
	}
	return nil
}

// anyChanged reports whether any of names was given on the command line.
func anyChanged(fl *pflag.FlagSet, names ...string) bool {
	for _, n := range names {
		if fl.Changed(n) {
			return true
		}
	}
	return false
}

func newSwarmInitCommand() *cobra.Command {
	var advertise, availability string
	listen := listenAddr{addr: defaultListenAddr}
	var specFlags swarmSpecFlags
	var forceNew bool
	var addrPools []string
	var poolMask, dataPathPort uint32
	cmd := &cobra.Command{
		Use:   "init [OPTIONS]",
		Short: "Initialize a swarm",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var avail swarm.NodeAvailability
			if cmd.Flags().Changed("availability") {
				a, err := parseAvailability(availability)
				if err != nil {
					return err
				}
				avail = a
			}
			var spec swarm.Spec
			if err := specFlags.merge(cmd.Flags(), &spec); err != nil {
				return err
			}
			var pools []netip.Prefix
			for _, a := range addrPools {
				p, err := netip.ParsePrefix(a)
				if err != nil {
					return fmt.Errorf("invalid --default-addr-pool %q: not a CIDR", a)
				}
				pools = append(pools, p)
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			nodeID, err := c.SwarmInit(ctx, swarmInitJSON{
				InitRequest: swarm.InitRequest{
					ListenAddr: listen.addr, AdvertiseAddr: advertise, ForceNewCluster: forceNew,
					Availability: avail, AutoLockManagers: spec.EncryptionConfig.AutoLockManagers,
					DefaultAddrPool: pools, SubnetSize: poolMask, DataPathPort: dataPathPort,
				},
				Spec: specFlags.withExtensions(spec),
			})
			if err != nil {
				err = c.apiError(err)
				if strings.Contains(err.Error(), "could not choose an IP address to advertise") || strings.Contains(err.Error(), "could not find the system's IP address") {
					return fmt.Errorf("%w - specify one with --advertise-addr", err)
				}
				return err
			}
			out := streamsOf(cmd).out
			fmt.Fprintf(out, "Swarm initialized: current node (%s) is now a manager.\n\n", nodeID)
			if err := printJoinCommand(cmd, c, nodeID, true, false); err != nil {
				return err
			}
			fmt.Fprintln(out, "To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.")
			if spec.EncryptionConfig.AutoLockManagers {
				fmt.Fprintln(out)
			}
			return printUnlockKeyIfLocked(cmd, c, &spec)
		},
	}
	fl := cmd.Flags()
	fl.Var(&listen, "listen-addr", `Listen address (format: "<ip|interface>[:port]")`)
	fl.StringVar(&advertise, "advertise-addr", "", `Advertised address (format: "<ip|interface>[:port]")`)
	fl.StringVar(&availability, "availability", "active", `Availability of the node ("active", "pause", "drain")`)
	fl.BoolVar(&forceNew, "force-new-cluster", false, "Force create a new cluster from current state")
	fl.StringSliceVar(&addrPools, "default-addr-pool", nil, "default address pool in CIDR format (repeatable)")
	fl.Uint32Var(&poolMask, "default-addr-pool-mask-length", 24, "default address pool subnet mask length")
	fl.Uint32Var(&dataPathPort, "data-path-port", 0, "Port number to use for data path traffic (1024 - 49151). If no value is set or is set to 0, the default port (4789) is used.")
	addSwarmSpecFlags(fl, &specFlags)
	return cmd
}

// printJoinCommand prints the join command(s) for this manager: tokens
// from the swarm inspect, the address from the node's manager status.
func printJoinCommand(cmd *cobra.Command, c *apiClient, nodeID string, worker, manager bool) error {
	ctx := commandContext(cmd)
	n, _, err := c.NodeInspect(ctx, nodeID)
	if err != nil {
		return c.apiError(err)
	}
	sw, err := c.SwarmInspect(ctx)
	if err != nil {
		return c.apiError(err)
	}
	ms := n.ManagerStatus
	if ms == nil {
		return nil
	}
	out := streamsOf(cmd).out
	if worker {
		fmt.Fprintf(out, "To add a worker to this swarm, run the following command:\n\n    shoal swarm join --token %s %s\n\n", sw.JoinTokens.Worker, ms.Addr)
	}
	if manager {
		fmt.Fprintf(out, "To add a manager to this swarm, run the following command:\n\n    shoal swarm join --token %s %s\n\n", sw.JoinTokens.Manager, ms.Addr)
	}
	return nil
}

func newSwarmJoinCommand() *cobra.Command {
	var advertise, token, availability string
	listen := listenAddr{addr: defaultListenAddr}
	cmd := &cobra.Command{
		Use:   "join [OPTIONS] HOST:PORT",
		Short: "Join a swarm as a node and/or manager",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var avail swarm.NodeAvailability
			if cmd.Flags().Changed("availability") {
				a, err := parseAvailability(availability)
				if err != nil {
					return err
				}
				avail = a
			}
			if token == "" {
				return errors.New("a join token is required: --token SWMTKN-...")
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			if err := c.SwarmJoin(ctx, swarm.JoinRequest{
				JoinToken: token, ListenAddr: listen.addr, AdvertiseAddr: advertise,
				RemoteAddrs: []string{args[0]}, Availability: avail,
			}); err != nil {
				return c.apiError(err)
			}
			info, err := c.Info(ctx)
			if err != nil {
				return c.apiError(err)
			}
			if info.Swarm.ControlAvailable {
				fmt.Fprintln(streamsOf(cmd).out, "This node joined a swarm as a manager.")
			} else {
				fmt.Fprintln(streamsOf(cmd).out, "This node joined a swarm as a worker.")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.Var(&listen, "listen-addr", `Listen address (format: "<ip|interface>[:port]")`)
	fl.StringVar(&advertise, "advertise-addr", "", `Advertised address (format: "<ip|interface>[:port]")`)
	fl.StringVar(&token, "token", "", "Token for entry into the swarm")
	fl.StringVar(&availability, "availability", "active", `Availability of the node ("active", "pause", "drain")`)
	return cmd
}

func newSwarmJoinTokenCommand() *cobra.Command {
	var rotate, quiet bool
	cmd := &cobra.Command{
		Use:   "join-token [OPTIONS] (worker|manager)",
		Short: "Manage join tokens",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			role := args[0]
			worker, manager := role == "worker", role == "manager"
			if !worker && !manager {
				return errors.New("unknown role " + role)
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := commandContext(cmd)
			out := streamsOf(cmd).out
			if rotate {
				if err := rotateSwarm(cmd, c, nil, apiclient.SwarmRotate{WorkerToken: worker, ManagerToken: manager}); err != nil {
					return err
				}
				if !quiet {
					fmt.Fprintf(out, "Successfully rotated %s join token.\n\n", role)
				}
			}
			sw, err := c.SwarmInspect(ctx)
			if err != nil {
				return c.apiError(err)
			}
			if quiet {
				if worker {
					fmt.Fprintln(out, sw.JoinTokens.Worker)
				} else {
					fmt.Fprintln(out, sw.JoinTokens.Manager)
				}
				return nil
			}
			self, err := selfNodeID(cmd, c)
			if err != nil {
				return err
			}
			return printJoinCommand(cmd, c, self, worker, manager)
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "Rotate join token")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display token")
	return cmd
}

func newSwarmLeaveCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "leave [OPTIONS]",
		Short: "Leave the swarm",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.SwarmLeave(commandContext(cmd), force); err != nil {
				return c.apiError(err)
			}
			fmt.Fprintln(streamsOf(cmd).out, "Node left the swarm.")
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force this node to leave the swarm, ignoring warnings")
	return cmd
}

func newSwarmUpdateCommand() *cobra.Command {
	var specFlags swarmSpecFlags
	cmd := &cobra.Command{
		Use:   "update [OPTIONS]",
		Short: "Update the swarm",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !anyChanged(cmd.Flags(), swarmSpecFlagNames...) {
				return cmd.Help()
			}
			c, err := connect(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			var updated swarm.Spec
			if err := updateSwarmSpecExt(cmd, c, &specFlags, func(spec *swarm.Spec) error {
				wasLocked := spec.EncryptionConfig.AutoLockManagers
				err := specFlags.merge(cmd.Flags(), spec)
				updated = *spec
				// The key is printed only when autolock is turned on now.
				updated.EncryptionConfig.AutoLockManagers = !wasLocked && spec.EncryptionConfig.AutoLockManagers
				return err
			}); err != nil {
				return err
			}
			fmt.Fprintln(streamsOf(cmd).out, "Swarm updated.")
			return printUnlockKeyIfLocked(cmd, c, &updated)
		},
	}
	addSwarmSpecFlags(cmd.Flags(), &specFlags)
	return cmd
}

// updateSwarmSpec reads the swarm's spec, lets edit change it and writes it
// back at the version read.
func updateSwarmSpec(cmd *cobra.Command, c *apiClient, edit func(*swarm.Spec) error) error {
	return updateSwarmSpecExt(cmd, c, &swarmSpecFlags{}, edit)
}

// updateSwarmSpecExt is updateSwarmSpec that also sends the shoal settings
// of flags that edit (flags.merge) took from the command line. The spec read
// back has no extension fields (Docker's type), which the daemon reads as
// "keep the current value".
func updateSwarmSpecExt(cmd *cobra.Command, c *apiClient, flags *swarmSpecFlags, edit func(*swarm.Spec) error) error {
	ctx := commandContext(cmd)
	sw, err := c.SwarmInspect(ctx)
	if err != nil {
		return c.apiError(err)
	}
	if err := edit(&sw.Spec); err != nil {
		return err
	}
	if err := c.SwarmUpdate(ctx, sw.Version, flags.withExtensions(sw.Spec), apiclient.SwarmRotate{}); err != nil {
		return c.apiError(err)
	}
	return nil
}
