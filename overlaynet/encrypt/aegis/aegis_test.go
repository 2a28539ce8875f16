package aegis

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The vectors of draft-irtf-cfrg-aegis-aead-16, appendix A.
func TestAESRound(t *testing.T) {
	got := aesRound([16]byte(unhex(t, "000102030405060708090a0b0c0d0e0f")), [16]byte(unhex(t, "101112131415161718191a1b1c1d1e1f")))
	if want := unhex(t, "7a7b4e5638782546a8c0477a3b813f43"); !bytes.Equal(got[:], want) {
		t.Fatalf("AESRound = %x, want %x", got, want)
	}
}

func TestUpdate(t *testing.T) {
	before := []string{"9b7e60b24cc873ea894ecc07911049a3", "330be08f35300faa2ebf9a7b0d274658", "7bbd5bd2b049f7b9b515cf26fbe7756c", "c35a00f55ea86c3886ec5e928f87db18",
		"9ebccafce87cab446396c4334592c91f", "58d83e31f256371e60fc6bb257114601", "1639b56ea322c88568a176585bc915de", "640818ffb57dc0fbc2e72ae93457e39a"}
	after := []string{"596ab773e4433ca0127c73f60536769d", "790394041a3d26ab697bde865014652d", "38cf49e4b65248acd533041b64dd0611", "16d8e58748f437bfff1797f780337cee",
		"69761320f7dd738b281cc9f335ac2f5a", "a21746bb193a569e331e1aa985d0d729", "09d714e6fcf9177a8ed1cde7e3d259a6", "61279ba73167f0ab76f0a11bf203bdff"}
	m := unhex(t, "033e6975b94816879e42917650955aa0"+"033e6975b94816879e42917650955aa0")
	for name, b := range backends() {
		var s state
		for i := range s {
			s[i] = [16]byte(unhex(t, before[i]))
		}
		b.absorb(&s, m)
		for i := range s {
			if got := hex.EncodeToString(s[i][:]); got != after[i] {
				t.Errorf("%s: S%d = %s, want %s", name, i, got, after[i])
			}
		}
	}
}

type backend struct {
	absorb           func(*state, []byte)
	encrypt, decrypt func(*state, []byte, []byte)
}

// backends are the implementations this machine can run.
func backends() map[string]backend {
	b := map[string]backend{"generic": {absorbBlocksGeneric, encryptBlocksGeneric, decryptBlocksGeneric}}
	b["dispatched"] = backend{absorbBlocks, encryptBlocks, decryptBlocks}
	return b
}

func TestVectors(t *testing.T) {
	key := unhex(t, "10010000000000000000000000000000")
	nonce := unhex(t, "10000200000000000000000000000000")
	for i, v := range []struct{ ad, msg, ct, tag string }{
		{"", "00000000000000000000000000000000", "c1c0e58bd913006feba00f4b3cc3594e", "abe0ece80c24868a226a35d16bdae37a"},
		{"", "", "", "c2b879a67def9d74e6c14f708bbcc9b4"},
		{"0001020304050607", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
			"79d94593d8c2119d7e8fd9b8fc77845c5c077a05b2528b6ac54b563aed8efe84", "cc6f3372f6aa1bb82388d695c3962d9a"},
		{"0001020304050607", "000102030405060708090a0b0c0d", "79d94593d8c2119d7e8fd9b8fc77", "5c04b3dba849b2701effbe32c7f0fab7"},
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829",
			"101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
			"b31052ad1cca4e291abcf2df3502e6bdb1bfd6db36798be3607b1f94d34478aa7ede7f7a990fec10", "7542a745733014f9474417b337399507"},
	} {
		a, _ := New(key)
		ad, msg := unhex(t, v.ad), unhex(t, v.msg)
		sealed := a.Seal(nil, nonce, msg, ad)
		if want := v.ct + v.tag; hex.EncodeToString(sealed) != want {
			t.Errorf("vector %d: sealed %x, want %s", i+1, sealed, want)
		}
		opened, err := a.Open(nil, nonce, sealed, ad)
		if err != nil || !bytes.Equal(opened, msg) {
			t.Errorf("vector %d: opened %x, %v", i+1, opened, err)
		}
	}
	// Vectors 6-9: a wrong key, ciphertext, additional data or tag.
	for i, v := range []struct{ key, nonce, ad, ct string }{
		{"10000200000000000000000000000000", "10010000000000000000000000000000", "0001020304050607", "79d94593d8c2119d7e8fd9b8fc77" + "5c04b3dba849b2701effbe32c7f0fab7"},
		{"10010000000000000000000000000000", "10000200000000000000000000000000", "0001020304050607", "79d94593d8c2119d7e8fd9b8fc78" + "5c04b3dba849b2701effbe32c7f0fab7"},
		{"10010000000000000000000000000000", "10000200000000000000000000000000", "0001020304050608", "79d94593d8c2119d7e8fd9b8fc77" + "5c04b3dba849b2701effbe32c7f0fab7"},
		{"10010000000000000000000000000000", "10000200000000000000000000000000", "0001020304050607", "79d94593d8c2119d7e8fd9b8fc77" + "6c04b3dba849b2701effbe32c7f0fab8"},
	} {
		a, _ := New(unhex(t, v.key))
		dst := make([]byte, 0, 64)
		if out, err := a.Open(dst, unhex(t, v.nonce), unhex(t, v.ct), unhex(t, v.ad)); err == nil {
			t.Errorf("vector %d: opened %x, want verification failed", i+6, out)
		}
		if !bytes.Equal(dst[:cap(dst)], make([]byte, 64)) {
			t.Errorf("vector %d: plaintext left in dst after a failed open", i+6)
		}
	}
}

