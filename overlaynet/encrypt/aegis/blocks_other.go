//go:build !amd64

package aegis

func absorbBlocks(s *state, src []byte)       { absorbBlocksGeneric(s, src) }
func encryptBlocks(s *state, dst, src []byte) { encryptBlocksGeneric(s, dst, src) }
func decryptBlocks(s *state, dst, src []byte) { decryptBlocksGeneric(s, dst, src) }
