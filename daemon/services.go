package daemon

import (
	"context"
	"io"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/containerd/containers"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/containerd/logs"
	"github.com/shoal-project/shoal/overlaynet/bridge"
)

// The handlers see the engine through these interfaces, each listing only
// what the daemon calls. *images.Store, *containers.Engine and
// *bridge.Network satisfy them; tests may put a fault in between.

// imageService is the image store as the image routes use it.
type imageService interface {
	Import(ctx context.Context, r io.Reader, ref string, opts images.ImportOptions) (images.Image, error)
	Get(refOrID string) (images.Image, error)
	List() ([]images.Image, error)
	Tag(src, dst string) error
	Remove(refOrID string, force bool) ([]images.Removed, error)
	Untag(ref string) (images.Removed, error)
	Save(ctx context.Context, w io.Writer, refs []string) error
	Load(ctx context.Context, r io.Reader) ([]string, error)
	History(refOrID string) ([]images.HistoryEntry, error)
}

// containerService is the container engine as the container routes use it.
type containerService interface {
	Create(ctx context.Context, name string, cfg containers.Config) (containers.Container, error)
	Start(ctx context.Context, idOrName string) error
	Stop(ctx context.Context, idOrName string, timeout *int) error
	Kill(idOrName string, sig unix.Signal) error
	Remove(ctx context.Context, idOrName string, force bool) error
	Wait(ctx context.Context, idOrName, condition string, registered func()) (containers.State, error)
	Get(idOrName string) (containers.Container, error)
	List(all bool) []containers.Container
	SetNetwork(id, netnsPath string, s containers.NetworkSettings) error
	LogPath(id string) string
	EtcFile(id, name string) string
	GraphDriver(idOrName string) (map[string]string, error)
	Size(idOrName string) (rw, rootfs int64, err error)
	Logs(ctx context.Context, idOrName string, opts containers.LogsOptions, fn func(logs.Entry) error) error
	AttachRegistered(ctx context.Context, idOrName string, stdin io.Reader, out io.Writer, registered func()) error
	ExecCreate(idOrName string, cfg containers.ExecConfig) (string, error)
	ExecStart(ctx context.Context, execID string, stdin io.Reader, out io.Writer) error
	ExecInspect(execID string) (containers.ExecState, error)
	ExecIDs(id string) []string
	Resize(idOrName string, height, width uint16) error
	ExecResize(execID string, height, width uint16) error
	Top(idOrName, psArgs string) (containers.TopList, error)
	StatPath(idOrName, path string) (containers.PathStat, error)
	ArchivePath(ctx context.Context, idOrName, path string, w io.Writer) error
	StatResolved(idOrName, path string) (containers.PathStat, error)
	ArchiveResolved(ctx context.Context, idOrName, path string, w io.Writer) error
	ExtractToDir(ctx context.Context, idOrName, path string, r io.Reader) error
	PutArchive(ctx context.Context, idOrName, path string, r io.Reader) error
	Commit(ctx context.Context, idOrName string, opts containers.CommitOptions) (images.Image, error)
	containerObserver
}

// networkService is the default bridge network as the daemon uses it.
type networkService interface {
	Name() string
	Attach(ctx context.Context, id string) (bridge.Endpoint, error)
	NewEmpty(ctx context.Context, id string) (bridge.Endpoint, error)
	Publish(ctx context.Context, id string, ip net.IP, ports []bridge.PortMapping) ([]bridge.PortMapping, error)
	Detach(ctx context.Context, id string) error
	Subnet() netip.Prefix
	Gateway() netip.Addr
}

var (
	_ imageService     = (*images.Store)(nil)
	_ containerService = (*containers.Engine)(nil)
	_ networkService   = (*bridge.Network)(nil)
)
