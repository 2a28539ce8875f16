package daemon

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
)

// A manager's TLS key is stored sealed with its raft data key, so that
// autolock protects it exactly as it protects the raft state: while the
// swarm is locked, the data key is sealed with the unlock key, and a copy
// of the manager's disk holds no key the cluster would accept (Swarm
// encrypts the node key with its key-encryption key for the same reason).
// A worker has no data key and keeps its key in the clear, as in Swarm,
// whose autolock covers managers only.

// sealedKeyType is the PEM type of a node key sealed with the data key.
const sealedKeyType = "SHOAL SEALED EC PRIVATE KEY"

// nodeKeyAD binds a sealed key to its purpose (and derives its own key from
// the data key: the raft log's encryption never shares a key with it).
const nodeKeyAD = "shoal node key v1"

// errKeySealed: the node key is sealed and the data key is not at hand.
var errKeySealed = errors.New("swarm node key is sealed with the raft data key")

func nodeKeyAEAD(dek []byte) (cipher.AEAD, error) {
	a, err := derivedAEAD(dek, nodeKeyAD)
	if err != nil {
		return nil, fmt.Errorf("node key seal: %w", err)
	}
	return a, nil
}

// sealKeyPEM returns keyPEM sealed with dek (nil dek: keyPEM unchanged).
func sealKeyPEM(keyPEM, dek []byte) ([]byte, error) {
	if len(dek) == 0 {
		return keyPEM, nil
	}
	a, err := nodeKeyAEAD(dek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("node key seal: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: sealedKeyType, Bytes: a.Seal(nonce, nonce, keyPEM, []byte(nodeKeyAD))}), nil
}

// openKeyPEM returns the key PEM that blk holds, opening it with one of
// deks when it is sealed (a data key rotation reseals it, and a crash may
// come between the new key's save and the reseal).
func openKeyPEM(blk *pem.Block, deks ...[]byte) ([]byte, error) {
	if blk.Type != sealedKeyType {
		return pem.EncodeToMemory(blk), nil
	}
	deks = slices.DeleteFunc(slices.Clone(deks), func(k []byte) bool { return len(k) == 0 })
	if len(deks) == 0 {
		return nil, errKeySealed
	}
	for _, dek := range deks {
		a, err := nodeKeyAEAD(dek)
		if err != nil {
			return nil, err
		}
		ns := a.NonceSize()
		if len(blk.Bytes) < ns {
			return nil, errors.New("swarm node key: sealed key too short")
		}
		if keyPEM, err := a.Open(nil, blk.Bytes[:ns], blk.Bytes[ns:], []byte(nodeKeyAD)); err == nil {
			return keyPEM, nil
		}
	}
	return nil, errors.New("swarm node key: does not open with this node's raft data keys")
}
