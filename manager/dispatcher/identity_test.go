package dispatcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"testing"

	"github.com/shoal-project/shoal/api"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

func TestNodeIDFromTLS(t *testing.T) {
	cn := func(c *x509.Certificate) (string, error) {
		if c.Subject.CommonName == "bad" {
			return "", errors.New("not ours")
		}
		return c.Subject.CommonName, nil
	}
	nodeID := NodeIDFromTLS(cn)
	withPeer := func(auth credentials.AuthInfo) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{}, AuthInfo: auth})
	}
	leaf := func(name string) credentials.TLSInfo {
		return credentials.TLSInfo{State: tls.ConnectionState{
			VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: name}}}},
		}}
	}
	if id, err := nodeID(withPeer(leaf("node-1"))); err != nil || id != "node-1" {
		t.Fatalf("verified leaf: %q, %v", id, err)
	}
	for name, ctx := range map[string]context.Context{
		"no peer":     context.Background(),
		"no TLS":      withPeer(nil),
		"no cert":     withPeer(credentials.TLSInfo{}),
		"refused":     withPeer(leaf("bad")),
		"empty CN ID": withPeer(leaf("")),
	} {
		if _, err := nodeID(ctx); !errors.Is(err, api.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want invalid argument", name, err)
		}
	}
}
