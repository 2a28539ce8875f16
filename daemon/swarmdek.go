package daemon

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/shoal-project/shoal/containerd/atomicfile"
	"github.com/shoal-project/shoal/raftstore"
)

// The raft data key (DEK) that encrypts a manager's raft log and snapshots
// (raftstore/encrypt.go) lives in <swarm dir>/raft-dek.json, beside the
// node's key: in the clear while the swarm is not autolocked, else sealed
// (AES-256-GCM) with a key derived from the cluster's unlock key, so that a
// copy of the state directory, or a restarted manager, reveals nothing
// until `swarm unlock` gives the key.
type dekFile struct {
	// DEK is the data key in the clear (autolock off), Old the keys it
	// replaced (dataKeys).
	DEK []byte   `json:"dek,omitempty"`
	Old [][]byte `json:"old_deks,omitempty"`
	// Sealed is the data keys sealed with the unlock key: nonce, then the
	// ciphertext of sealedKeys as JSON (or, in files written before data
	// keys rotated, of the bare key).
	Sealed []byte `json:"sealed_dek,omitempty"`
	// ClusterVersion is the version of the cluster object whose unlock key
	// (or its absence) this follows (manager.Config.SealedAt).
	ClusterVersion uint64 `json:"cluster_version,omitempty"`
}

// dataKeys are a manager's raft data keys: dek seals, old (oldest first)
// are the keys it replaced, which the log and snapshots may still need
// (manager/autolock.go rotates them).
type dataKeys struct {
	dek []byte
	old [][]byte
}

// all is every key, the current one first.
func (k dataKeys) all() [][]byte { return append([][]byte{k.dek}, k.old...) }

// sealedKeys is what Sealed holds.
type sealedKeys struct {
	DEK []byte   `json:"dek"`
	Old [][]byte `json:"old,omitempty"`
}

// unlockKeyPrefix starts a human-readable unlock key, as Swarm's.
const unlockKeyPrefix = "SWMKEY-1-"

// Docker's answers about a locked swarm.
var (
	errSwarmLocked    = withStatus(http.StatusServiceUnavailable, errors.New(`Swarm is encrypted and needs to be unlocked before it can be used. Please use "docker swarm unlock" to unlock it.`))
	errWrongUnlockKey = withStatus(http.StatusBadRequest, errors.New("swarm could not be unlocked: invalid key provided"))
	errNotLocked      = withStatus(http.StatusServiceUnavailable, errors.New("swarm is not locked"))
)

// kekAD binds a sealed DEK to its purpose.
var kekAD = []byte("shoal raft data key v1")

func (f swarmFiles) dek() string { return filepath.Join(f.dir, "raft-dek.json") }

// formatUnlockKey is key as the CLI shows it: SWMKEY-1-<base64>.
func formatUnlockKey(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	return unlockKeyPrefix + base64.RawStdEncoding.EncodeToString(key)
}

// parseUnlockKey reads a key formatted by formatUnlockKey.
func parseUnlockKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(s, unlockKeyPrefix))
	if !strings.HasPrefix(s, unlockKeyPrefix) || err != nil || len(b) == 0 {
		return nil, withStatus(http.StatusBadRequest, errors.New("invalid unlock key: want SWMKEY-1-<base64>"))
	}
	return b, nil
}

// kek is the AEAD of the key-encryption key derived from an unlock key.
func kek(unlockKey []byte) (cipher.AEAD, error) {
	a, err := derivedAEAD(unlockKey, string(kekAD))
	if err != nil {
		return nil, fmt.Errorf("unlock key: %w", err)
	}
	return a, nil
}

