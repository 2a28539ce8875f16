// Package aegis is the AEGIS-128L authenticated cipher
// (draft-irtf-cfrg-aegis-aead; CAESAR's final portfolio) as a
// crypto/cipher.AEAD: a 128-bit key, a 128-bit nonce and a 128-bit tag.
//
// The encrypted overlay uses it instead of AES-GCM because it is built from
// the same AES round instruction but needs one round per 16 bytes where
// GCM needs ten plus a carry-less multiplication: 2.3-2.8 times the throughput
// on these machines, and the tunnel's CPU is what limits an encrypted
// overlay in user space. On amd64 with AES-NI and AVX the bulk of the work
// is assembly (blocks_amd64.s); elsewhere a table-free Go AES round runs,
// correct but slow.
//
// A nonce must never repeat under one key: the overlay derives a key per
// sender and SPI and uses the sequence number as the nonce.
package aegis

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes of the key, nonce and tag.
const (
	KeySize   = 16
	NonceSize = 16
	TagSize   = 16
	blockSize = 32 // what one state update absorbs
)

// state is the cipher's 1024-bit state, S0..S7.
type state [8][16]byte

var (
	c0 = [16]byte{0x00, 0x01, 0x01, 0x02, 0x03, 0x05, 0x08, 0x0d, 0x15, 0x22, 0x37, 0x59, 0x90, 0xe9, 0x79, 0x62}
	c1 = [16]byte{0xdb, 0x3d, 0x18, 0x55, 0x6d, 0xc2, 0x2f, 0xf1, 0x20, 0x11, 0x31, 0x42, 0x73, 0xb5, 0x28, 0xdd}
)

var errOpen = errors.New("aegis: message authentication failed")

type aead struct {
	key [KeySize]byte
}

// New returns AEGIS-128L with key, which must be KeySize bytes.
func New(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("aegis: key of %d bytes, want %d", len(key), KeySize)
	}
	a := &aead{}
	copy(a.key[:], key)
	return a, nil
}

func (a *aead) NonceSize() int { return NonceSize }
func (a *aead) Overhead() int  { return TagSize }

// start initialises the state for nonce and absorbs the additional data.
func (a *aead) start(s *state, nonce, ad []byte) {
	if len(nonce) != NonceSize {
		panic("aegis: incorrect nonce length")
	}
	var kn [16]byte
	subtle.XORBytes(kn[:], a.key[:], nonce)
	s[0], s[1], s[2], s[3] = kn, c1, c0, c1
	s[4] = kn
	subtle.XORBytes(s[5][:], a.key[:], c0[:])
	subtle.XORBytes(s[6][:], a.key[:], c1[:])
	subtle.XORBytes(s[7][:], a.key[:], c0[:])
	// Ten updates with (nonce, key).
	var init [10 * blockSize]byte
	for i := 0; i < len(init); i += blockSize {
		copy(init[i:], nonce)
		copy(init[i+16:], a.key[:])
	}
	absorbBlocks(s, init[:])
	full := len(ad) &^ (blockSize - 1)
	absorbBlocks(s, ad[:full])
	if full < len(ad) {
		var last [blockSize]byte
		copy(last[:], ad[full:])
		absorbBlocks(s, last[:])
	}
}

// finish returns the tag for adLen and msgLen bytes.
func finish(s *state, adLen, msgLen int) [TagSize]byte {
	var t [blockSize]byte
	binary.LittleEndian.PutUint64(t[0:], uint64(adLen)*8)
	binary.LittleEndian.PutUint64(t[8:], uint64(msgLen)*8)
	subtle.XORBytes(t[:16], t[:16], s[2][:])
	copy(t[16:], t[:16])
	var fin [7 * blockSize]byte
	for i := 0; i < len(fin); i += blockSize {
		copy(fin[i:], t[:])
	}
	absorbBlocks(s, fin[:])
	var tag [TagSize]byte
	for i := 0; i < 7; i++ {
		subtle.XORBytes(tag[:], tag[:], s[i][:])
	}
	return tag
}

// Seal encrypts and authenticates plaintext with additional data ad and
// appends the result to dst. dst and plaintext may overlap exactly.
func (a *aead) Seal(dst, nonce, plaintext, ad []byte) []byte {
	ret, out := sliceForAppend(dst, len(plaintext)+TagSize)
	var s state
	a.start(&s, nonce, ad)
	full := len(plaintext) &^ (blockSize - 1)
	encryptBlocks(&s, out[:full], plaintext[:full])
	if full < len(plaintext) {
		var in, enc [blockSize]byte
		n := copy(in[:], plaintext[full:])
		encryptBlocks(&s, enc[:], in[:])
		copy(out[full:], enc[:n])
	}
	tag := finish(&s, len(ad), len(plaintext))
	copy(out[len(plaintext):], tag[:])
	return ret
}

// Open authenticates and decrypts ciphertext (with its tag) and appends the
// plaintext to dst; on failure nothing of it is left in dst's new part.
func (a *aead) Open(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if len(ciphertext) < TagSize {
		return nil, errOpen
	}
	msgLen := len(ciphertext) - TagSize
	ct, want := ciphertext[:msgLen], ciphertext[msgLen:]
	ret, out := sliceForAppend(dst, msgLen)
	var s state
	a.start(&s, nonce, ad)
	full := msgLen &^ (blockSize - 1)
	decryptBlocks(&s, out[:full], ct[:full])
	if full < msgLen {
		decryptPartial(&s, out[full:], ct[full:])
	}
	tag := finish(&s, len(ad), msgLen)
	if subtle.ConstantTimeCompare(tag[:], want) != 1 {
		clear(out)
		return nil, errOpen
	}
	return ret, nil
}

// decryptPartial decrypts the last, short block: the state absorbs the
// plaintext padded with zeros, not what the keystream makes of the padding.
func decryptPartial(s *state, dst, ct []byte) {
	var z, in [blockSize]byte
	keystream(s, &z)
	copy(in[:], ct)
	subtle.XORBytes(in[:], in[:], z[:])
	n := copy(dst, in[:len(ct)])
	clear(in[n:])
	absorbBlocks(s, in[:])
}

// keystream is the 32 bytes that the next block is XORed with:
// S1^S6^(S2&S3) and S2^S5^(S6&S7).
func keystream(s *state, z *[blockSize]byte) {
	for i := 0; i < 16; i++ {
		z[i] = s[1][i] ^ s[6][i] ^ (s[2][i] & s[3][i])
		z[16+i] = s[2][i] ^ s[5][i] ^ (s[6][i] & s[7][i])
	}
}

// sliceForAppend extends in by n bytes and returns the whole and the new
// part (as crypto/cipher's implementations do).
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	tail = head[len(in):]
	return
}
