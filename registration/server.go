package registration

import (
	"context"
	"crypto/hmac"
	"crypto/mlkem"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/transport"
)

// Peer is a validated request handed to the gateway's peer table.
type Peer struct {
	Role         string
	WireGuardKey transport.Key
	PresharedKey [32]byte
	Ticket       []byte
	// Remote is where the request came from: the client for an entry, the
	// entry gateway for an exit reached through it.
	Remote netip.AddrPort
}

// Registrar admits peers. Register returns the grant or a *Error to refuse;
// any other error is reported to the client as internal. It must be safe for
// concurrent use.
type Registrar interface {
	Register(ctx context.Context, p Peer) (*Grant, error)
}

// Server answers registrations.
type Server struct {
	NoiseKey     transport.Key // private static key of this endpoint
	WireGuardKey transport.Key // private WireGuard key of the gateway, to check proofs
	Registrar    Registrar
	Logger       *slog.Logger
	// Timeout bounds one registration, handshake included (default 10 s).
	Timeout time.Duration
	// MaxConcurrent bounds registrations in flight (default 256); the rest wait
	// in the listen backlog, so a flood slows registration but cannot exhaust memory.
	MaxConcurrent int

	stats Stats
	once  sync.Once
	sem   chan struct{}
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// Stats counts what the server saw.
type Stats struct {
	Accepted, Refused, Failed atomic.Int64
}

// Stats returns the live counters.
func (s *Server) Stats() *Stats { return &s.stats }

func (s *Server) init() {
	s.once.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		if s.Timeout == 0 {
			s.Timeout = 10 * time.Second
		}
		if s.MaxConcurrent == 0 {
			s.MaxConcurrent = 256
		}
		s.sem = make(chan struct{}, s.MaxConcurrent)
		s.conns = map[net.Conn]struct{}{}
	})
}

// Serve accepts connections on l until l is closed; it then closes
// registrations in flight and returns nil.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	var wg sync.WaitGroup
	defer func() {
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	}()
	for {
		s.sem <- struct{}{}
		c, err := l.Accept()
		if err != nil {
			<-s.sem
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("registration: accept: %w", err)
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.sem }()
			ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
			defer cancel()
			s.ServeConn(ctx, c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// ServeConn handles one registration on c and closes it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	s.init()
	defer c.Close()
	remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	log := s.Logger.With("remote", remote)
	conn, err := transport.Server(ctx, c, transport.Config{Pattern: transport.NK, Prologue: Prologue, LocalStatic: s.NoiseKey})
	if err != nil {
		s.stats.Failed.Add(1)
		log.Debug("registration handshake failed", "err", err)
		return
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	msg, err := conn.ReadMessage(make([]byte, 0, 4096))
	if err != nil {
		s.stats.Failed.Add(1)
		log.Debug("registration request unreadable", "err", err)
		return
	}
	resp := s.handle(ctx, conn.HandshakeHash(), msg, remote)
	if resp.Error != nil {
		s.stats.Refused.Add(1)
		log.Info("registration refused", "code", resp.Error.Code, "reason", resp.Error.Message)
	} else {
		s.stats.Accepted.Add(1)
	}
	out, err := json.Marshal(resp)
	if err != nil {
		log.Error("encode registration response", "err", err)
		return
	}
	if err := conn.WriteMessage(out); err != nil {
		log.Debug("send registration response", "err", err)
	}
}

func (s *Server) handle(ctx context.Context, channel, msg []byte, remote netip.AddrPort) *Response {
	refuse := func(err error) *Response {
		var e *Error
		if errors.As(err, &e) {
			return &Response{Error: e}
		}
		s.Logger.Error("registration failed", "err", err)
		return &Response{Error: Errorf(CodeInternal, "the gateway could not register you; try again later")}
	}
	req, err := DecodeRequest(msg)
	if err != nil {
		return refuse(err)
	}
	key, err := proofKey(s.WireGuardKey, req.WireGuardKey)
	if err != nil {
		return refuse(Errorf(CodeMalformed, "WireGuard key is a low-order point"))
	}
	if !hmac.Equal(req.Proof, proof(key, channel, req.Role, req.WireGuardKey)) {
		return refuse(Errorf(CodeBadProof, "proof of the WireGuard key does not verify (replayed, or made for another gateway)"))
	}
	ek, err := mlkem.NewEncapsulationKey768(req.KEMKey)
	if err != nil {
		return refuse(Errorf(CodeMalformed, "ML-KEM key: %v", err))
	}
	shared, ct := ek.Encapsulate()
	psk, err := presharedKey(shared, channel)
	if err != nil {
		return refuse(err)
	}
	grant, err := s.Registrar.Register(ctx, Peer{
		Role: req.Role, WireGuardKey: req.WireGuardKey, PresharedKey: psk, Ticket: req.Ticket, Remote: remote,
	})
	if err != nil {
		return refuse(err)
	}
	return &Response{Grant: grant, KEMCiphertext: ct}
}
