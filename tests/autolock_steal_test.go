package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-project/shoal/api"
	"github.com/shoal-project/shoal/tests/harness"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// stealManagerIdentity is the attack autolock exists for: someone with a
// copy of a (locked, or stopped) manager's disk takes its certificate and
// key from the swarm directory and calls the cluster's Control API at
// target as that manager. It returns the number of nodes the stolen
// identity could list, or the error that stopped it.
func stealManagerIdentity(victim, target *harness.Host) (int, error) {
	dir := filepath.Join(victim.Daemon.Root, "swarm")
	rootPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return 0, err
	}
	pair, err := os.ReadFile(filepath.Join(dir, "node.pem"))
	if err != nil {
		return 0, err
	}
	var certPEM, keyPEM []byte
	for rest := pair; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certPEM = append(certPEM, pem.EncodeToMemory(b)...)
		} else {
			keyPEM = append(keyPEM, pem.EncodeToMemory(b)...)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return 0, fmt.Errorf("no usable key on disk: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "swarm-manager"})
	conn, err := grpc.NewClient("passthrough:///"+target.IP+":2377", grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return victim.DialTimeout("tcp", addr, 5*time.Second)
		}))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := api.NewControlClient(conn).ListNodes(ctx, &api.ListNodesRequest{})
	if err != nil {
		return 0, err
	}
	return len(resp.GetNodes()), nil
}
