// Package daemon is `shoal daemon`: the node daemon. It serves the Docker
// Engine API (the paths, JSON and status codes of github.com/moby/moby/api for
// what it implements) on a unix socket and wires the local engine behind it:
// the image store, the container engine with its shims, and the default
// bridge network.
//
// # Goroutines
//
// Run owns the listener and the HTTP server; the server runs one goroutine
// per request, ending with it, except the hijacked attach and exec streams,
// which end with their container's output or with the daemon's context. One
// network watcher per running container on the bridge (or none) network
// releases its namespace and published ports when it exits, as dockerd frees
// an endpoint at stop; the watchers end with the daemon's context. The
// container engine's own goroutines end with the engine's context, which Run
// cancels last. Containers outlive the daemon: their shims keep them, and the
// next daemon on the same roots re-adopts them and their network.
//
// # Flags and defaults
//
//	--data-root      /var/lib/shoal               images, containers, bridge IPAM
//	--exec-root      /run/shoal                   shims, OCI state, netns mounts
//	-H, --host       unix:///run/shoal/shoal.sock  mode 0660, group "shoal" if it exists
//	--cgroup-parent  shoal                        containers at <parent>/<id>
//	--node-name      the host name
//	--bridge-name    shoal0                       not docker0
//	--bip            172.31.0.1/16                not 172.17/16 (docker0)
//	--log-level      info                         debug, info, warn, error
//
// Daemons side by side on one machine need their own roots, socket, cgroup
// parent, bridge name and subnet. A socket file left by a crashed daemon is
// replaced; one a live daemon answers on makes Run fail with ErrSocketInUse
// before anything of the live daemon's state is touched.
//
// # Networking
//
// A container's network is set up at start, not at create, as in Docker: a
// container created with a published port that another one holds is created
// fine and its start fails ("port is already allocated"), leaving it created
// and not running, with nothing of its network left behind.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/distribution"
	"github.com/shoal-project/shoal/containerd/events"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/runtime"
	"github.com/shoal-project/shoal/containerd/shimbin"
	"github.com/shoal-project/shoal/containerd/volumes"
	"github.com/shoal-project/shoal/overlaynet/bridge"
	"github.com/shoal-project/shoal/overlaynet/sandbox"
	"github.com/shoal-project/shoal/worker"

	"golang.org/x/sys/unix"
)

// Daemon serves the Engine API over one node's engine.
type Daemon struct {
	cfg        Config
	images     imageService
	containers containerService
	network    networkService
	// registry pulls and pushes images (nil in unit tests).
	registry registryService
	// swarm is the node's swarm membership (manager, worker agent).
	swarm *swarmNode
	// taskImages resolves service images and pulls task images (taskimages.go).
	taskImages *taskImages
	// events is the node's event bus (GET /events).
	events *events.Bus
	// volumes is the node's local volume driver.
	volumes *volumes.Store

	// ctx ends when the daemon stops: hijacked streams and network
	// watchers end with it.
	ctx context.Context
	wg  sync.WaitGroup // network watchers

	// netMu guards netLocks; each lock serialises the network set-up and
	// release of one container, so that a watcher releasing the network of
	// an exited container never races the next start of it.
	netMu    sync.Mutex
	netLocks map[string]*sync.Mutex
	// connected maps the containers this daemon connected to a network to
	// that network, for their disconnect events; guarded by netMu.
	connected map[string]string
	// nets are the user-defined bridge networks (see usernets.go).
	nets *userNets

	// clusterAtts are the attachments of this daemon's containers on
	// attachable overlays, by container ID (clusterattach.go); reconciling
	// is set while their reconciliation runs (one at a time).
	clusterMu   sync.Mutex
	clusterAtts map[string]*api.NetworkAttachment
	reconciling atomic.Bool

	// started is when the daemon started: the built-in networks' Created,
	// as dockerd makes its bridge network at each start.
	started time.Time
}

// streamContext is the context of a long-lived request: it ends with the
// request or when the daemon begins to stop, whichever is first.
func (d *Daemon) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(d.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func newDaemon(ctx context.Context, cfg Config, imgs imageService, ctrs containerService, nw networkService) *Daemon {
	return &Daemon{cfg: cfg, images: imgs, containers: ctrs, network: nw, ctx: ctx, netLocks: map[string]*sync.Mutex{}, events: events.New(0),
		clusterAtts: map[string]*api.NetworkAttachment{},
		nets:        &userNets{byID: map[string]*userNet{}, dns: map[string]func(){}}, started: time.Now().UTC()}
}

// Run starts the daemon and serves until ctx ends, then stops gracefully:
// in-flight requests get a few seconds, containers keep running.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	level, err := parseLogLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if _, _, err := cfg.logDefaults(); err != nil {
		return err
	}
	if _, err := runtime.SlowMonitor(); err != nil {
		slog.Warn("daemon: runtime monitor left at its timer slack", "err", err)
	}
	sock, err := socketPath(cfg.Host)
	if err != nil {
		return err
	}
	// Before the socket, which may be in the exec root (the default's is).
	mounted, err := execRootTmpfs(cfg.ExecRoot)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	// The socket comes first: a second daemon on a live daemon's socket
	// must stop before it touches (and re-adopts) that daemon's containers.
	ln, err := listen(sock)
	if err != nil {
		if mounted {
			_ = unix.Unmount(cfg.ExecRoot, unix.MNT_DETACH)
		}
		return err
	}
	defer ln.Close()
	for _, dir := range []string{cfg.DataRoot, cfg.ExecRoot} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
	}
	// Shims and inits run from a sealed copy of the embedded shim binary
	// (or of this binary), exec shims from a sealed view of this binary,
	// never from the host's file, which a container could otherwise
	// overwrite.
	self, err := runtime.SealedSelf()
	if err != nil {
		return fmt.Errorf("daemon: own binary: %w", err)
	}
	shimBin, err := shimbin.Sealed()
	if err != nil {
		return fmt.Errorf("daemon: shim binary: %w", err)
	}
	imgs, err := images.Open(cfg.DataRoot)
	if err != nil {
		return fmt.Errorf("daemon: image store: %w", err)
	}
	// Two namespaces made ahead: a start takes one instead of making it.
	spares, err := sandbox.NewSpares(ctx, filepath.Join(cfg.ExecRoot, "netns-spare"), 2)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	defer spares.Close()
	br, err := bridge.New(ctx, bridge.Options{
		Name: cfg.BridgeName, Subnet: cfg.BIP,
		StateDir: filepath.Join(cfg.DataRoot, "network"), NetNSDir: filepath.Join(cfg.ExecRoot, "netns"),
		Spares: spares,
	})
	if err != nil {
		return fmt.Errorf("daemon: bridge network %s: %w", cfg.BridgeName, err)
	}
	defer br.Close()
	nets, err := openUserNets(ctx, cfg.DataRoot, cfg.ExecRoot, spares)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}

	dctx, stopDaemon := context.WithCancel(context.Background())
	defer stopDaemon()
	// d exists before the engine: the engine's monitors may report a
	// removal (an auto-removed container that exited while no daemon ran)
	// as soon as it is open, and releaseNetwork needs only the network.
	d := newDaemon(dctx, cfg, imgs, nil, br)
	d.nets = nets
	if d.volumes, err = volumes.Open(filepath.Join(cfg.DataRoot, "volumes")); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	reg, err := distribution.New(imgs, distribution.Options{
		Insecure: cfg.InsecureRegistries, Root: filepath.Join(cfg.DataRoot, "distribution"),
	})
	if err != nil {
		return fmt.Errorf("daemon: registry client: %w", err)
	}
	d.registry = reg
	// The engine's context ends after the daemon's: its monitors must
	// outlive every request that might still be using them.
	ectx, stopEngine := context.WithCancel(context.Background())
	defer stopEngine()
	eng, err := containers.Open(ectx, containers.Options{
		Root: cfg.DataRoot, ExecRoot: cfg.ExecRoot, CgroupParent: cfg.CgroupParent, Images: imgs, Binary: self, Shim: shimBin,
		// Called after every removal, the engine's own (--rm) included.
		Released: func(id string) { d.releaseNetwork(id, false); d.releaseVolumes(id, false) },
		Events:   d.events,
		// Restart policies start containers as the API does: network first.
		Restart: d.startContainer,
	})
	if err != nil {
		return fmt.Errorf("daemon: containers: %w", err)
	}
	d.containers = eng
	// Task containers run without a network until tasks attach to overlay
	// networks; the agent re-adopts them after a restart by their labels.
	swarmDir := filepath.Join(cfg.DataRoot, "swarm")
	rt := &worker.EngineRuntime{Engine: eng, Images: imgs, NetworkMode: "none", Volumes: d.volumes, NetNSDir: taskNetNSDir(swarmDir),
		Secrets: worker.NewSecrets()}
	if rt.SecretsRoot, err = secretsTmpfs(filepath.Join(cfg.ExecRoot, "secrets")); err != nil {
		// Tasks that use secrets or configs then fail with the reason.
		slog.Warn("swarm: no tmpfs for secrets", "err", err)
	}
	d.swarm = newSwarmNode(dctx, swarmDir, cfg.NodeName, rt)
	d.swarm.secrets = rt.Secrets
	d.swarm.onAttachments = d.reconcileAttachments
	d.adoptNetworks()
	// Only now can a restart set up a network: the pending ones may go,
	// and the containers whose policy wants them back at daemon start do.
	eng.EnableRestarts()
	if d.taskImages, err = newTaskImages(d.swarm, imgs, reg, cfg.DataRoot); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	rt.Pull = d.taskImages.pull
	d.swarm.registryPort = cfg.RegistryPort
	d.swarm.registryGC = RegistryGC{Interval: cfg.RegistryGCInterval, Grace: cfg.RegistryGCGrace}
	d.swarm.gwSubnet = cfg.GWBridgeSubnet
	if err := d.swarm.resume(); err != nil {
		// As dockerd: the engine still serves; the swarm part reports the error.
		slog.Error("swarm: could not resume", "err", err)
	}

	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	slog.Info("shoal daemon listening", "node", cfg.NodeName, "socket", sock, "data-root", cfg.DataRoot,
		"exec-root", cfg.ExecRoot, "bridge", cfg.BridgeName, "bip", cfg.BIP, "api", APIVersion)
	var serveErr error
	select {
	case <-ctx.Done():
		slog.Info("shutting down; containers keep running")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("daemon: serve: %w", err)
		}
	}
	// The streams (logs -f, wait, attach, exec) end first: they would
	// hold Shutdown for as long as their containers run. Requests that are
	// only slow (a create, an import) get a few seconds to finish.
	stopDaemon()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	d.swarm.stop()
	d.wg.Wait()
	stopEngine()
	return serveErr
}
