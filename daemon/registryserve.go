package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/containerd/content"
	"github.com/shoal-project/shoal/manager"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/manager/registry"
	"github.com/shoal-project/shoal/raftstore"
)

// DefaultRegistryPort is the cluster registry's port on every manager
// (`daemon --registry-port`; 0 serves none).
const DefaultRegistryPort = 5000

// RegistryTokenLabel is the cluster label that holds the hex SHA-256 of the
// registry's user token (`swarm registry-token` sets it; the CLI spells the
// same name, as it imports nothing of the daemon). The token is 32 random
// bytes, so an unsalted hash is as good as a salted one.
const RegistryTokenLabel = "shoal.registry.token-sha256"

// blobPath is the managers' private endpoint for copying blobs between them
// (manager certificates only): HEAD, GET and PUT of one blob by digest.
const blobPath = "/shoal/blobs/"

// forwardedHeader marks a request a follower forwarded to the leader.
const forwardedHeader = "Shoal-Registry-Forwarded"

// registryPeerTimeout bounds one call to another manager's registry;
// registryDialTimeout its connection.
const (
	registryPeerTimeout = 5 * time.Minute
	registryDialTimeout = 5 * time.Second
)

// clusterRegistry is the registry one manager serves: the distribution API
// over its own blob store and the raft store's tags. Writes on a follower
// are forwarded to the leader's registry (the tag store needs the leader,
// and upload sessions live in one process); a manifest PUT copies every
// blob it references to the other managers before it is acknowledged; a
// blob a manager lacks is fetched from another manager on a read.
type clusterRegistry struct {
	port   int
	nodeID string
	sec    *ca.Security
	mgr    *manager.Manager
	blobs  *registryBlobs
	peer   *http.Client // to other managers' registries, with the node certificate
	api    *registry.Handler
}

// startRegistry serves the registry on advertise's host at port until ctx
// ends; stop waits for the server and its goroutines. The blobs live in
// dir/blobs, apart from the engine's content store, whose collection
// deletes every blob no local image uses.
// RegistryGC sets the cluster registry's garbage collection.
type RegistryGC struct {
	// Interval between collections on each manager (0: none).
	Interval time.Duration
	// Grace is how long an unreferenced blob stays (registry.Config.GCGrace).
	Grace time.Duration
}

// Defaults of RegistryGC (`daemon --registry-gc-interval/--registry-gc-grace`).
const (
	DefaultRegistryGCInterval = time.Hour
	DefaultRegistryGCGrace    = registry.DefaultGCGrace
)

func startRegistry(ctx context.Context, dir, advertise string, port int, gc RegistryGC, nodeID string, sec *ca.Security, mgr *manager.Manager) (stop func(), err error) {
	host, _, err := net.SplitHostPort(advertise)
	if err != nil {
		return nil, fmt.Errorf("registry: advertise address %q: %w", advertise, err)
	}
	cs, err := content.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	uploads := filepath.Join(dir, "uploads")
	// Sessions are held in memory: what a previous run left is garbage.
	if err := os.RemoveAll(uploads); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if err := os.MkdirAll(uploads, 0o700); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	clientTLS := sec.TLSConfig(nil)
	cr := &clusterRegistry{
		port: port, nodeID: nodeID, sec: sec, mgr: mgr, blobs: &registryBlobs{cs: cs},
		// A manager that is down (its address silent) is given up on
		// after registryDialTimeout, not the system's minutes of SYN retries.
		peer: &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS,
			DialContext: (&net.Dialer{Timeout: registryDialTimeout}).DialContext}},
	}
	cr.api = registry.New(registry.Config{
		Blobs: fetchingBlobs{cr}, Tags: registry.RaftTagStore{Store: mgr.Store()},
		UploadDir: uploads, Authenticate: cr.authenticate, Replicate: cr.replicate, GCGrace: gc.Grace,
	})
	serverTLS := sec.TLSConfig(nil)
	// Users come without a certificate and show a token instead.
	serverTLS.ClientAuth = tls.RequestClientCert
	verify := serverTLS.VerifyPeerCertificate
	serverTLS.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return nil
		}
		return verify(raw, chains)
	}
	serverTLS.MinVersion = tls.VersionTLS12
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	srv := &http.Server{Handler: cr, ReadHeaderTimeout: 30 * time.Second, TLSConfig: serverTLS,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := srv.Serve(tls.NewListener(ln, serverTLS)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("registry stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		srv.Close()
		cr.peer.CloseIdleConnections()
	}()
	if gc.Interval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cr.collectGarbage(ctx, gc.Interval)
		}()
	}
	slog.Info("cluster registry serving", "addr", ln.Addr().String())
	return func() { cancel(); wg.Wait() }, nil
}

