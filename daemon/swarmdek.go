package daemon

import (
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
	// DEK is the data key in the clear (autolock off).
	DEK []byte `json:"dek,omitempty"`
	// Sealed is the data key sealed with the unlock key: nonce, ciphertext.
	Sealed []byte `json:"sealed_dek,omitempty"`
	// ClusterVersion is the version of the cluster object whose unlock key
	// (or its absence) this follows (manager.Config.SealedAt).
	ClusterVersion uint64 `json:"cluster_version,omitempty"`
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

// saveDEK writes dek, sealed with unlockKey unless it is nil, as of the
// cluster object at clusterVersion.
func (f swarmFiles) saveDEK(dek, unlockKey []byte, clusterVersion uint64) error {
	df := dekFile{ClusterVersion: clusterVersion}
	if len(unlockKey) == 0 {
		df.DEK = dek
	} else {
		a, err := kek(unlockKey)
		if err != nil {
			return err
		}
		nonce := make([]byte, a.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("raft data key: %w", err)
		}
		df.Sealed = a.Seal(nonce, nonce, dek, kekAD)
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

// loadDEK returns the data key and the cluster version its seal follows,
// opening it with unlockKey when it is sealed. A manager without one (new,
// or its state written before raft encryption) gets a new key, sealed with
// unlockKey when given; raftstore still reads the plaintext entries of an
// older state.
func (f swarmFiles) loadDEK(unlockKey []byte) ([]byte, uint64, error) {
	df, err := f.readDEK()
	if errors.Is(err, os.ErrNotExist) {
		dek := make([]byte, raftstore.DEKSize)
		if _, err := rand.Read(dek); err != nil {
			return nil, 0, fmt.Errorf("raft data key: %w", err)
		}
		if err := os.MkdirAll(f.dir, 0o700); err != nil {
			return nil, 0, fmt.Errorf("swarm state: %w", err)
		}
		return dek, 0, f.saveDEK(dek, unlockKey, 0)
	}
	if err != nil {
		return nil, 0, err
	}
	if len(df.Sealed) == 0 {
		if len(df.DEK) != raftstore.DEKSize {
			return nil, 0, fmt.Errorf("raft data key %s: %d bytes, want %d", f.dek(), len(df.DEK), raftstore.DEKSize)
		}
		return df.DEK, df.ClusterVersion, nil
	}
	if len(unlockKey) == 0 {
		return nil, 0, errSwarmLocked
	}
	a, err := kek(unlockKey)
	if err != nil {
		return nil, 0, err
	}
	ns := a.NonceSize()
	if len(df.Sealed) < ns {
		return nil, 0, fmt.Errorf("raft data key %s: sealed key too short", f.dek())
	}
	dek, err := a.Open(nil, df.Sealed[:ns], df.Sealed[ns:], kekAD)
	if err != nil {
		return nil, 0, errWrongUnlockKey
	}
	return dek, df.ClusterVersion, nil
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
	dek, _, err := s.files.loadDEK(k)
	if err != nil {
		return err
	}
	if s.id, err = s.files.loadIdentity(dek); err != nil {
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
