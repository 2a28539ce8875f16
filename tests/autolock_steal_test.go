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

	"github.com/shoal-project/shoal/tests/harness"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/emptypb"
)

// stealManagerIdentity is the attack autolock exists for: someone with a
// copy of a (locked, or stopped) manager's disk takes its certificate and
// key from the swarm directory and calls the cluster's Control API at
// target as that manager. It returns nil when the cluster answered the
// stolen identity's ListNodes, else the error that stopped it. (The test
// package may not import the project's api: the call goes out by name with
// an empty request, which is what ListNodesRequest{} encodes to, and the
// answer is read as an empty message, its fields kept as unknown.)
func stealManagerIdentity(victim, target *harness.Host) error {
	dir := filepath.Join(victim.Daemon.Root, "swarm")
	rootPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return err
	}
	pair, err := os.ReadFile(filepath.Join(dir, "node.pem"))
	if err != nil {
		return err
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
		return fmt.Errorf("no usable key on disk: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "swarm-manager"})
	conn, err := grpc.NewClient("passthrough:///"+target.IP+":2377", grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return victim.DialTimeout("tcp", addr, 5*time.Second)
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var nodes emptypb.Empty
	return conn.Invoke(ctx, "/shoal.api.Control/ListNodes", &emptypb.Empty{}, &nodes)
}
