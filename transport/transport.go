// Package transport carries length-framed messages over a stream (TCP) inside a
// Noise channel whose responder is authenticated by the static key the directory
// publishes for it. It is the one secure channel of the project: clients use it to
// register with gateways (pattern NK: anonymous client, known gateway) and nodes use
// it between each other (pattern IK: the responder checks the initiator's key).
//
// On the wire every message, handshake or transport, is a 2-byte big-endian length
// followed by that many bytes. A transport message carries at most MaxPayload bytes
// of plaintext.
package transport

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

// MaxFrame is the largest frame on the wire, the Noise message limit.
const MaxFrame = 65535

// MaxPayload is the largest plaintext one transport message carries.
const MaxPayload = MaxFrame - 16

// DefaultHandshakeTimeout bounds a handshake when the context has no deadline.
const DefaultHandshakeTimeout = 10 * time.Second

var suite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashBLAKE2s)

// Errors a caller may test for with errors.Is.
var (
	ErrPeerNotAllowed = errors.New("transport: peer static key not allowed")
	ErrFrameTooLarge  = errors.New("transport: message larger than the frame limit")
	ErrHandshake      = errors.New("transport: handshake failed")
)

// Key is an X25519 key, public or private.
type Key [32]byte

// String returns the key in standard base64.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText encodes the key in standard base64 (JSON uses it).
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes a standard base64 key of exactly 32 bytes.
func (k *Key) UnmarshalText(b []byte) error {
	p, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ParseKey decodes a standard base64 key of exactly 32 bytes.
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return k, fmt.Errorf("transport: key is not base64: %w", err)
	}
	if len(b) != len(k) {
		return k, fmt.Errorf("transport: key is %d bytes, want %d", len(b), len(k))
	}
	copy(k[:], b)
	return k, nil
}

// IsZero reports whether k is all zero.
func (k Key) IsZero() bool { return k == Key{} }

// Public returns the public key of the private key k.
func (k Key) Public() Key {
	var pub Key
	p, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err != nil {
		// Only a low-order point input fails; the basepoint never does.
		panic(fmt.Sprintf("transport: X25519 basepoint: %v", err))
	}
	copy(pub[:], p)
	return pub
}

// GenerateKey returns a new random private key.
func GenerateKey() (Key, error) {
	var k Key
	if _, err := io.ReadFull(rand.Reader, k[:]); err != nil {
		return Key{}, fmt.Errorf("transport: generate key: %w", err)
	}
	return k, nil
}

// Pattern selects the Noise handshake pattern.
type Pattern int

const (
	// NK: the initiator is anonymous, the responder's static key is known to it.
	NK Pattern = iota
	// IK: the initiator knows the responder's static key and sends its own,
	// encrypted, in the first message; the responder checks it with AllowPeer.
	IK
)

// Config describes one side of a channel.
type Config struct {
	Pattern Pattern
	// Prologue names the protocol riding on the channel; both sides must agree,
	// so a message meant for one protocol can never be accepted by another.
	Prologue []byte
	// LocalStatic is this side's private static key: required for responders
	// and for IK initiators.
	LocalStatic Key
	// RemoteStatic is the responder's public key; initiators only.
	RemoteStatic Key
	// AllowPeer, required for an IK responder, decides whether an initiator's
	// static key is acceptable.
	AllowPeer func(Key) bool
}

func (c *Config) noiseConfig(initiator bool) (noise.Config, error) {
	nc := noise.Config{CipherSuite: suite, Random: rand.Reader, Initiator: initiator, Prologue: c.Prologue}
	switch c.Pattern {
	case NK:
		nc.Pattern = noise.HandshakeNK
	case IK:
		nc.Pattern = noise.HandshakeIK
	default:
		return nc, fmt.Errorf("transport: unknown pattern %d", c.Pattern)
	}
	needLocal := !initiator || c.Pattern == IK
	if needLocal {
		if c.LocalStatic.IsZero() {
			return nc, errors.New("transport: local static key required")
		}
		pub := c.LocalStatic.Public()
		nc.StaticKeypair = noise.DHKey{Private: append([]byte(nil), c.LocalStatic[:]...), Public: pub[:]}
	}
	if initiator {
		if c.RemoteStatic.IsZero() {
			return nc, errors.New("transport: responder's static key required")
		}
		nc.PeerStatic = append([]byte(nil), c.RemoteStatic[:]...)
	} else if c.Pattern == IK && c.AllowPeer == nil {
		return nc, errors.New("transport: IK responder needs AllowPeer")
	}
	return nc, nil
}

// Conn is an established channel. WriteMessage and ReadMessage may be used from
// one writer and one reader goroutine at the same time.
type Conn struct {
	raw        net.Conn
	r          *bufio.Reader
	wmu        sync.Mutex
	send, recv *noise.CipherState
	hash       []byte
	peer       Key
	rbuf       []byte
	wbuf       []byte
}

