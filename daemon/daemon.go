// Package daemon is `shoal daemon`: the node daemon. It serves the Docker
// Engine API (the paths, JSON and status codes of github.com/moby/moby/api for
// what it implements) on a unix socket and wires the local engine behind it:
// the image store, the container engine with its shims, and the default
// bridge network.
//
// Goroutines: the HTTP server's (one per request, ending with it), the
// container engine's monitors (see containerd/containers), and Run's own,
// which owns the listener and stops everything when its context ends.
// Containers outlive the daemon: their shims keep them, and the next daemon
// re-adopts them.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/overlaynet/bridge"
)

// Config is what `shoal daemon` is started with.
type Config struct {
	DataRoot     string
	ExecRoot     string
	Host         string // unix://PATH
	CgroupParent string
	NodeName     string
	BridgeName   string
	BIP          string // bridge subnet, as the gateway address with its prefix
}

// Defaults, chosen not to collide with Docker's (docker0, 172.17.0.0/16).
const (
	DefaultDataRoot   = "/var/lib/shoal"
	DefaultExecRoot   = "/run/shoal"
	DefaultSocket     = "/run/shoal/shoal.sock"
	DefaultBridgeName = "shoal0"
	DefaultBIP        = "172.31.0.1/16"
)

// Command returns the `daemon` subcommand. The socket comes from the root's
// persistent --host flag (default unix:///run/shoal/shoal.sock).
func Command() *cobra.Command {
	cfg := Config{}
	cmd := &cobra.Command{
		Use:   "daemon [OPTIONS]",
		Short: "Run the shoal node daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f := cmd.Flag("host"); f != nil && f.Value.String() != "" {
				cfg.Host = f.Value.String()
			} else if h := os.Getenv("SHOAL_HOST"); h != "" {
				cfg.Host = h
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return Run(ctx, cfg)
		},
	}
	host, _ := os.Hostname()
	f := cmd.Flags()
	f.StringVar(&cfg.DataRoot, "data-root", DefaultDataRoot, "Root directory of persistent state")
	f.StringVar(&cfg.ExecRoot, "exec-root", DefaultExecRoot, "Root directory of execution state")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "shoal", "Parent cgroup of all containers")
	f.StringVar(&cfg.NodeName, "node-name", host, "Name of this node")
	f.StringVar(&cfg.BridgeName, "bridge-name", DefaultBridgeName, "Name of the default bridge")
	f.StringVar(&cfg.BIP, "bip", DefaultBIP, "Address and prefix of the default bridge's gateway")
	return cmd
}

// Daemon is a running node daemon.
type Daemon struct {
	cfg    Config
	images *images.Store
	engine *containers.Engine
	bridge *bridge.Network
	start  time.Time
}

// Run starts the daemon and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Host == "" {
		cfg.Host = "unix://" + DefaultSocket
	}
	sock, ok := strings.CutPrefix(cfg.Host, "unix://")
	if !ok || sock == "" {
		return fmt.Errorf("invalid --host %q: only unix://PATH is supported", cfg.Host)
	}
	for _, d := range []string{cfg.DataRoot, cfg.ExecRoot, filepath.Dir(sock)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
	}
	ln, err := listen(sock)
	if err != nil {
		return err
	}
	defer ln.Close()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("daemon: own binary: %w", err)
	}
	imgs, err := images.Open(cfg.DataRoot)
	if err != nil {
		return fmt.Errorf("daemon: image store: %w", err)
	}
	br, err := bridge.New(ctx, bridge.Options{
		Name: cfg.BridgeName, Subnet: cfg.BIP,
		StateDir: filepath.Join(cfg.DataRoot, "network"), NetNSDir: filepath.Join(cfg.ExecRoot, "netns"),
	})
	if err != nil {
		return fmt.Errorf("daemon: bridge network: %w", err)
	}
	defer br.Close()
	ectx, cancelEngine := context.WithCancel(context.Background())
	defer cancelEngine()
	eng, err := containers.Open(ectx, containers.Options{
		Root: cfg.DataRoot, ExecRoot: cfg.ExecRoot, CgroupParent: cfg.CgroupParent, Images: imgs, Binary: self,
		Released: func(id string) { _ = br.Detach(context.Background(), id) },
	})
	if err != nil {
		return fmt.Errorf("daemon: containers: %w", err)
	}
	d := &Daemon{cfg: cfg, images: imgs, engine: eng, bridge: br, start: time.Now()}
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("shoal daemon %s listening on %s (data root %s)", cfg.NodeName, sock, cfg.DataRoot)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("daemon: serve: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// listen opens the API socket (mode 0660). A socket left by a crashed daemon
// is replaced; one that a live daemon answers on is refused.
func listen(path string) (net.Listener, error) {
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another daemon is already listening on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return ln, nil
}
