package sphinx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/chacha20"
)

const (
	hopKeysInfo     = "nymvpn sphinx v1 hop keys"
	surbPayloadInfo = "nymvpn sphinx v1 surb payload key"
	hopKeysLength   = 16 + 16 + 32 + lionessKeyLength + 64 + ReplayTagLength // 288
)

// hopKeys is everything one hop derives from its shared secret.
type hopKeys struct {
	headerKey  [16]byte
	headerIV   [16]byte
	macKey     [32]byte
	payloadKey [lionessKeyLength]byte
	blinding   [64]byte
	tag        ReplayTag
}

func deriveHopKeys(k *hopKeys, secret *[32]byte) error {
	okm, err := hkdf.Key(sha256.New, secret[:], nil, hopKeysInfo, hopKeysLength)
	if err != nil {
		return fmt.Errorf("sphinx: derive hop keys: %w", err)
	}
	o := okm
	o = o[copy(k.headerKey[:], o):]
	o = o[copy(k.headerIV[:], o):]
	o = o[copy(k.macKey[:], o):]
	o = o[copy(k.payloadKey[:], o):]
	o = o[copy(k.blinding[:], o):]
	copy(k.tag[:], o)
	clear(okm)
	return nil
}

// blindingScalar reduces the 64 derived bytes modulo the group order.
func (k *hopKeys) blindingScalar() (*edwards25519.Scalar, error) {
	s, err := new(edwards25519.Scalar).SetUniformBytes(k.blinding[:])
	if err != nil {
		return nil, fmt.Errorf("sphinx: blinding factor: %w", err)
	}
	return s, nil
}

func deriveSURBPayloadKey(out *[lionessKeyLength]byte, seed *[SURBKeyLength]byte) error {
	okm, err := hkdf.Key(sha256.New, seed[:], nil, surbPayloadInfo, lionessKeyLength)
	if err != nil {
		return fmt.Errorf("sphinx: derive SURB payload key: %w", err)
	}
	copy(out[:], okm)
	clear(okm)
	return nil
}

// headerStream is AES-128-CTR keyed for one hop.
func (k *hopKeys) headerStream() cipher.Stream {
	block, err := aes.NewCipher(k.headerKey[:])
	if err != nil {
		panic(err) // 16-byte key: cannot happen
	}
	return cipher.NewCTR(block, k.headerIV[:])
}

// headerMAC computes gamma over alpha and beta.
func (k *hopKeys) headerMAC(out *[MACLength]byte, alpha, beta []byte) {
	h := hmac.New(sha256.New, k.macKey[:])
	h.Write(alpha)
	h.Write(beta)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	copy(out[:], sum[:MACLength])
}

func (k *hopKeys) checkMAC(alpha, beta, gamma []byte) bool {
	var want [MACLength]byte
	k.headerMAC(&want, alpha, beta)
	return subtle.ConstantTimeCompare(want[:], gamma) == 1
}

// LIONESS (Anderson and Biham) over ChaCha20 and keyed BLAKE2b-256. The
// block is split into L (32 bytes) and R (the rest, at least one byte); the
// 128-byte key is K1|K2|K3|K4.
//
//	encrypt: R ^= S(L^K1); L ^= H_K2(R); R ^= S(L^K3); L ^= H_K4(R)
//	decrypt: the same four rounds in reverse order.
const lionessHalf = 32

var zeroNonce [chacha20.NonceSize]byte

func lionessStream(key *[lionessKeyLength]byte, off int, l, r []byte) {
	var k [chacha20.KeySize]byte
	subtle.XORBytes(k[:], l, key[off:off+32])
	c, err := chacha20.NewUnauthenticatedCipher(k[:], zeroNonce[:])
	if err != nil {
		panic(err) // fixed sizes: cannot happen
	}
	c.XORKeyStream(r, r)
	clear(k[:])
}

func lionessHash(key *[lionessKeyLength]byte, off int, l, r []byte) {
	h, err := blake2b.New256(key[off : off+32])
	if err != nil {
		panic(err) // fixed sizes: cannot happen
	}
	h.Write(r)
	var sum [blake2b.Size256]byte
	h.Sum(sum[:0])
	subtle.XORBytes(l, l, sum[:])
}

func lionessEncrypt(key *[lionessKeyLength]byte, block []byte) {
	l, r := block[:lionessHalf], block[lionessHalf:]
	lionessStream(key, 0, l, r)
	lionessHash(key, 32, l, r)
	lionessStream(key, 64, l, r)
	lionessHash(key, 96, l, r)
}

func lionessDecrypt(key *[lionessKeyLength]byte, block []byte) {
	l, r := block[:lionessHalf], block[lionessHalf:]
	lionessHash(key, 96, l, r)
	lionessStream(key, 64, l, r)
	lionessHash(key, 32, l, r)
	lionessStream(key, 0, l, r)
}

// padPayload writes 16 zero bytes, the message, 0x01 and zero padding.
func padPayload(dst, msg []byte) {
	clear(dst[:PayloadTagLength])
	n := copy(dst[PayloadTagLength:], msg)
	rest := dst[PayloadTagLength+n:]
	rest[0] = 0x01
	clear(rest[1:])
}

// unpadPayload checks the zero tag and padding and returns the message.
func unpadPayload(p []byte) ([]byte, error) {
	var acc byte
	for _, v := range p[:PayloadTagLength] {
		acc |= v
	}
	if acc != 0 {
		return nil, fmt.Errorf("%w: zero tag mismatch", ErrPayloadIntegrity)
	}
	body := p[PayloadTagLength:]
	i := len(body) - 1
	for i >= 0 && body[i] == 0 {
		i--
	}
	if i < 0 || body[i] != 0x01 {
		return nil, fmt.Errorf("%w: missing padding marker", ErrPayloadIntegrity)
	}
	return body[:i], nil
}