// Client runs the initiator's handshake on c. payload, if any, travels
// encrypted in the first message (NK: not forward secret, so keep secrets for
// transport messages). The context bounds the handshake only.
func Client(ctx context.Context, c net.Conn, cfg Config) (*Conn, error) {
	nc, err := cfg.noiseConfig(true)
	if err != nil {
		return nil, err
	}
	hs, err := noise.NewHandshakeState(nc)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	stop := deadline(ctx, c)
	defer stop()
	conn := newConn(c)
	msg, _, _, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("transport: write handshake: %w", err)
	}
	if err := conn.writeFrame(msg); err != nil {
		return nil, fmt.Errorf("transport: send handshake: %w", err)
	}
	reply, err := conn.readFrame()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// A responder that cannot decrypt our first message hangs up.
			return nil, fmt.Errorf("%w: the peer closed the connection during the handshake (does it hold the key the directory lists?)", ErrHandshake)
		}
		return nil, fmt.Errorf("transport: read handshake reply: %w", err)
	}
	_, cs1, cs2, err := hs.ReadMessage(nil, reply)
	if err != nil {
		return nil, fmt.Errorf("%w: responder did not prove its key (wrong gateway key?): %v", ErrHandshake, err)
	}
	if cs1 == nil || cs2 == nil {
		return nil, fmt.Errorf("%w: handshake incomplete", ErrHandshake)
	}
	conn.send, conn.recv = cs1, cs2
	conn.hash = hs.ChannelBinding()
	conn.peer = cfg.RemoteStatic
	return conn, nil
}

// Server runs the responder's handshake on c.
func Server(ctx context.Context, c net.Conn, cfg Config) (*Conn, error) {
	stop := deadline(ctx, c)
	defer stop()
	conn := newConn(c)
	first, err := conn.readFrame()
	if err != nil {
		return nil, fmt.Errorf("transport: read handshake: %w", err)
	}
	nc, err := cfg.noiseConfig(false)
	if err != nil {
		return nil, err
	}
	hs, err := noise.NewHandshakeState(nc)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	if _, _, _, err := hs.ReadMessage(nil, first); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	var peer Key
	if cfg.Pattern == IK {
		copy(peer[:], hs.PeerStatic())
		if !cfg.AllowPeer(peer) {
			return nil, fmt.Errorf("%w: %s", ErrPeerNotAllowed, peer)
		}
	}
	msg, cs1, cs2, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("transport: write handshake: %w", err)
	}
	if err := conn.writeFrame(msg); err != nil {
		return nil, fmt.Errorf("transport: send handshake reply: %w", err)
	}
	conn.send, conn.recv = cs2, cs1
	conn.hash = hs.ChannelBinding()
	conn.peer = peer
	return conn, nil
}

func newConn(c net.Conn) *Conn {
	return &Conn{raw: c, r: bufio.NewReaderSize(c, 16<<10), rbuf: make([]byte, MaxFrame)}
}

// deadline applies ctx's deadline (or the default) to c until the returned
// function is called, and closes c early if ctx is cancelled.
func deadline(ctx context.Context, c net.Conn) func() {
	d, ok := ctx.Deadline()
	if !ok {
		d = time.Now().Add(DefaultHandshakeTimeout)
	}
	_ = c.SetDeadline(d)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		_ = c.SetDeadline(time.Time{})
	}
}

func (c *Conn) writeFrame(b []byte) error {
	if len(b) > MaxFrame {
		return ErrFrameTooLarge
	}
	buf := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(buf, uint16(len(b)))
	copy(buf[2:], b)
	_, err := c.raw.Write(buf)
	return err
}

func (c *Conn) readFrame() ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c.r, c.rbuf[:n]); err != nil {
		return nil, fmt.Errorf("truncated frame: %w", err)
	}
	return c.rbuf[:n], nil
}

// WriteMessage encrypts p as one message and writes it.
func (c *Conn) WriteMessage(p []byte) error {
	if len(p) > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(p))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if cap(c.wbuf) < 2+len(p)+16 {
		c.wbuf = make([]byte, 2, 2+len(p)+16)
	}
	out, err := c.send.Encrypt(c.wbuf[:2], nil, p)
	if err != nil {
		return fmt.Errorf("transport: encrypt: %w", err)
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-2))
	if _, err := c.raw.Write(out); err != nil {
		return fmt.Errorf("transport: write: %w", err)
	}
	return nil
}

// ReadMessage reads and decrypts one message into buf (grown if needed) and
// returns the plaintext. A message that fails authentication is an error and
// the channel must be closed: Noise nonces make it unrecoverable.
func (c *Conn) ReadMessage(buf []byte) ([]byte, error) {
	frame, err := c.readFrame()
	if err != nil {
		return nil, err
	}
	out, err := c.recv.Decrypt(buf[:0], nil, frame)
	if err != nil {
		return nil, fmt.Errorf("transport: decrypt: %w", err)
	}
	return out, nil
}

// HandshakeHash returns the Noise handshake hash, unique to this channel; a
// protocol binds proofs to it so they cannot be replayed on another channel.
func (c *Conn) HandshakeHash() []byte { return c.hash }

// PeerStatic returns the peer's static public key (zero for an NK initiator
// seen from the responder).
func (c *Conn) PeerStatic() Key { return c.peer }

// RemoteAddr is the address of the underlying stream's peer.
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the underlying stream's deadline.
func (c *Conn) SetDeadline(t time.Time) error { return c.raw.SetDeadline(t) }

// SetReadDeadline sets the underlying stream's read deadline: an idle peer
// then fails ReadMessage.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the underlying stream's write deadline: a peer that
// stops reading then fails WriteMessage instead of blocking it for ever.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// Close closes the underlying stream.
func (c *Conn) Close() error { return c.raw.Close() }

// Equal compares two keys in constant time.
func Equal(a, b Key) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }
