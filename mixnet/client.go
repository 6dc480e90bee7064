package mixnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// Client defaults.
const (
	DefaultClientQueue = 4096
	// WriteTimeout bounds one write on a mixnet channel: a peer that stops
	// reading fails the write instead of blocking the writer for ever.
	WriteTimeout = 10 * time.Second
	// DialTimeout bounds dialling and the Noise handshake when the context
	// has no deadline.
	DialTimeout = 10 * time.Second
)

// ErrRefused: the gateway answered the hello with an Error record.
var ErrRefused = errors.New("mixnet: gateway refused the client")

// ClientConfig configures a connection to an entry gateway.
type ClientConfig struct {
	// Gateway is the entry gateway from the directory: its MixClientAddr and
	// NoiseKey are used.
	Gateway directory.Node
	// Key is the client's X25519 private key; its public key is the client's
	// recipient id. Zero generates one.
	Key transport.Key
	// Queue bounds deliveries not yet read from Deliveries (default
	// DefaultClientQueue); more are dropped and counted (Dropped).
	Queue int
	// Dial opens the TCP connection; default a net.Dialer.
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Client is a connection to an entry gateway: it sends Sphinx packets into
// the mixnet and receives the packets whose last hop was that gateway and
// whose recipient is this client (loop packets, SURB replies).
type Client struct {
	conn       *transport.Conn
	key        transport.Key
	gateway    string
	deliveries chan Delivery
	dropped    atomic.Uint64
	log        *slog.Logger

	wmu  sync.Mutex
	wbuf []byte

	closeOnce sync.Once
	errMu     sync.Mutex
	err       error
}

// Dial connects to cfg.Gateway, proves the client's recipient key and
// returns once the gateway welcomed it.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	gw := &cfg.Gateway
	if gw.MixClientAddr == "" || gw.NoiseKey.IsZero() {
		return nil, fmt.Errorf("mixnet: gateway %s takes no mixnet clients (no mix_client_addr)", gw.ID)
	}
	if cfg.Key.IsZero() {
		k, err := transport.GenerateKey()
		if err != nil {
			return nil, err
		}
		cfg.Key = k
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultClientQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: DialTimeout}
		cfg.Dial = d.DialContext
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DialTimeout)
		defer cancel()
	}
	raw, err := cfg.Dial(ctx, "tcp", gw.MixClientAddr)
	if err != nil {
		return nil, fmt.Errorf("mixnet: connect to gateway %s at %s: %w", gw.ID, gw.MixClientAddr, err)
	}
	gwKey := transport.Key(gw.NoiseKey)
	tc, err := transport.Client(ctx, raw, transport.Config{Pattern: transport.NK, Prologue: []byte(ClientPrologue), RemoteStatic: gwKey})
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("mixnet: gateway %s: %w", gw.ID, err)
	}
	c := &Client{conn: tc, key: cfg.Key, gateway: gw.ID, deliveries: make(chan Delivery, cfg.Queue), log: cfg.Logger}
	if err := c.hello(ctx, gwKey); err != nil {
		tc.Close()
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

func (c *Client) hello(ctx context.Context, gwKey transport.Key) error {
	proof, err := HelloProof(c.key, gwKey, c.conn.HandshakeHash())
	if err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
		defer c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.conn.WriteMessage(AppendHello(nil, c.Recipient(), proof)); err != nil {
		return fmt.Errorf("mixnet: hello to gateway %s: %w", c.gateway, err)
	}
	msg, err := c.conn.ReadMessage(nil)
	if err != nil {
		return fmt.Errorf("mixnet: waiting for gateway %s to welcome us: %w", c.gateway, err)
	}
	k, body, _, err := NextRecord(msg)
	if err != nil {
		return fmt.Errorf("mixnet: gateway %s: %w", c.gateway, err)
	}
	switch k {
	case KindWelcome:
		return nil
	case KindError:
		return fmt.Errorf("%w: gateway %s: %s", ErrRefused, c.gateway, truncate(string(body), MaxErrorText))
	}
	return fmt.Errorf("mixnet: gateway %s answered the hello with a %s record", c.gateway, k)
}

// Recipient is this client's recipient id: the last hop of a packet for it
// is its gateway, with this id in the final routing command.
func (c *Client) Recipient() sphinx.Recipient { return Recipient(c.key) }

// Gateway is the id of the gateway this client is connected to.
func (c *Client) Gateway() string { return c.gateway }

// Send sends one Sphinx packet, built for epoch's keys, to its first hop
// (a mix node) through the gateway.
func (c *Client) Send(first sphinx.NodeID, epoch uint64, pkt []byte) error {
	if !PacketLengthOK(len(pkt)) {
		return fmt.Errorf("mixnet: send: %d-byte packet is of no known geometry", len(pkt))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = AppendSend(c.wbuf[:0], first, epoch, pkt)
	c.conn.SetWriteDeadline(time.Now().Add(WriteTimeout))
	if err := c.conn.WriteMessage(c.wbuf); err != nil {
		return fmt.Errorf("mixnet: send to gateway %s: %w", c.gateway, err)
	}
	return nil
}

// Deliveries returns the packets the gateway delivered. It is closed when
// the connection ends; Err then says why.
func (c *Client) Deliveries() <-chan Delivery { return c.deliveries }

// Dropped counts deliveries dropped because Deliveries was full.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Err is the reason the connection ended, once Deliveries is closed.
func (c *Client) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Close closes the connection.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.conn.Close() })
	return nil
}

func (c *Client) readLoop() {
	defer close(c.deliveries)
	var buf []byte
	for {
		msg, err := c.conn.ReadMessage(buf)
		if err != nil {
			c.setErr(fmt.Errorf("mixnet: connection to gateway %s: %w", c.gateway, err))
			c.Close()
			return
		}
		for rest := msg; len(rest) > 0; {
			var k Kind
			var body []byte
			k, body, rest, err = NextRecord(rest)
			if err != nil {
				c.setErr(fmt.Errorf("mixnet: gateway %s: %w", c.gateway, err))
				c.Close()
				return
			}
			switch k {
			case KindDeliver:
				d, err := ParseDeliver(body)
				if err != nil {
					c.log.Debug("mixnet: bad delivery from gateway", "gateway", c.gateway, "err", err)
					continue
				}
				d.Payload = append([]byte(nil), d.Payload...)
				select {
				case c.deliveries <- d:
				default:
					c.dropped.Add(1)
				}
			case KindError:
				c.setErr(fmt.Errorf("%w: gateway %s: %s", ErrRefused, c.gateway, truncate(string(body), MaxErrorText)))
				c.Close()
				return
			default:
				c.log.Debug("mixnet: unexpected record from gateway", "gateway", c.gateway, "kind", k)
			}
		}
		buf = msg[:0]
	}
}

func (c *Client) setErr(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
