package socks5

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClientHandshakeCancelled(t *testing.T) {
	// A "proxy" that accepts and then never answers.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		cancel()
	}()
	_, err = DialThrough(ctx, l.Addr().String(), "tcp", "example.test:80")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestClientArguments(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ network, target string }{
		{"udp", "127.0.0.1:1"},
		{"tcp4", "[::1]:1"},
		{"tcp6", "127.0.0.1:1"},
		{"tcp", "no-port"},
	} {
		// The proxy address is never dialled for invalid arguments.
		if _, err := DialThrough(ctx, "127.0.0.1:0", tc.network, tc.target); err == nil {
			t.Errorf("DialThrough(%s, %s) succeeded", tc.network, tc.target)
		}
	}
	cl := &Client{Addr: "127.0.0.1:0", Username: string(make([]byte, 256))}
	if _, err := cl.DialContext(ctx, "tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "255 bytes") {
		t.Errorf("overlong username: %v", err)
	}
	if _, err := cl.AssociateUDP(ctx); err == nil || !strings.Contains(err.Error(), "255 bytes") {
		t.Errorf("overlong username: %v", err)
	}
}

func TestClientAssociateWithAuth(t *testing.T) {
	ts := newTestServer(t, func(s *Server) { s.Username, s.Password = "u", "p" })
	echo := startUDPEcho(t, "udp4", "127.0.0.1:0").LocalAddr().String()
	if _, err := AssociateUDP(context.Background(), ts.Addr); !errors.Is(err, ErrNoAcceptableMethod) {
		t.Fatalf("AssociateUDP without credentials: %v", err)
	}
	a, err := (&Client{Addr: ts.Addr, Username: "u", Password: "p"}).AssociateUDP(context.Background())
	if err != nil {
		t.Fatalf("AssociateUDP: %v", err)
	}
	defer a.Close()
	if _, err := a.WriteTo([]byte("hi"), echo); err != nil {
		t.Fatal(err)
	}
	_ = a.SetReadDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 1) // shorter than the datagram: truncated like UDP
	n, from, err := a.ReadFrom(buf)
	if err != nil || n != 1 || buf[0] != 'h' || from != echo {
		t.Fatalf("ReadFrom = %d %q %s %v", n, buf[:n], from, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteTo([]byte("late"), echo); !errors.Is(err, ErrAssociationClosed) {
		t.Errorf("WriteTo after Close = %v", err)
	}
}

func TestAssociateTunnelSocketFailure(t *testing.T) {
	ts := newTestServer(t, func(s *Server) {
		s.ListenPacket = func(context.Context) (net.PacketConn, error) {
			return nil, errors.New("tunnel is down")
		}
	})
	var re *ReplyError
	if _, err := AssociateUDP(context.Background(), ts.Addr); !errors.As(err, &re) || re.Code != ReplyGeneralFailure {
		t.Fatalf("err = %v, want general failure", err)
	}
}
