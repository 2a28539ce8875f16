package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-project/shoal/containerd/distribution"
	"github.com/shoal-project/shoal/containerd/images"
	"github.com/shoal-project/shoal/manager/ca"
)

// taskImages finds the images of services: a manager resolves a service's
// image name to a digest (GET /distribution/{name}/json, which the CLI
// pins the spec with, as Docker's does) and a worker pulls a task's image
// before creating its container. Both look in the cluster registry first,
// then in the registry the name names.
type taskImages struct {
	sn *swarmNode
	// cluster talks to the managers' registries with the node's
	// certificate, trusting the cluster CA only.
	cluster *distribution.Client
	// public is the engine's client (`shoal pull`), for other registries.
	public registryService
}

// errNoCluster: the node is in no swarm, so there is no cluster registry.
var errNoCluster = errors.New("this node is not part of a swarm")

// newTaskImages makes the cluster registry's client over store; its
// partial downloads live in root, apart from the engine client's.
func newTaskImages(sn *swarmNode, store *images.Store, public registryService, root string) (*taskImages, error) {
	ti := &taskImages{sn: sn, public: public}
	cfg := &tls.Config{
		// Managers are dialled by IP: their certificate is checked against
		// the cluster CA and must be a manager's, not matched to a host name.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyPeerCertificate
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			sec := sn.nodeSecurity()
			if sec == nil {
				return nil, errNoCluster
			}
			return sec.TLSConfig(nil).GetClientCertificate(nil)
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sec := sn.nodeSecurity()
			if sec == nil {
				return errNoCluster
			}
			id, err := sec.VerifyChain(raw)
			if err != nil {
				return err
			}
			if id.Role != ca.RoleManager {
				return fmt.Errorf("cluster registry: peer %s is not a manager", id.NodeID)
			}
			return nil
		},
		MinVersion: tls.VersionTLS12,
	}
	c, err := distribution.New(store, distribution.Options{Root: filepath.Join(root, "distribution-cluster"), TLS: cfg})
	if err != nil {
		return nil, fmt.Errorf("cluster registry client: %w", err)
	}
	ti.cluster = c
	return ti, nil
}

// nodeSecurity is the node's current certificate and CA, nil outside a swarm.
func (s *swarmNode) nodeSecurity() *ca.Security {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == nil {
		return nil
	}
	return s.id.sec
}

// clusterRegistryHosts are the registries of the managers this node knows
// (host:port, this node's own first when it is a manager); every manager
// serves the registry on the same port.
func (s *swarmNode) clusterRegistryHosts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil || s.id == nil {
		return nil
	}
	port := s.registryPort
	if port == 0 {
		port = DefaultRegistryPort
	}
	var addrs []string
	if s.state.Role == roleManager {
		addrs = append(addrs, s.state.AdvertiseAddr)
	}
	addrs = append(addrs, s.state.Managers...)
	var hosts []string
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if hp := net.JoinHostPort(h, strconv.Itoa(port)); !slices.Contains(hosts, hp) {
			hosts = append(hosts, hp)
		}
	}
	return hosts
}

// clusterCandidates are the cluster registry references to try for ref:
// ref itself at each manager when it names a manager's registry, or the
// name at each manager when it names no registry; none otherwise.
func (ti *taskImages) clusterCandidates(ref images.Reference) []string {
	hosts := ti.sn.clusterRegistryHosts()
	if ref.Domain != "" && !slices.Contains(hosts, ref.Domain) {
		return nil
	}
	var out []string
	for _, h := range hosts {
		r := ref
		r.Domain = h
		out = append(out, r.String())
	}
	return out
}

// resolve is the descriptor of the manifest name names: from the cluster
// registry when it has the name, else from the name's own registry.
func (ti *taskImages) resolve(ctx context.Context, name string, auth distribution.Auth) (ocispec.Descriptor, error) {
	ref, err := images.ParseReference(name)
	if err != nil {
		return ocispec.Descriptor{}, badRequest("%v", err)
	}
	var clusterErr error
	for _, c := range ti.clusterCandidates(ref) {
		d, err := ti.cluster.Resolve(ctx, c, distribution.Auth{})
		if err == nil {
			return d, nil
		}
		if clusterErr == nil {
			clusterErr = err
		}
	}
	if ref.Domain != "" && clusterErr != nil {
		// A manager's registry is only reached with the node certificate.
		return ocispec.Descriptor{}, clusterErr
	}
	r, ok := ti.public.(interface {
		Resolve(context.Context, string, distribution.Auth) (ocispec.Descriptor, error)
	})
	if !ok {
		return ocispec.Descriptor{}, errors.New("no registry client")
	}
	d, err := r.Resolve(ctx, name, auth)
	if err != nil {
		if clusterErr != nil {
			return ocispec.Descriptor{}, fmt.Errorf("not in the cluster registry (%v), and %w", clusterErr, err)
		}
		return ocispec.Descriptor{}, err
	}
	return d, nil
}

// pull fetches a task's image ref (pinned by digest as a rule) into the
// node's store: from the cluster registry first, then from ref's registry
// with the service's --with-registry-auth credentials. The error says why
// each failed.
func (ti *taskImages) pull(ctx context.Context, name, registryAuth string) error {
	ref, err := images.ParseReference(name)
	if err != nil {
		return err
	}
	var errs []string
	for _, c := range ti.clusterCandidates(ref) {
		if _, err := ti.cluster.Pull(ctx, c, distribution.PullOptions{}); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return err
		} else if len(errs) == 0 {
			errs = append(errs, "cluster registry: "+err.Error())
		}
	}
	if ref.Domain != "" && len(errs) > 0 {
		return errors.New(errs[0])
	}
	auth, err := decodeAuth(registryAuth)
	if err != nil {
		return fmt.Errorf("the service's registry credentials: %w", err)
	}
	if _, err := ti.public.Pull(ctx, name, distribution.PullOptions{Auth: auth}); err != nil {
		errs = append(errs, err.Error())
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// distributionInspect serves GET /distribution/{name}/json as dockerd
// does: the manifest descriptor of an image name, which `service create`
// and `service update --image` pin the service's image with.
func (d *Daemon) distributionInspect(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/distribution/"), "/json")
	if !ok || name == "" {
		writeError(w, withStatus(http.StatusNotFound, errors.New("page not found")))
		return
	}
	auth, err := decodeAuth(r.Header.Get(registry.AuthHeader))
	if err != nil {
		writeError(w, err)
		return
	}
	if d.taskImages == nil {
		writeError(w, errors.New("no registry client"))
		return
	}
	desc, err := d.taskImages.resolve(r.Context(), name, auth)
	if err != nil {
		writeError(w, fmt.Errorf("resolve image %s: %w", name, err))
		return
	}
	writeJSON(w, http.StatusOK, registry.DistributionInspect{Descriptor: desc, Platforms: []ocispec.Platform{}})
}
