package daemon

import (
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
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
func (f swarmFiles) raft() string  { return filepath.Join(f.dir, "raft") }

// identity is a node's credentials.
type identity struct {
	root *ca.RootCA
	cert []byte
	key  *ecdsa.PrivateKey
}

// clientTLS is the mutual-TLS configuration id dials managers with.
func (id *identity) clientTLS() (*tls.Config, error) {
	return manager.ClientTLS(id.root, id.cert, id.key)
}

// dial opens a connection to the manager at addr as id.
func (id *identity) dial(addr string) (*grpc.ClientConn, error) {
	cfg, err := id.clientTLS()
	if err != nil {
		return nil, err
	}
	return manager.Dial(addr, cfg)
}

// load reads the state; (nil, nil) means the node is in no swarm.
func (f swarmFiles) load() (*swarmState, *identity, error) {
	b, err := os.ReadFile(f.state())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("swarm state: %w", err)
	}
	var st swarmState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, nil, fmt.Errorf("swarm state %s: %w", f.state(), err)
	}
	id, err := f.loadIdentity()
	if err != nil {
		return nil, nil, err
	}
	return &st, id, nil
}

func (f swarmFiles) loadIdentity() (*identity, error) {
	rootPEM, err := os.ReadFile(f.root())
	if err != nil {
		return nil, fmt.Errorf("swarm root CA: %w", err)
	}
	root, err := ca.ParseRootCA(rootPEM, nil)
	if err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(f.cert())
	if err != nil {
		return nil, fmt.Errorf("swarm node certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.key())
	if err != nil {
		return nil, fmt.Errorf("swarm node key: %w", err)
	}
	key, err := ca.ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	return &identity{root: root, cert: cert, key: key}, nil
}

// saveIdentity writes the credentials (the key readable by root only).
func (f swarmFiles) saveIdentity(id *identity) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("swarm state: %w", err)
	}
	keyPEM, err := ca.KeyPEM(id.key)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		path string
		data []byte
	}{{f.root(), id.root.CertPEM()}, {f.cert(), id.cert}, {f.key(), keyPEM}} {
		if err := atomicfile.WriteFile(w.path, w.data, 0o600); err != nil {
			return err
		}
	}
	return nil
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