// collectGarbage runs a collection every interval until ctx ends: the
// leader drops unneeded links from the raft store, and every manager
// deletes the blobs that no repository holds from its own store.
func (cr *clusterRegistry) collectGarbage(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := cr.api.CollectGarbage(ctx, time.Now(), cr.mgr.Raft().IsLeader())
		switch {
		case err != nil && ctx.Err() == nil:
			slog.Warn("registry: garbage collection", "err", err)
		case st.Unlinked > 0 || st.Deleted > 0:
			slog.Info("registry: garbage collected", "links", st.Unlinked, "blobs", st.Deleted, "bytes", st.Bytes)
		}
	}
}

// ServeHTTP routes the managers' blob copies, forwards a follower's writes
// to the leader and serves the rest.
func (cr *clusterRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, blobPath) {
		cr.serveBlob(w, r)
		return
	}
	// One hop only: a request a follower forwarded is served here even if
	// leadership moved meanwhile (the tag store then refuses the write).
	if isRegistryWrite(r) && !cr.mgr.Raft().IsLeader() && r.Header.Get(forwardedHeader) == "" {
		if err := cr.authenticate(r); err != nil {
			// The handler writes the spec's 401.
			cr.api.ServeHTTP(w, r)
			return
		}
		cr.forward(w, r)
		return
	}
	cr.api.ServeHTTP(w, r)
}

// isRegistryWrite: a request that changes the tag store or an upload session
// (sessions live on the leader, so their status is asked there too).
func isRegistryWrite(r *http.Request) bool {
	return (r.Method != http.MethodGet && r.Method != http.MethodHead) || strings.Contains(r.URL.Path, "/blobs/uploads")
}

