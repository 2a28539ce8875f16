package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Config is what `shoal daemon` is started with. Zero fields take the
// defaults below, so tests can fill in only the roots.
type Config struct {
	// DataRoot holds persistent state: images, containers, network IPAM.
	DataRoot string
	// ExecRoot holds runtime state: shims, OCI state, network namespaces.
	ExecRoot string
	// Host is the API address, unix://PATH.
	Host string
	// CgroupParent holds every container's cgroup (<parent>/<id>).
	CgroupParent string
	// NodeName is reported by /info.
	NodeName string
	// BridgeName and BIP are the default bridge network: its link name and
	// its subnet, given as the gateway address with its prefix (dockerd's
	// --bip) or as the subnet. Daemons side by side need different ones.
	BridgeName string
	BIP        string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// AllowPrivileged lets `run --privileged` through; without it such
	// containers are refused (one is root on the host).
	AllowPrivileged bool
	// LogDriver and LogOpts are the log driver and --log-opt options of
	// containers created without --log-driver (json-file, no rotation).
	LogDriver string
	LogOpts   []string
	// InsecureRegistries are reached over plain HTTP or unverified TLS
	// (dockerd's --insecure-registry); localhost always is.
	InsecureRegistries []string
	// RegistryPort is the cluster registry's port while this node is a
	// manager (0: not served).
	RegistryPort int
	// RegistryGCInterval and RegistryGCGrace set the cluster registry's
	// garbage collection (RegistryGC).
	RegistryGCInterval time.Duration
	RegistryGCGrace    time.Duration
	// GWBridgeSubnet is the subnet of the NAT bridge through which tasks
	// on overlay networks reach the outside (gwbridge.go).
	GWBridgeSubnet string
}

// Defaults, chosen not to collide with a Docker daemon on the same host
// (docker0, 172.17.0.0/16, /var/run/docker.sock).
const (
	DefaultDataRoot     = "/var/lib/shoal"
	DefaultExecRoot     = "/run/shoal"
	DefaultHost         = "unix:///run/shoal/shoal.sock"
	DefaultCgroupParent = "shoal"
	DefaultBridgeName   = "shoal0"
	DefaultBIP          = "172.31.0.1/16"
	DefaultLogLevel     = "info"
)

// hostEnv names the socket when -H is not given, as the CLI reads it.
const hostEnv = "SHOAL_HOST"

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.DataRoot, DefaultDataRoot)
	def(&c.ExecRoot, DefaultExecRoot)
	def(&c.Host, DefaultHost)
	def(&c.CgroupParent, DefaultCgroupParent)
	def(&c.BridgeName, DefaultBridgeName)
	def(&c.BIP, DefaultBIP)
	def(&c.LogLevel, DefaultLogLevel)
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname()
	}
	return c
}

// socketPath returns the path of a unix://PATH address.
func socketPath(host string) (string, error) {
	p, ok := strings.CutPrefix(host, "unix://")
	if !ok || p == "" {
		return "", fmt.Errorf("invalid --host %q: only unix://PATH is supported", host)
	}
	return p, nil
}

// parseLogLevel reads dockerd's --log-level values.
func parseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "fatal", "panic":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", s)
}

// Command returns the `daemon` subcommand. SIGINT and SIGTERM stop the
// daemon gracefully; the containers keep running under their shims and the
// next daemon on the same roots adopts them.
func Command() *cobra.Command {
	cfg := Config{}
	cmd := &cobra.Command{
		Use:   "daemon [OPTIONS]",
		Short: "Run the shoal node daemon",
		Long: "Run the shoal node daemon: the Docker Engine API on a unix socket, over the local\n" +
			"image store, container engine and bridge network. Several daemons can run side by\n" +
			"side on one machine with different --data-root, --exec-root, --host, --cgroup-parent,\n" +
			"--bridge-name and --bip.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: false,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("host") {
				if h := os.Getenv(hostEnv); h != "" {
					cfg.Host = h
				}
			}
			if err := checkGWBridgeSubnet(cfg.GWBridgeSubnet); err != nil {
				return err
			}
			if cfg.RegistryPort < 0 || cfg.RegistryPort > 65535 {
				return fmt.Errorf("--registry-port %d: not a port (0 serves no registry)", cfg.RegistryPort)
			}
			if cfg.RegistryGCInterval < 0 || cfg.RegistryGCGrace < time.Second {
				return fmt.Errorf("--registry-gc-interval %s, --registry-gc-grace %s: the interval cannot be negative (0: no collection) and the grace period is at least 1s", cfg.RegistryGCInterval, cfg.RegistryGCGrace)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return Run(ctx, cfg)
		},
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	// A local -H shadows the CLI root's persistent one: cobra parses every
	// flag of the line with the subcommand's set, so `shoal -H X daemon`
	// and `shoal daemon -H X` both land here.
	f.StringVarP(&cfg.Host, "host", "H", DefaultHost, "Daemon socket to listen on (unix://PATH; default $"+hostEnv+" or "+DefaultHost+")")
	f.StringVar(&cfg.DataRoot, "data-root", DefaultDataRoot, "Root directory of persistent state")
	f.StringVar(&cfg.ExecRoot, "exec-root", DefaultExecRoot, "Root directory of execution state")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", DefaultCgroupParent, "Parent cgroup of all containers")
	f.StringVar(&cfg.NodeName, "node-name", host, "Name of this node")
	f.StringVar(&cfg.BridgeName, "bridge-name", DefaultBridgeName, "Name of the default bridge network's link")
	f.StringVar(&cfg.BIP, "bip", DefaultBIP, "Subnet of the default bridge, as gateway address/prefix")
	f.StringVarP(&cfg.LogLevel, "log-level", "l", DefaultLogLevel, "Logging level (debug, info, warn, error)")
	f.StringVar(&cfg.LogDriver, "log-driver", "json-file", "Default driver for container logs (json-file, local, none)")
	f.StringArrayVar(&cfg.LogOpts, "log-opt", nil, "Default log driver options (KEY=VALUE, repeatable)")
	f.StringSliceVar(&cfg.InsecureRegistries, "insecure-registry", nil, "Registry (HOST[:PORT]) reached over plain HTTP or unverified TLS")
	f.BoolVar(&cfg.AllowPrivileged, "allow-privileged", false, "Allow privileged containers (run --privileged)")
	f.StringVar(&cfg.GWBridgeSubnet, "gwbridge-subnet", DefaultGWBridgeSubnet, "Subnet of "+GWBridgeName+", the NAT bridge through which tasks on overlay networks reach the outside")
	f.IntVar(&cfg.RegistryPort, "registry-port", DefaultRegistryPort, "Port of the cluster registry on this node while it is a manager (0: none)")
	f.DurationVar(&cfg.RegistryGCInterval, "registry-gc-interval", DefaultRegistryGCInterval, "Time between the cluster registry's garbage collections (0: none)")
	f.DurationVar(&cfg.RegistryGCGrace, "registry-gc-grace", DefaultRegistryGCGrace, "How long the cluster registry keeps a blob that nothing references (a push's time between a blob and its manifest)")
	return cmd
}