// TestBackendsAgree: the assembly and the Go rounds give the same state,
// ciphertext and plaintext for every length, in place and not.
func TestBackendsAgree(t *testing.T) {
	bs := backends()
	src := make([]byte, 4096)
	rand.Read(src)
	var s0 state
	for i := range s0 {
		rand.Read(s0[i][:])
	}
	for n := 0; n <= len(src); n += 32 * (1 + n/256) {
		outs := map[string][]byte{}
		states := map[string]state{}
		for name, b := range bs {
			s := s0
			ct := make([]byte, n)
			b.encrypt(&s, ct, src[:n])
			inplace := bytes.Clone(src[:n])
			s2 := s0
			b.encrypt(&s2, inplace, inplace)
			if !bytes.Equal(inplace, ct) || s2 != s {
				t.Fatalf("%s, %d bytes: in-place encryption differs", name, n)
			}
			s3 := s0
			pt := make([]byte, n)
			b.decrypt(&s3, pt, ct)
			if !bytes.Equal(pt, src[:n]) || s3 != s {
				t.Fatalf("%s, %d bytes: decryption does not give the plaintext and the state back", name, n)
			}
			outs[name], states[name] = ct, s
		}
		if !bytes.Equal(outs["generic"], outs["dispatched"]) || states["generic"] != states["dispatched"] {
			t.Fatalf("%d bytes: assembly and Go differ", n)
		}
	}
}

func TestSealOpenLengths(t *testing.T) {
	key := make([]byte, KeySize)
	rand.Read(key)
	a, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, NonceSize)
	ad := []byte("spi and sequence")
	for n := 0; n < 200; n++ {
		msg := make([]byte, n)
		rand.Read(msg)
		buf := append(bytes.Clone(msg), make([]byte, TagSize)...)
		sealed := a.Seal(buf[:0], nonce, buf[:n], ad) // in place, as the tunnel does
		opened, err := a.Open(sealed[:0], nonce, sealed, ad)
		if err != nil || !bytes.Equal(opened, msg) {
			t.Fatalf("%d bytes: %v", n, err)
		}
		for _, i := range []int{0, n / 2, n + TagSize - 1} {
			sealed = a.Seal(nil, nonce, msg, ad)
			sealed[i] ^= 1
			if _, err := a.Open(nil, nonce, sealed, ad); err == nil {
				t.Fatalf("%d bytes: a flipped bit at %d was accepted", n, i)
			}
		}
	}
	if _, err := New(key[:15]); err == nil {
		t.Fatal("a 15-byte key was accepted")
	}
}

func BenchmarkSeal64K(b *testing.B) {
	a, _ := New(make([]byte, KeySize))
	buf := make([]byte, 65536+TagSize)
	nonce := make([]byte, NonceSize)
	b.SetBytes(65536)
	for b.Loop() {
		a.Seal(buf[:0], nonce, buf[:65536], nil)
	}
}

func BenchmarkOpen64K(b *testing.B) {
	a, _ := New(make([]byte, KeySize))
	nonce := make([]byte, NonceSize)
	ct := a.Seal(nil, nonce, make([]byte, 65536), nil)
	buf := make([]byte, 65536)
	b.SetBytes(65536)
	for b.Loop() {
		if _, err := a.Open(buf[:0], nonce, ct, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealGCM64K is the standard library's AES-128-GCM on the same
// packet, the anchor of the package comment's speed claim.
func BenchmarkSealGCM64K(b *testing.B) {
	block, _ := aes.NewCipher(make([]byte, 16))
	g, _ := cipher.NewGCM(block)
	buf := make([]byte, 65536+TagSize)
	nonce := make([]byte, g.NonceSize())
	b.SetBytes(65536)
	for b.Loop() {
		g.Seal(buf[:0], nonce, buf[:65536], nil)
	}
}
