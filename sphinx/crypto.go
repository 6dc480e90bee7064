package sphinx

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
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

func deriveHopKeys(k *hopKeys, secret *[32]byte) {
	var okm [hopKeysLength]byte
	hkdfSHA256(okm[:], secret[:], hopKeysInfo)
	o := okm[:]
	o = o[copy(k.headerKey[:], o):]
	o = o[copy(k.headerIV[:], o):]
	o = o[copy(k.macKey[:], o):]
	o = o[copy(k.payloadKey[:], o):]
	o = o[copy(k.blinding[:], o):]
	copy(k.tag[:], o)
	clear(okm[:])
}

// hmacMaxMessage bounds the messages hmacSHA256 hashes on the stack; longer
// ones (headers of more than 16 hops) go through crypto/hmac.
const hmacMaxMessage = 1024

// hmacSHA256 returns HMAC-SHA256(key, a | b) for keys of at most 64 bytes,
// without allocating for messages up to hmacMaxMessage bytes.
func hmacSHA256(key, a, b []byte) [sha256.Size]byte {
	if len(a)+len(b) > hmacMaxMessage {
		// Copies keep the arguments from escaping on the fast path.
		h := hmac.New(sha256.New, bytes.Clone(key))
		h.Write(bytes.Clone(a))
		h.Write(bytes.Clone(b))
		var out [sha256.Size]byte
		copy(out[:], h.Sum(nil))
		return out
	}
	var buf [sha256.BlockSize + hmacMaxMessage]byte
	var pad [sha256.BlockSize]byte
	copy(pad[:], key)
	for i := range pad {
		buf[i] = pad[i] ^ 0x36
	}
	n := sha256.BlockSize + copy(buf[sha256.BlockSize:], a)
	n += copy(buf[n:], b)
	inner := sha256.Sum256(buf[:n])
	for i := range pad {
		buf[i] = pad[i] ^ 0x5c
	}
	copy(buf[sha256.BlockSize:], inner[:])
	out := sha256.Sum256(buf[:sha256.BlockSize+sha256.Size])
	clear(buf[:n])
	clear(pad[:])
	return out
}

// hkdfSHA256 fills out with HKDF-SHA256 (RFC 5869) of secret, with an
// empty salt and the given info (at most 64 bytes).
func hkdfSHA256(out, secret []byte, info string) {
	var zeroSalt [sha256.Size]byte
	prk := hmacSHA256(zeroSalt[:], secret, nil)
	var t [sha256.Size]byte
	var msg [sha256.Size + 64 + 1]byte
	prev := 0
	for ctr := byte(1); len(out) > 0; ctr++ {
		n := copy(msg[:], t[:prev])
		n += copy(msg[n:], info)
		msg[n] = ctr
		t = hmacSHA256(prk[:], msg[:n+1], nil)
		prev = sha256.Size
		out = out[copy(out, t[:]):]
	}
	clear(prk[:])
	clear(t[:])
	clear(msg[:])
}

// blindingScalar reduces the 64 derived bytes modulo the group order.
func (k *hopKeys) blindingScalar(s *edwards25519.Scalar) {
	if _, err := s.SetUniformBytes(k.blinding[:]); err != nil {
		panic(err) // 64 bytes: cannot happen
	}
}

func deriveSURBPayloadKey(out *[lionessKeyLength]byte, seed *[SURBKeyLength]byte) {
	hkdfSHA256(out[:], seed[:], surbPayloadInfo)
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
	sum := hmacSHA256(k.macKey[:], alpha, beta)
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
