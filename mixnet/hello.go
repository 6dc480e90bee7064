package mixnet

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"

	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
	"golang.org/x/crypto/curve25519"
)

const helloLabel = "nymvpn mixnet hello v1"

// Recipient is the recipient id of a client: its X25519 public key. A
// gateway delivers packets for it only to a connection that proved the
// matching private key (see HelloProof).
func Recipient(clientKey transport.Key) sphinx.Recipient {
	return sphinx.Recipient(clientKey.Public())
}

// HelloProof proves to the gateway that the client holds the private key of
// its recipient id, bound to this channel: HMAC-SHA256(X25519(client key,
// gateway Noise key), label ‖ handshake hash ‖ recipient). A recorded hello
// replayed on another channel fails (another handshake hash), and only the
// key holder and the gateway can compute it.
func HelloProof(clientKey, gatewayNoisePublic transport.Key, handshakeHash []byte) ([ProofLength]byte, error) {
	shared, err := curve25519.X25519(clientKey[:], gatewayNoisePublic[:])
	if err != nil {
		return [ProofLength]byte{}, fmt.Errorf("mixnet: hello proof: %w", err)
	}
	return helloMAC(shared, handshakeHash, Recipient(clientKey)), nil
}

// VerifyHello checks a client's hello proof with the gateway's private Noise
// key.
func VerifyHello(gatewayNoise transport.Key, recipient sphinx.Recipient, handshakeHash []byte, proof [ProofLength]byte) bool {
	shared, err := curve25519.X25519(gatewayNoise[:], recipient[:])
	if err != nil {
		return false
	}
	want := helloMAC(shared, handshakeHash, recipient)
	return hmac.Equal(want[:], proof[:])
}

func helloMAC(shared, hash []byte, r sphinx.Recipient) [ProofLength]byte {
	m := hmac.New(sha256.New, shared)
	m.Write([]byte(helloLabel))
	m.Write(hash)
	m.Write(r[:])
	var out [ProofLength]byte
	copy(out[:], m.Sum(nil))
	return out
}
