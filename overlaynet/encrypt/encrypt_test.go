package encrypt

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"
)

// TestKeys: key pairs differ per node and per network key, are stable, and
// a node's public key is the one its private key gives.
func TestKeys(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, KeySize)
	k2 := bytes.Repeat([]byte{2}, KeySize)
	a, b := net.ParseIP("198.18.0.1"), net.ParseIP("198.18.0.2")
	if PublicKey(k1, a) == PublicKey(k1, b) {
		t.Fatal("two nodes share a key pair")
	}
	if PublicKey(k1, a) == PublicKey(k2, a) {
		t.Fatal("a new network key keeps the node's key pair")
	}
	if PublicKey(k1, a) != PublicKey(k1, a.To4()) {
		t.Fatal("key pair depends on the address's form")
	}
	priv := PrivateKey(k1, a)
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	if want := PublicKey(k1, a); !bytes.Equal(pub, want[:]) {
		t.Fatal("public key does not match the private key")
	}
	if presharedKey(k1) == presharedKey(k2) || presharedKey(k1) == PrivateKey(k1, a) {
		t.Fatal("preshared key not bound to the network key alone")
	}
	if Port(4096) != BasePort || Port(4097) != BasePort+1 {
		t.Fatalf("ports %d %d", Port(4096), Port(4097))
	}
}

// TestOpenRefusesBadInput: a short key or an IPv6 address is refused before
// anything is made.
func TestOpenRefusesBadInput(t *testing.T) {
	if _, err := Open("/nonexistent", 4096, net.ParseIP("198.18.0.1"), 1400, []byte("short")); err == nil || !strings.Contains(err.Error(), "network key") {
		t.Fatalf("short key: %v", err)
	}
	if _, err := Open("/nonexistent", 4096, net.ParseIP("2001:db8::1"), 1400, make([]byte, KeySize)); err == nil || !strings.Contains(err.Error(), "IPv4") {
		t.Fatalf("IPv6 address: %v", err)
	}
}