// forward sends r to the leader's registry with this manager's certificate.
func (cr *clusterRegistry) forward(w http.ResponseWriter, r *http.Request) {
	id, addr := cr.mgr.Raft().Leader()
	host, _, err := net.SplitHostPort(addr)
	if err != nil || id == cr.nodeID {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"no raft leader to write to"}]}`)
		return
	}
	target := &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(cr.port))}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = r.Host
			// The leader trusts this manager's certificate, not the user's token.
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set(forwardedHeader, cr.nodeID)
		},
		Transport: cr.peer.Transport,
	}
	p.ServeHTTP(w, r)
}

// authenticate admits a current node of the cluster by its certificate
// (verified at the handshake; the store says whether it is still a member,
// as the gRPC services check) or a user by the cluster's registry token,
// as the password of HTTP basic auth (any user name) or a bearer token.
func (cr *clusterRegistry) authenticate(r *http.Request) error {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		id, err := ca.IdentityOf(r.TLS.PeerCertificates[0])
		if err != nil {
			return err
		}
		return cr.member(id.NodeID)
	}
	var secret string
	if _, pass, ok := r.BasicAuth(); ok {
		secret = pass
	} else if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		secret = tok
	} else {
		return errors.New("a node certificate or the cluster's registry token is needed")
	}
	want, err := hex.DecodeString(cr.tokenHash())
	if err != nil || len(want) != sha256.Size {
		return errors.New("the cluster has no registry token (`shoal swarm registry-token` makes one)")
	}
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want) != 1 {
		return errors.New("wrong registry token")
	}
	return nil
}

// member refuses a node the store does not hold (removed).
func (cr *clusterRegistry) member(id string) error {
	n, hasCluster := cr.mgr.Store().PeekNode(id)
	if hasCluster && n == nil {
		return fmt.Errorf("node %s is not a member of the swarm", id)
	}
	return nil
}

// tokenHash is the registry token's hash as the cluster object holds it.
func (cr *clusterRegistry) tokenHash() string {
	var h string
	cr.mgr.Store().View(func(tx raftstore.ReadTx) {
		for _, o := range tx.List(raftstore.KindCluster) {
			h = o.(*api.Cluster).GetSpec().GetAnnotations().GetLabels()[RegistryTokenLabel]
		}
	})
	return h
}

// peers are the other managers' registry base URLs, as the store has them.
func (cr *clusterRegistry) peers() []string {
	var out []string
	cr.mgr.Store().View(func(tx raftstore.ReadTx) {
		for _, o := range tx.List(raftstore.KindNode) {
			n := o.(*api.Node)
			if n.GetId() == cr.nodeID || n.GetRole() != api.NodeRole_MANAGER {
				continue
			}
			host, _, err := net.SplitHostPort(n.GetManagerStatus().GetAddr())
			if err != nil {
				continue
			}
			out = append(out, "https://"+net.JoinHostPort(host, strconv.Itoa(cr.port)))
		}
	})
	return out
}

// serveBlob is the managers' blob copy endpoint: current managers only.
func (cr *clusterRegistry) serveBlob(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "a manager certificate is needed", http.StatusUnauthorized)
		return
	}
	id, err := ca.IdentityOf(r.TLS.PeerCertificates[0])
	if err == nil {
		if n, _ := cr.mgr.Store().PeekNode(id.NodeID); n == nil || n.GetRole() != api.NodeRole_MANAGER {
			err = fmt.Errorf("node %s is not a manager", id.NodeID)
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	d, err := digest.Parse(strings.TrimPrefix(r.URL.Path, blobPath))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodHead, http.MethodGet:
		// The local store only: a copy never fans out further. The blob
		// is in use from now on, whatever this replica says yet.
		cr.blobs.Touch(d)
		f, size, err := cr.blobs.Open(r.Context(), d)
		if err != nil {
			http.Error(w, err.Error(), blobStatus(err))
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		if r.Method == http.MethodGet {
			_, _ = io.Copy(w, f)
		}
	case http.MethodPut:
		if err := cr.blobs.Ingest(r.Context(), d, r.ContentLength, r.Body); err != nil {
			http.Error(w, err.Error(), blobStatus(err))
			return
		}
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func blobStatus(err error) int {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, registry.ErrDigestMismatch), errors.Is(err, registry.ErrUnsupportedDigest):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// replicate copies blobs to every other manager that lacks them, all
// managers side by side. A manager that cannot be reached at all is
// skipped (it fetches what it lacks on a read later); any other failure
// fails the push.
func (cr *clusterRegistry) replicate(ctx context.Context, blobs []digest.Digest) error {
	peers := cr.peers()
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, d := range blobs {
				if err := cr.push(ctx, p, d); err != nil {
					var op *net.OpError
					if errors.As(err, &op) && op.Op == "dial" {
						slog.Warn("registry: a manager is unreachable; it will fetch the blobs it lacks when asked", "manager", p, "err", err)
						return
					}
					errs[i] = fmt.Errorf("copy %s to %s: %w", d, p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// push copies blob d to the manager at base unless it holds it.
func (cr *clusterRegistry) push(ctx context.Context, base string, d digest.Digest) error {
	ctx, cancel := context.WithTimeout(ctx, registryPeerTimeout)
	defer cancel()
	u := base + blobPath + d.String()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return err
	}
	resp, err := cr.peer.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if resp.StatusCode != http.StatusNotFound {
		return fmt.Errorf("HEAD answered %s", resp.Status)
	}
	f, size, err := cr.blobs.Open(ctx, d)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, u, f)
	if err != nil {
		return err
	}
	req.ContentLength = size
	resp, err = cr.peer.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("PUT answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// fetch copies blob d from the first other manager that holds it; the
// content store verifies the digest before the blob becomes visible.
func (cr *clusterRegistry) fetch(ctx context.Context, d digest.Digest) error {
	var errs []error
	for _, p := range cr.peers() {
		err := func() error {
			ctx, cancel := context.WithTimeout(ctx, registryPeerTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, p+blobPath+d.String(), nil)
			if err != nil {
				return err
			}
			resp, err := cr.peer.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s answered %s", p, resp.Status)
			}
			return cr.blobs.Ingest(ctx, d, resp.ContentLength, resp.Body)
		}()
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("blob %s: %w (no other manager had it: %v)", d, registry.ErrNotFound, errors.Join(errs...))
}

// fetchingBlobs is the handler's BlobStore: this manager's blobs, and on a
// miss the other managers' (a manager that joined after a push, or was
// down during it).
type fetchingBlobs struct{ cr *clusterRegistry }

// Stat implements registry.BlobStore.
func (b fetchingBlobs) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	size, err := b.cr.blobs.Stat(ctx, d)
	if errors.Is(err, registry.ErrNotFound) {
		if ferr := b.cr.fetch(ctx, d); ferr != nil {
			return 0, ferr
		}
		return b.cr.blobs.Stat(ctx, d)
	}
	return size, err
}

// Open implements registry.BlobStore.
func (b fetchingBlobs) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
	rc, size, err := b.cr.blobs.Open(ctx, d)
	if errors.Is(err, registry.ErrNotFound) {
		if ferr := b.cr.fetch(ctx, d); ferr != nil {
			return nil, 0, ferr
		}
		return b.cr.blobs.Open(ctx, d)
	}
	return rc, size, err
}

// Ingest implements registry.BlobStore.
func (b fetchingBlobs) Ingest(ctx context.Context, d digest.Digest, size int64, r io.Reader) error {
	return b.cr.blobs.Ingest(ctx, d, size, r)
}

// Sweep implements registry.Sweeper: garbage collection deletes from this
// manager's blobs only.
func (b fetchingBlobs) Sweep(ctx context.Context, keep func(digest.Digest) bool, cutoff time.Time) (int, int64, error) {
	return b.cr.blobs.Sweep(ctx, keep, cutoff)
}

// IngestFile implements registry.FileIngester: a finished upload session's
// file moves into this manager's blobs.
func (b fetchingBlobs) IngestFile(ctx context.Context, d digest.Digest, size int64, path string) error {
	return b.cr.blobs.IngestFile(ctx, d, size, path)
}

// registry is where the cluster registry keeps its blobs and upload
// sessions; it goes with the rest of the swarm state on leave.
func (f swarmFiles) registry() string { return filepath.Join(f.dir, "registry") }
