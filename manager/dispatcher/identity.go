package dispatcher

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ErrNoIdentity refuses a call that carries no verified client certificate.
var ErrNoIdentity = api.Wrap(api.ErrInvalidArgument, errors.New("dispatcher: no client certificate"))

// NodeIDFromTLS returns a Config.NodeID that takes the peer's leaf
// certificate from the gRPC connection's mTLS state and asks identify who it
// is (in the daemon: the cluster root CA's Identify, returning the NodeID).
// It does not import the CA package: manager packages stay siblings.
func NodeIDFromTLS(identify func(*x509.Certificate) (string, error)) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return "", ErrNoIdentity
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok {
			return "", ErrNoIdentity
		}
		var leaf *x509.Certificate
		switch {
		case len(info.State.VerifiedChains) > 0 && len(info.State.VerifiedChains[0]) > 0:
			leaf = info.State.VerifiedChains[0][0]
		case len(info.State.PeerCertificates) > 0:
			leaf = info.State.PeerCertificates[0]
		default:
			return "", ErrNoIdentity
		}
		id, err := identify(leaf)
		if err != nil {
			return "", api.Wrap(api.ErrInvalidArgument, fmt.Errorf("dispatcher: identify peer: %w", err))
		}
		if id == "" {
			return "", ErrNoIdentity
		}
		return id, nil
	}
}
