package daemon

import (
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/manager"
	"github.com/shoal-project/shoal/manager/ca"
	"google.golang.org/grpc"
)

// swarmState is what a node keeps of its swarm membership in
// <data-root>/swarm: who it is, its role, where it listens, and the managers
// it knows, so that a restarted daemon rejoins without a token. Its
// certificate, key and the cluster's root certificate sit beside it.
type swarmState struct {
	NodeID        string   `json:"node_id"`
	Role          string   `json:"role"` // "manager" or "worker"
	ListenAddr    string   `json:"listen_addr"`
	AdvertiseAddr string   `json:"advertise_addr"`
	Managers      []string `json:"managers"`
}

const (
	roleManager = "manager"
	roleWorker  = "worker"
)

// swarmFiles are the paths of a node's swarm state under dir.
type swarmFiles struct{ dir string }

func (f swarmFiles) state() string { return filepath.Join(f.dir, "state.json") }
func (f swarmFiles) root() string  { return filepath.Join(f.dir, "ca.crt") }
func (f swarmFiles) cert() string  { return filepath.Join(f.dir, "node.crt") }
func (f swarmFiles) key() string   { return filepath.Join(f.dir, "node.key") }

// pair holds the node's certificate and key in one file, so that a renewal
// replaces both with one rename: a crash can never leave a certificate
// beside a key it does not match. node.crt and node.key are read when it
// is absent (state written before renewals existed).
func (f swarmFiles) pair() string { return filepath.Join(f.dir, "node.pem") }
func (f swarmFiles) raft() string { return filepath.Join(f.dir, "raft") }

// identity is a node's credentials: one ca.Security shared by the node's
// manager, its agent and its REST connection, so that a renewed certificate
// or a new trust bundle is used by every new connection at once.
type identity struct {
	sec *ca.Security
}

func newIdentity(root *ca.RootCA, cert []byte, key *ecdsa.PrivateKey) (*identity, error) {
	sec, err := ca.NewSecurity(root, cert, key)
	if err != nil {
		return nil, err
	}
	return &identity{sec: sec}, nil
}

// clientTLS is the mutual-TLS configuration id dials managers with.
func (id *identity) clientTLS() (*tls.Config, error) {
	return manager.SecurityClientTLS(id.sec), nil
}

// dial opens a connection to the manager at addr as id.
func (id *identity) dial(addr string) (*grpc.ClientConn, error) {
	cfg, err := id.clientTLS()
	if err != nil {
		return nil, err
	}
	return manager.Dial(addr, cfg)
}

// loadState reads the state; nil means the node is in no swarm.
func (f swarmFiles) loadState() (*swarmState, error) {
	b, err := os.ReadFile(f.state())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("swarm state: %w", err)
	}
	var st swarmState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("swarm state %s: %w", f.state(), err)
	}
	return &st, nil
}

// loadIdentity reads the node's credentials; one of deks opens a sealed
// key (swarmkey.go).
func (f swarmFiles) loadIdentity(deks ...[]byte) (*identity, error) {
	rootPEM, err := os.ReadFile(f.root())
	if err != nil {
		return nil, fmt.Errorf("swarm root CA: %w", err)
	}
	root, err := ca.ParseBundle(rootPEM)
	if err != nil {
		return nil, err
	}
	cert, keyPEM, err := f.loadPair(deks)
	if err != nil {
		return nil, err
	}
	key, err := ca.ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	return newIdentity(root, cert, key)
}

// loadPair reads the node's certificate chain and key PEM, opening a
// sealed key with one of deks.
func (f swarmFiles) loadPair(deks [][]byte) (cert, keyPEM []byte, err error) {
	b, err := os.ReadFile(f.pair())
	if errors.Is(err, os.ErrNotExist) {
		if cert, err = os.ReadFile(f.cert()); err != nil {
			return nil, nil, fmt.Errorf("swarm node certificate: %w", err)
		}
		if keyPEM, err = os.ReadFile(f.key()); err != nil {
			return nil, nil, fmt.Errorf("swarm node key: %w", err)
		}
		return cert, keyPEM, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("swarm node certificate: %w", err)
	}
	for len(b) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			cert = append(cert, pem.EncodeToMemory(blk)...)
		} else if keyPEM, err = openKeyPEM(blk, deks...); err != nil {
			return nil, nil, err
		}
	}
	if cert == nil || keyPEM == nil {
		return nil, nil, fmt.Errorf("swarm node certificate %s: want a certificate and a key", f.pair())
	}
	return cert, keyPEM, nil
}

// saveIdentity writes the credentials (readable by root only): the trust
// bundle, then the certificate and key together in one atomic file, the
// key sealed with dek unless it is nil (a manager's: swarmkey.go).
func (f swarmFiles) saveIdentity(id *identity, dek []byte) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("swarm state: %w", err)
	}
	if err := f.saveRoot(id.sec.Root()); err != nil {
		return err
	}
	cert, key := id.sec.Credentials()
	keyPEM, err := ca.KeyPEM(key)
	if err != nil {
		return err
	}
	if keyPEM, err = sealKeyPEM(keyPEM, dek); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(f.pair(), append(append([]byte(nil), cert...), keyPEM...), 0o600); err != nil {
		return err
	}
	// The old separate files would be stale now; node.pem wins on load.
	for _, p := range []string{f.cert(), f.key()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("swarm state: %w", err)
		}
	}
	return atomicfile.SyncDir(f.dir)
}

// saveRoot writes the trust bundle.
func (f swarmFiles) saveRoot(root *ca.RootCA) error {
	return atomicfile.WriteFile(f.root(), root.BundlePEM(), 0o600)
}

// save writes the state last: a node whose state file exists has all of
// its credentials on disk.
func (f swarmFiles) save(st *swarmState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(f.state(), b, 0o600)
}
