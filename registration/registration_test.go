package registration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
)

// poolRegistrar is a test registrar with a pool of n addresses.
type poolRegistrar struct {
	mu    sync.Mutex
	n     int
	peers map[transport.Key]netip.Addr
	psk   map[transport.Key][32]byte
}

func (r *poolRegistrar) Register(ctx context.Context, p registration.Peer) (*registration.Grant, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.peers[p.WireGuardKey]
	if !ok {
		if len(r.peers) >= r.n {
			return nil, registration.Errorf(registration.CodePoolExhausted, "no free addresses")
		}
		a = netip.AddrFrom4([4]byte{10, 1, 0, byte(2 + len(r.peers))})
		r.peers[p.WireGuardKey] = a
	}
	r.psk[p.WireGuardKey] = p.PresharedKey
	return &registration.Grant{GatewayKey: transport.Key{9}, Port: 51822, Addresses: []netip.Addr{a}, MTU: 1420}, nil
}

type gw struct {
	addr      string
	noise, wg transport.Key // private
	srv       *registration.Server
	reg       *poolRegistrar
}

func startGateway(t *testing.T, pool int) *gw {
	t.Helper()
	g := &gw{reg: &poolRegistrar{n: pool, peers: map[transport.Key]netip.Addr{}, psk: map[transport.Key][32]byte{}}}
	g.noise, _ = transport.GenerateKey()
	g.wg, _ = transport.GenerateKey()
	g.srv = &registration.Server{NoiseKey: g.noise, WireGuardKey: g.wg, Registrar: g.reg, Logger: slog.New(slog.DiscardHandler)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); g.srv.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return g
}

func (g *gw) public() registration.Gateway {
	return registration.Gateway{NoiseKey: g.noise.Public(), WireGuardKey: g.wg.Public()}
}

func register(t *testing.T, addr string, g registration.Gateway, key transport.Key) (*registration.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return registration.Register(ctx, c, g, registration.Params{Role: registration.RoleEntry, WireGuardKey: key})
}

func TestRegisterAndReRegister(t *testing.T) {
	g := startGateway(t, 4)
	key, _ := transport.GenerateKey()
	r1, err := register(t, g.addr, g.public(), key)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	if got := g.reg.psk[key.Public()]; got != r1.PresharedKey {
		t.Error("client and gateway derived different preshared keys")
	}
	r2, err := register(t, g.addr, g.public(), key)
	if err != nil {
		t.Fatalf("re-register: %v", err)
	}
	if r1.Addresses[0] != r2.Addresses[0] {
		t.Errorf("re-registration moved the client from %v to %v", r1.Addresses[0], r2.Addresses[0])
	}
	if r1.PresharedKey == r2.PresharedKey {
		t.Error("re-registration reused the preshared key")
	}
}

func TestWrongGatewayKey(t *testing.T) {
	g := startGateway(t, 4)
	key, _ := transport.GenerateKey()
	impostor, _ := transport.GenerateKey()
	pub := g.public()
	pub.NoiseKey = impostor.Public()
	_, err := register(t, g.addr, pub, key)
	if !errors.Is(err, transport.ErrHandshake) {
		t.Fatalf("register against the wrong Noise key: err = %v, want ErrHandshake", err)
	}
	// A proof made for another gateway's WireGuard key is refused.
	pub = g.public()
	pub.WireGuardKey = impostor.Public()
	_, err = register(t, g.addr, pub, key)
	var re *registration.Error
	if !errors.As(err, &re) || re.Code != registration.CodeBadProof {
		t.Fatalf("proof for another WireGuard key: err = %v, want %s", err, registration.CodeBadProof)
	}
	// The gateway still serves others.
	if _, err := register(t, g.addr, g.public(), key); err != nil {
		t.Fatalf("register after refusals: %v", err)
	}
	if s := g.srv.Stats(); s.Failed.Load() != 1 || s.Refused.Load() != 1 {
		t.Errorf("stats failed=%d refused=%d, want 1 and 1", s.Failed.Load(), s.Refused.Load())
	}
}

func TestPoolExhaustion(t *testing.T) {
	g := startGateway(t, 2)
	for i := 0; i < 2; i++ {
		k, _ := transport.GenerateKey()
		if _, err := register(t, g.addr, g.public(), k); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	k, _ := transport.GenerateKey()
	_, err := register(t, g.addr, g.public(), k)
	var re *registration.Error
	if !errors.As(err, &re) || re.Code != registration.CodePoolExhausted {
		t.Fatalf("third client: err = %v, want %s", err, registration.CodePoolExhausted)
	}
}

// recorder captures what a client writes, to replay it later.
type recorder struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) { r.buf.Write(p); return r.Conn.Write(p) }

