package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/manager"
	"github.com/shoal-project/shoal/manager/ca"
)

// Renewal retries: a failed renewal is tried again after renewRetryMin,
// doubling up to renewRetryMax, so a node whose managers are all away keeps
// trying without flooding them when they return.
const (
	renewRetryMin = time.Second
	renewRetryMax = time.Minute
	renewTimeout  = 20 * time.Second
)

// certRenewal keeps a node's certificate valid, as Swarm does: the node
// renews when about two thirds of its certificate's life have passed (with
// jitter, ca.RenewAt), and at once when the managers ask (a root rotation:
// Certificate.renew in its session, or a certificate the new root did not
// sign). It renews over mutual TLS with its current certificate
// (CA.RenewNodeCertificate), writes the new certificate and key in one
// atomic file, and puts them in the node's ca.Security, so every new
// connection (and, on a manager, its server and raft) uses them without a
// restart. Session messages also carry the cluster's trust bundle, which
// replaces the node's trusted roots when a rotation starts and ends.
type certRenewal struct {
	files swarmFiles
	// kick asks run to renew now.
	kick chan struct{}
	// sealKey is the key to seal the node key with on disk (nil: none).
	sealKey func() []byte

	// mu serialises writes of the node's credentials and guards managers.
	mu       sync.Mutex
	managers []string // from the newest session message
}

func newCertRenewal(files swarmFiles, sealKey func() []byte) *certRenewal {
	return &certRenewal{files: files, kick: make(chan struct{}, 1), sealKey: sealKey}
}

// run renews id's certificate when due until ctx ends. known are the
// managers the node knew when it started; advertise is its own address.
func (c *certRenewal) run(ctx context.Context, id *identity, known []string, advertise string) {
	retry := renewRetryMin
	for {
		at := ca.RenewAt(id.sec.Leaf(), rand.Float64())
		timer := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-c.kick:
			timer.Stop()
		}
		err := c.renew(ctx, id, known, advertise)
		if err == nil {
			retry = renewRetryMin
			continue
		}
		if ctx.Err() != nil {
			return
		}
		slog.Warn("swarm: certificate renewal failed; retrying", "in", retry, "expires", id.sec.Leaf().NotAfter, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		retry = min(2*retry, renewRetryMax)
	}
}

// renew asks the managers, in turn, for a new certificate.
func (c *certRenewal) renew(ctx context.Context, id *identity, known []string, advertise string) error {
	c.mu.Lock()
	addrs := dedup(append(slices.Clone(c.managers), known...))
	c.mu.Unlock()
	if len(addrs) == 0 {
		return errors.New("no manager known")
	}
	var errs []error
	for _, addr := range addrs {
		conn, err := id.dial(addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, renewTimeout)
		res, err := manager.RenewCertificate(rctx, conn, advertise)
		cancel()
		conn.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if err := c.install(id, res); err != nil {
			return err
		}
		slog.Info("swarm: node certificate renewed", "via", addr, "expires", id.sec.Leaf().NotAfter)
		return nil
	}
	return errors.Join(errs...)
}

// serialise runs f, a write of the node's credentials, apart from renewals.
func (c *certRenewal) serialise(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return f()
}

// install makes res the node's credentials and trust, on disk first.
func (c *certRenewal) install(id *identity, res *manager.JoinResult) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	next, err := ca.NewSecurity(res.Root, res.Cert, res.Key)
	if err != nil {
		return fmt.Errorf("renewed certificate: %w", err)
	}
	if err := c.files.saveIdentity(&identity{sec: next}, c.sealKey()); err != nil {
		return err
	}
	id.sec.SetRoot(res.Root)
	return id.sec.SetCredentials(res.Cert, res.Key)
}

// follow takes what a session message says about certificates: the
// managers to renew through, the trust bundle, and whether to renew now.
// It runs on the agent's session goroutine and never waits for run.
func (c *certRenewal) follow(id *identity, m *api.SessionMessage) {
	var addrs []string
	for _, p := range m.GetManagers() {
		if p.GetAddr() != "" {
			addrs = append(addrs, p.GetAddr())
		}
	}
	c.mu.Lock()
	if len(addrs) > 0 {
		c.managers = addrs
	}
	if b := m.GetRootCa(); len(b) > 0 && !bytes.Equal(b, id.sec.Root().BundlePEM()) {
		if root, err := ca.ParseBundle(b); err != nil {
			slog.Warn("swarm: trust bundle from the managers unreadable", "err", err)
		} else if err := c.files.saveRoot(root); err != nil {
			slog.Warn("swarm: save trust bundle", "err", err)
		} else {
			id.sec.SetRoot(root)
			slog.Info("swarm: trusted roots changed", "roots", 1+len(root.Trusted))
		}
	}
	c.mu.Unlock()
	if m.GetNode().GetCertificate().GetRenew() || !ca.SignedBy(id.sec.Leaf(), id.sec.Root().Cert) {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}