// derivedAEAD is AES-256-GCM under a key derived from secret for purpose
// alone (HKDF-SHA256), so that no two uses of a secret share a key.
func derivedAEAD(secret []byte, purpose string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, secret, nil, purpose, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// saveDEK writes keys, sealed with unlockKey unless it is nil, as of the
// cluster object at clusterVersion.
func (f swarmFiles) saveDEK(keys dataKeys, unlockKey []byte, clusterVersion uint64) error {
	df := dekFile{ClusterVersion: clusterVersion}
	if len(unlockKey) == 0 {
		df.DEK, df.Old = keys.dek, keys.old
	} else {
		a, err := kek(unlockKey)
		if err != nil {
			return err
		}
		nonce := make([]byte, a.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("raft data key: %w", err)
		}
		plain, err := json.Marshal(sealedKeys{DEK: keys.dek, Old: keys.old})
		if err != nil {
			return err
		}
		df.Sealed = a.Seal(nonce, nonce, plain, kekAD)
	}
	b, err := json.Marshal(df)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(f.dek(), b, 0o600)
}

func (f swarmFiles) readDEK() (*dekFile, error) {
	b, err := os.ReadFile(f.dek())
	if err != nil {
		return nil, err
	}
	var df dekFile
	if err := json.Unmarshal(b, &df); err != nil {
		return nil, fmt.Errorf("raft data key %s: %w", f.dek(), err)
	}
	return &df, nil
}

// dekLocked reports whether the data key on disk is sealed.
func (f swarmFiles) dekLocked() (bool, error) {
	df, err := f.readDEK()
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(df.Sealed) > 0, nil
}

// loadDEK returns the data keys and the cluster version their seal
// follows, opening them with unlockKey when they are sealed. A manager
// without one (new, or its state written before raft encryption) gets a
// new key, sealed with unlockKey when given; raftstore still reads the
// plaintext entries of an older state.
func (f swarmFiles) loadDEK(unlockKey []byte) (dataKeys, uint64, error) {
	df, err := f.readDEK()
	if errors.Is(err, os.ErrNotExist) {
		keys := dataKeys{dek: make([]byte, raftstore.DEKSize)}
		if _, err := rand.Read(keys.dek); err != nil {
			return dataKeys{}, 0, fmt.Errorf("raft data key: %w", err)
		}
		if err := os.MkdirAll(f.dir, 0o700); err != nil {
			return dataKeys{}, 0, fmt.Errorf("swarm state: %w", err)
		}
		return keys, 0, f.saveDEK(keys, unlockKey, 0)
	}
	if err != nil {
		return dataKeys{}, 0, err
	}
	keys := dataKeys{dek: df.DEK, old: df.Old}
	if len(df.Sealed) > 0 {
		if len(unlockKey) == 0 {
			return dataKeys{}, 0, errSwarmLocked
		}
		if keys, err = f.openSealed(df.Sealed, unlockKey); err != nil {
			return dataKeys{}, 0, err
		}
	}
	for _, k := range keys.all() {
		if len(k) != raftstore.DEKSize {
			return dataKeys{}, 0, fmt.Errorf("raft data key %s: %d bytes, want %d", f.dek(), len(k), raftstore.DEKSize)
		}
	}
	return keys, df.ClusterVersion, nil
}

// openSealed opens the sealed keys of the data key file with unlockKey.
func (f swarmFiles) openSealed(sealed, unlockKey []byte) (dataKeys, error) {
	a, err := kek(unlockKey)
	if err != nil {
		return dataKeys{}, err
	}
	ns := a.NonceSize()
	if len(sealed) < ns {
		return dataKeys{}, fmt.Errorf("raft data key %s: sealed key too short", f.dek())
	}
	plain, err := a.Open(nil, sealed[:ns], sealed[ns:], kekAD)
	if err != nil {
		return dataKeys{}, errWrongUnlockKey
	}
	if len(plain) == raftstore.DEKSize {
		return dataKeys{dek: plain}, nil // written before data keys rotated
	}
	var sk sealedKeys
	if err := json.Unmarshal(plain, &sk); err != nil {
		return dataKeys{}, fmt.Errorf("raft data key %s: %w", f.dek(), err)
	}
	return dataKeys{dek: sk.DEK, old: sk.Old}, nil
}

// sealDEK writes the manager's data keys sealed with unlockKey (manager's
// Config.SealDEK); when the data key is new, the node key is sealed again
// with it, after the keys are on disk (a crash in between leaves a node key
// that one of the old keys opens).
func (s *swarmNode) sealDEK(id *identity, keys dataKeys, unlockKey []byte, clusterVersion uint64) error {
	if err := s.files.saveDEK(keys, unlockKey, clusterVersion); err != nil {
		return err
	}
	return s.certs.serialise(func() error {
		if bytes.Equal(keys.dek, s.sealKey()) {
			return nil
		}
		s.dek.Store(&keys.dek)
		return s.files.saveIdentity(id, keys.dek)
	})
}

// dropDEK removes the data key with the raft state it encrypts (demotion,
// or a promotion that starts a fresh raft state). Called with mu held.
func (s *swarmNode) dropDEK() {
	s.unlockKey = nil
	s.dek.Store(nil)
	if err := os.Remove(s.files.dek()); err != nil && !errors.Is(err, os.ErrNotExist) {
		slog.Warn("swarm: remove raft data key", "err", err)
	}
}

// unlock starts the locked manager with key (`swarm unlock`). A wrong key
// leaves the node locked.
func (s *swarmNode) unlock(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == nil {
		return errNotInSwarm
	}
	if !s.locked {
		return errNotLocked
	}
	k, err := parseUnlockKey(key)
	if err != nil {
		return err
	}
	keys, _, err := s.files.loadDEK(k)
	if err != nil {
		return err
	}
	if s.id, err = s.files.loadIdentity(keys.all()...); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	s.unlockKey = k
	if err := s.startManager(false); err != nil {
		s.unlockKey = nil
		return fmt.Errorf("unlock: start manager: %w", err)
	}
	s.locked = false
	slog.Info("swarm unlocked", "node", s.state.NodeID)
	return s.startAgent()
}
