package manager

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager/ca"
	"github.com/shoal-project/shoal/raftstore"
	"google.golang.org/protobuf/proto"
)

// rotationPeriod is how often the leader checks a root rotation's progress.
const rotationPeriod = time.Second

// now is the manager's clock for certificates: the Security's.
func (m *Manager) now() time.Time {
	if m.sec.Now != nil {
		return m.sec.Now()
	}
	return time.Now()
}

// cluster is the stored cluster object (shared: read only), nil before the
// first replication.
func (m *Manager) cluster() *api.Cluster {
	var c *api.Cluster
	m.store.View(func(tx raftstore.ReadTx) {
		if cs := tx.Clusters(); len(cs) > 0 {
			c = cs[0]
		}
	})
	return c
}

// trustBundle is what agents are told to trust, in their session messages.
func (m *Manager) trustBundle() []byte {
	if c := m.cluster(); c != nil {
		if r, err := trustOf(c); err == nil {
			return r.BundlePEM()
		}
	}
	return m.sec.Root().BundlePEM()
}

// followCluster applies the cluster object's settings to this manager, on
// every manager: the roots it trusts (both while a rotation is in progress,
// the new one alone after it) and raft's snapshot interval. It ends with ctx.
func (m *Manager) followCluster(ctx context.Context) {
	for ctx.Err() == nil {
		var c *api.Cluster
		w := m.store.ViewAndWatch(0, func(tx raftstore.ReadTx) {
			if cs := tx.Clusters(); len(cs) > 0 {
				c = cs[0]
			}
		}, raftstore.KindCluster)
		m.applyCluster(c)
		for open := true; open; {
			select {
			case <-ctx.Done():
				w.Close()
				return
			case b, ok := <-w.C():
				if !ok {
					open = false // overflow or restore: read again
					break
				}
				for _, e := range b.Events {
					if cl, ok := e.Object.(*api.Cluster); ok {
						m.applyCluster(cl)
					}
				}
			}
		}
	}
}

func (m *Manager) applyCluster(c *api.Cluster) {
	if c == nil || len(c.GetRootCa().GetCaCert()) == 0 {
		return
	}
	m.followUnlockKey(c)
	if want := c.GetSpec().GetSnapshotInterval(); want != 0 && want != m.raft.SnapshotThreshold() {
		if err := m.raft.SetSnapshotThreshold(want); err != nil {
			m.log.Warn("manager: snapshot interval", "err", err)
		}
	}
	r, err := trustOf(c)
	if err != nil {
		m.log.Warn("manager: cluster root CA unreadable", "err", err)
		return
	}
	if !bytes.Equal(r.BundlePEM(), m.sec.Root().BundlePEM()) {
		m.sec.SetRoot(r)
		m.log.Info("manager: trusted roots changed", "roots", 1+len(r.Trusted))
	}
}

// reconcileRootRotation runs on the leader. While a rotation is in
// progress, it asks each node whose certificate is not yet from the new
// root to renew (Certificate.renew, which its session passes on), and once
// every node that is not down has one, it completes the rotation: the new
// root becomes the root, the old one is no longer trusted, and the join
// tokens pin the new root (same secrets). A node that was down all along
// and comes back after that holds a certificate nobody trusts: it must
// join again (docs/cluster.md).
func (m *Manager) reconcileRootRotation(ctx context.Context) error {
	for {
		if err := m.rotationPass(ctx); err != nil && ctx.Err() == nil {
			m.log.Debug("manager: root rotation pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(rotationPeriod):
		}
	}
}

func (m *Manager) rotationPass(ctx context.Context) error {
	c := m.cluster()
	rot := c.GetRootCa().GetRootRotation()
	if rot == nil {
		return nil
	}
	next, err := ca.ParseRootCA(rot.GetCaCert(), nil)
	if err != nil {
		return err
	}
	var nodes []*api.Node
	m.store.View(func(tx raftstore.ReadTx) { nodes = tx.Nodes() })
	var ask []string
	pending := 0
	for _, n := range nodes {
		if n.GetStatus().GetState() == api.NodeStatus_DOWN || certFrom(n.GetCertificate().GetCertificate(), next.Cert) {
			continue
		}
		pending++
		if !n.GetCertificate().GetRenew() {
			ask = append(ask, n.GetId())
		}
	}
	for _, id := range ask {
		err := m.updateNode(ctx, id, func(n *api.Node) bool {
			if certFrom(n.GetCertificate().GetCertificate(), next.Cert) {
				return false
			}
			if n.Certificate == nil {
				n.Certificate = &api.Certificate{}
			}
			n.Certificate.Renew = true
			return true
		})
		if err != nil {
			return fmt.Errorf("ask node %s to renew: %w", id, err)
		}
	}
	if pending > 0 {
		return nil
	}
	return m.completeRotation(ctx, c.GetId(), rot)
}

// completeRotation makes rot's root the cluster's, if rot is still the
// rotation in progress.
func (m *Manager) completeRotation(ctx context.Context, clusterID string, rot *api.RootRotation) error {
	err := m.store.Update(ctx, func(tx raftstore.WriteTx) error {
		c := tx.GetCluster(clusterID)
		if c == nil || !proto.Equal(c.GetRootCa().GetRootRotation(), rot) {
			return nil
		}
		blk, _ := pem.Decode(rot.GetCaCert())
		if blk == nil {
			return errors.New("new root is not PEM")
		}
		tokens := c.GetRootCa().GetJoinTokens()
		for _, t := range []*string{&tokens.Worker, &tokens.Manager} {
			if tok, err := ca.ParseToken(*t); err == nil {
				fresh, err := ca.NewToken(blk.Bytes)
				if err != nil {
					return err
				}
				fresh.Secret = tok.Secret
				*t = fresh.String()
			}
		}
		c.RootCa.CaCert, c.RootCa.CaKey, c.RootCa.RootRotation = rot.GetCaCert(), rot.GetCaKey(), nil
		return tx.Update(c)
	})
	if err != nil {
		return fmt.Errorf("complete the root rotation: %w", err)
	}
	m.log.Info("manager: root CA rotation complete")
	return nil
}

// certFrom reports whether certPEM's leaf was signed by root.
func certFrom(certPEM []byte, root *x509.Certificate) bool {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return false
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	return err == nil && ca.SignedBy(c, root)
}