func TestReplayedRegistration(t *testing.T) {
	g := startGateway(t, 4)
	key, _ := transport.GenerateKey()
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Conn: c}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := registration.Register(ctx, rec, g.public(), registration.Params{Role: registration.RoleExit, WireGuardKey: key}); err != nil {
		t.Fatal(err)
	}
	// Replay the client's bytes on a fresh connection: the gateway's new
	// ephemeral key makes the recorded request undecryptable.
	c2, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c2.Write(rec.buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(c2)
	// The gateway answers the handshake (2-byte length + 48 bytes), then
	// hangs up without a response.
	if len(reply) != 2+48 {
		t.Errorf("gateway sent %d bytes to a replay, want only its handshake reply (50)", len(reply))
	}
	if g.srv.Stats().Failed.Load() != 1 || g.srv.Stats().Accepted.Load() != 1 {
		t.Errorf("replay was not refused: accepted=%d failed=%d", g.srv.Stats().Accepted.Load(), g.srv.Stats().Failed.Load())
	}
}

// rawRequest runs the handshake and sends msg as the request.
func rawRequest(t *testing.T, g *gw, msg []byte) *registration.Response {
	t.Helper()
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := transport.Client(ctx, c, transport.Config{Pattern: transport.NK, Prologue: registration.Prologue, RemoteStatic: g.noise.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.WriteMessage(msg); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	reply, err := conn.ReadMessage(nil)
	if err != nil {
		t.Fatal(err)
	}
	var resp registration.Response
	if err := json.Unmarshal(reply, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

func TestMalformedRequests(t *testing.T) {
	g := startGateway(t, 4)
	key, _ := transport.GenerateKey()
	good := registration.Request{Version: 1, Role: "entry", WireGuardKey: key.Public(), KEMKey: make([]byte, 1184), Proof: make([]byte, 32)}
	cases := map[string]func() []byte{
		"not json":      func() []byte { return []byte("{{{") },
		"unknown field": func() []byte { return []byte(`{"v":1,"role":"entry","evil":true}`) },
		"bad version":   func() []byte { r := good; r.Version = 7; b, _ := json.Marshal(r); return b },
		"bad role":      func() []byte { r := good; r.Role = "mixnode"; b, _ := json.Marshal(r); return b },
		"short kem key": func() []byte { r := good; r.KEMKey = r.KEMKey[:10]; b, _ := json.Marshal(r); return b },
		"zero wg key":   func() []byte { r := good; r.WireGuardKey = transport.Key{}; b, _ := json.Marshal(r); return b },
		"bad proof":     func() []byte { b, _ := json.Marshal(good); return b },
	}
	want := map[string]string{"bad version": registration.CodeVersion, "bad proof": registration.CodeBadProof}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			resp := rawRequest(t, g, msg())
			code := want[name]
			if code == "" {
				code = registration.CodeMalformed
			}
			if resp.Error == nil || resp.Error.Code != code || resp.Error.Message == "" {
				t.Fatalf("response %+v, want error %s with a message", resp, code)
			}
		})
	}
	if _, err := register(t, g.addr, g.public(), key); err != nil {
		t.Fatalf("gateway stopped serving after malformed requests: %v", err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	key, _ := transport.GenerateKey()
	b, _ := json.Marshal(registration.Request{Version: 1, Role: "exit", WireGuardKey: key.Public(), KEMKey: make([]byte, 1184), Proof: make([]byte, 32), Ticket: []byte{1, 2}})
	f.Add(b)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := registration.DecodeRequest(b)
		if err == nil {
			if req.Validate() != nil {
				t.Fatal("decoded request does not validate")
			}
			var re *registration.Error
			_ = errors.As(err, &re)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	g := registration.Grant{GatewayKey: transport.Key{1}, Port: 1, Addresses: []netip.Addr{netip.MustParseAddr("10.1.0.2")}, MTU: 1420}
	b, _ := json.Marshal(registration.Response{Grant: &g, KEMCiphertext: make([]byte, 1088)})
	f.Add(b)
	b, _ = json.Marshal(registration.Response{Error: registration.Errorf("x", "y")})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := registration.DecodeResponse(b)
		if err == nil && resp.Error == nil && resp.Grant.Validate() != nil {
			t.Fatal("accepted an invalid grant")
		}
	})
}
