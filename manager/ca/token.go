// Package ca is the cluster's certificate authority: the root CA that signs every
// node's certificate, and the join tokens that let a new node ask for one.
//
// A join token is SWMTKN-1-<digest>-<secret>, as in Docker Swarm. The digest is
// the SHA-256 of the root CA certificate (DER), in base 36, so a joining node can
// pin the CA it is shown by the first manager it reaches without trusting the
// network. The secret decides the role: managers and workers have different
// secrets, each rotated on its own.
package ca

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

const (
	tokenPrefix  = "SWMTKN"
	tokenVersion = "1"
	// digestLen and secretLen are the base-36 lengths of a SHA-256 digest and a
	// 128-bit secret, zero-padded, as Swarm writes them.
	digestLen = 50
	secretLen = 25
)

// ErrInvalidToken is returned for a token that is malformed or does not match.
var ErrInvalidToken = errors.New("invalid join token")

// Token is a parsed join token.
type Token struct {
	// Digest is the SHA-256 of the root CA certificate's DER bytes.
	Digest [sha256.Size]byte
	// Secret is the 128-bit secret that grants a role.
	Secret [16]byte
}

// String renders the token as SWMTKN-1-<digest>-<secret>.
func (t Token) String() string {
	return fmt.Sprintf("%s-%s-%s-%s", tokenPrefix, tokenVersion,
		base36(t.Digest[:], digestLen), base36(t.Secret[:], secretLen))
}

// NewToken makes a token for the CA certificate caDER with a fresh random secret.
func NewToken(caDER []byte) (Token, error) {
	t := Token{Digest: sha256.Sum256(caDER)}
	if _, err := rand.Read(t.Secret[:]); err != nil {
		return Token{}, fmt.Errorf("new join token: %w", err)
	}
	return t, nil
}

// ParseToken parses a join token; it checks the form only.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 4 || parts[0] != tokenPrefix {
		return Token{}, fmt.Errorf("%w: want SWMTKN-1-<digest>-<secret>", ErrInvalidToken)
	}
	if parts[1] != tokenVersion {
		return Token{}, fmt.Errorf("%w: unsupported version %q", ErrInvalidToken, parts[1])
	}
	var t Token
	if err := unbase36(parts[2], digestLen, t.Digest[:]); err != nil {
		return Token{}, fmt.Errorf("%w: CA digest: %v", ErrInvalidToken, err)
	}
	if err := unbase36(parts[3], secretLen, t.Secret[:]); err != nil {
		return Token{}, fmt.Errorf("%w: secret: %v", ErrInvalidToken, err)
	}
	return t, nil
}

// MatchesCA reports whether the token pins the CA certificate caDER.
func (t Token) MatchesCA(caDER []byte) bool {
	d := sha256.Sum256(caDER)
	return subtle.ConstantTimeCompare(d[:], t.Digest[:]) == 1
}

// SameSecret compares two tokens' secrets in constant time.
func (t Token) SameSecret(o Token) bool {
	return subtle.ConstantTimeCompare(t.Secret[:], o.Secret[:]) == 1
}

func base36(b []byte, width int) string {
	s := new(big.Int).SetBytes(b).Text(36)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

func unbase36(s string, width int, out []byte) error {
	if len(s) != width {
		return fmt.Errorf("%d characters, want %d", len(s), width)
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return fmt.Errorf("character %q is not base 36", c)
		}
	}
	n, ok := new(big.Int).SetString(s, 36)
	if !ok {
		return errors.New("not base 36")
	}
	if n.BitLen() > len(out)*8 {
		return fmt.Errorf("value exceeds %d bits", len(out)*8)
	}
	n.FillBytes(out)
	return nil
}
