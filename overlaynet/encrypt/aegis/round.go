package aegis

import "crypto/subtle"

// The portable state update: an AES round (SubBytes, ShiftRows,
// MixColumns, AddRoundKey) in Go, byte by byte. The S-box is computed, not
// typed in: the multiplicative inverse in GF(2^8) and the affine map.

var sbox = func() (s [256]byte) {
	for x := 0; x < 256; x++ {
		inv := byte(0)
		if x != 0 {
			// x^254 is x's inverse in GF(2^8).
			r, b := byte(1), byte(x)
			for e := 254; e > 0; e >>= 1 {
				if e&1 == 1 {
					r = gmul(r, b)
				}
				b = gmul(b, b)
			}
			inv = r
		}
		rot := func(v byte, n uint) byte { return v<<n | v>>(8-n) }
		s[x] = inv ^ rot(inv, 1) ^ rot(inv, 2) ^ rot(inv, 3) ^ rot(inv, 4) ^ 0x63
	}
	return
}()

// gmul multiplies in GF(2^8) modulo x^8+x^4+x^3+x+1.
func gmul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 == 1 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

func xtime(b byte) byte { return b<<1 ^ (b>>7)*0x1b }

// aesRound returns one AES encryption round of in with round key rk.
func aesRound(in, rk [16]byte) [16]byte {
	var t, out [16]byte
	for c := 0; c < 4; c++ { // SubBytes and ShiftRows; byte r+4c is row r, column c
		for r := 0; r < 4; r++ {
			t[r+4*c] = sbox[in[r+4*((c+r)%4)]]
		}
	}
	for c := 0; c < 4; c++ { // MixColumns
		a0, a1, a2, a3 := t[4*c], t[4*c+1], t[4*c+2], t[4*c+3]
		all := a0 ^ a1 ^ a2 ^ a3
		out[4*c] = a0 ^ all ^ xtime(a0^a1)
		out[4*c+1] = a1 ^ all ^ xtime(a1^a2)
		out[4*c+2] = a2 ^ all ^ xtime(a2^a3)
		out[4*c+3] = a3 ^ all ^ xtime(a3^a0)
	}
	subtle.XORBytes(out[:], out[:], rk[:])
	return out
}

// update is the state update with message blocks m0 and m1.
func update(s *state, m0, m1 []byte) {
	var k0, k4 [16]byte
	subtle.XORBytes(k0[:], s[0][:], m0)
	subtle.XORBytes(k4[:], s[4][:], m1)
	s7 := s[7]
	s[7] = aesRound(s[6], s[7])
	s[6] = aesRound(s[5], s[6])
	s[5] = aesRound(s[4], s[5])
	s[4] = aesRound(s[3], k4)
	s[3] = aesRound(s[2], s[3])
	s[2] = aesRound(s[1], s[2])
	s[1] = aesRound(s[0], s[1])
	s[0] = aesRound(s7, k0)
}

func absorbBlocksGeneric(s *state, src []byte) {
	for ; len(src) >= blockSize; src = src[blockSize:] {
		update(s, src[:16], src[16:32])
	}
}

func encryptBlocksGeneric(s *state, dst, src []byte) {
	var z, in [blockSize]byte
	for ; len(src) >= blockSize; src, dst = src[blockSize:], dst[blockSize:] {
		keystream(s, &z)
		copy(in[:], src[:blockSize]) // dst may be src
		subtle.XORBytes(dst[:blockSize], in[:], z[:])
		update(s, in[:16], in[16:])
	}
}

func decryptBlocksGeneric(s *state, dst, src []byte) {
	var z [blockSize]byte
	for ; len(src) >= blockSize; src, dst = src[blockSize:], dst[blockSize:] {
		keystream(s, &z)
		subtle.XORBytes(dst[:blockSize], src[:blockSize], z[:])
		update(s, dst[:16], dst[16:32])
	}
}
