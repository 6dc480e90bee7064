package netstack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// testOffset mimics wireguard-go, which reads and writes TUN packets at a
// nonzero offset into its buffers.
const testOffset = 16

// generous bounds every wait in the tests; nothing asserts on timing.
const generous = 30 * time.Second

var (
	clientV4 = netip.MustParseAddr("10.64.0.2")
	clientV6 = netip.MustParseAddr("fd00::2")
	gwV4     = netip.MustParseAddr("10.64.0.1")
	gwV6     = netip.MustParseAddr("fd00::1")
	gwLocal  = netip.MustParseAddr("127.0.0.2") // the gateway's own loopback address
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("NETSTACK_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// joinDevices copies packets Read from each device into the other until
// either is closed: an in-memory point-to-point link.
func joinDevices(t testing.TB, a, b tun.Device) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyPackets(a, b) }()
	go func() { defer wg.Done(); copyPackets(b, a) }()
	t.Cleanup(func() {
		a.Close()
		b.Close()
		wg.Wait()
	})
}

func copyPackets(src, dst tun.Device) {
	n := src.BatchSize()
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, testOffset+65535)
	}
	sizes := make([]int, n)
	out := make([][]byte, n)
	for {
		got, err := src.Read(bufs, sizes, testOffset)
		if err != nil {
			return
		}
		for i := range got {
			out[i] = bufs[i][:testOffset+sizes[i]]
		}
		if _, err := dst.Write(out[:got], testOffset); err != nil {
			return
		}
	}
}

// newPair returns a client host stack joined to a gateway stack forwarding
// with fwd.
func newPair(t testing.TB, fwd Forwarder, mod func(*Config)) (client, gw *Stack) {
	t.Helper()
	var err error
	client, err = New(Config{Addresses: []netip.Addr{clientV4, clientV6}, MTU: 1420, AllowLoopback: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("client stack: %v", err)
	}
	gcfg := Config{Addresses: []netip.Addr{gwV4, gwV6}, MTU: 1420, AllowLoopback: true, Forward: fwd, Logger: testLogger(t)}
	if mod != nil {
		mod(&gcfg)
	}
	gw, err = New(gcfg)
	if err != nil {
		client.Close()
		t.Fatalf("gateway stack: %v", err)
	}
	joinDevices(t, client, gw)
	return client, gw
}

// tcpEchoServer is a real loopback TCP server echoing until EOF, then
// closing. Remote addresses of accepted connections go to the channel.
func tcpEchoServer(t testing.TB, network, addr string) (netip.AddrPort, <-chan netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort():
			default:
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort(), peers
}

// udpEchoServer is a real loopback UDP server echoing each datagram.
// Source addresses of received datagrams go to the channel.
func udpEchoServer(t testing.TB, network, addr string) (netip.AddrPort, <-chan netip.AddrPort) {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	peers := make(chan netip.AddrPort, 1024)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case peers <- from.(*net.UDPAddr).AddrPort():
			default:
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), peers
}

// udpRoundTrip sends msg on c until the echo comes back, retrying as UDP
// may lose datagrams; it fails the test after the generous deadline.
func udpRoundTrip(t testing.TB, c net.Conn, msg []byte) {
	t.Helper()
	deadline := time.Now().Add(generous)
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("udp write: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			t.Fatalf("udp read: %v", err)
		}
		if !bytes.Equal(buf[:n], msg) {
			t.Fatalf("udp echo: got %q, want %q", buf[:n], msg)
		}
		return
	}
	t.Fatalf("udp: no echo within %v", generous)
}

// waitFor polls cond until it holds or the generous deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(generous)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), generous)
	t.Cleanup(cancel)
	return ctx
}

// onesSum is an independent Internet checksum for verifying the stack's.
func onesSum(parts ...[]byte) uint16 {
	var sum uint32
	for _, p := range parts {
		for i := 0; i+1 < len(p); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(p[i:]))
		}
		if len(p)%2 == 1 {
			sum += uint32(p[len(p)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

func ipv4Packet(src, dst netip.Addr, proto byte, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = proto
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], ^onesSum(p[:20]))
	copy(p[20:], payload)
	return p
}

func ipv6Packet(src, dst netip.Addr, next byte, payload []byte) []byte {
	p := make([]byte, 40+len(payload))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(payload)))
	p[6] = next
	p[7] = 64
	s, d := src.As16(), dst.As16()
	copy(p[8:], s[:])
	copy(p[24:], d[:])
	copy(p[40:], payload)
	return p
}

func pseudo6(src, dst netip.Addr, n int, next byte) []byte {
	ph := make([]byte, 40)
	s, d := src.As16(), dst.As16()
	copy(ph, s[:])
	copy(ph[16:], d[:])
	binary.BigEndian.PutUint32(ph[32:], uint32(n))
	ph[39] = next
	return ph
}

// echoRequestPacket builds an ICMP(v6) echo request from src to dst.
func echoRequestPacket(src, dst netip.Addr, id, seq uint16, data []byte) []byte {
	m := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(m[4:], id)
	binary.BigEndian.PutUint16(m[6:], seq)
	copy(m[8:], data)
	if src.Is4() {
		m[0] = 8
		binary.BigEndian.PutUint16(m[2:], ^onesSum(m))
		return ipv4Packet(src, dst, 1, m)
	}
	m[0] = 128
	binary.BigEndian.PutUint16(m[2:], ^onesSum(pseudo6(src, dst, len(m), 58), m))
	return ipv6Packet(src, dst, 58, m)
}

// udpPacket builds a UDP datagram (IPv4 or IPv6) with a valid checksum.
func udpPacket(src, dst netip.AddrPort, data []byte) []byte {
	u := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], data)
	if src.Addr().Is4() {
		s, d := src.Addr().As4(), dst.Addr().As4()
		ph := make([]byte, 12)
		copy(ph, s[:])
		copy(ph[4:], d[:])
		ph[9] = 17
		binary.BigEndian.PutUint16(ph[10:], uint16(len(u)))
		binary.BigEndian.PutUint16(u[6:], ^onesSum(ph, u))
		return ipv4Packet(src.Addr(), dst.Addr(), 17, u)
	}
	binary.BigEndian.PutUint16(u[6:], ^onesSum(pseudo6(src.Addr(), dst.Addr(), len(u), 17), u))
	return ipv6Packet(src.Addr(), dst.Addr(), 17, u)
}

// tcpSYN builds a TCP SYN with a valid checksum.
func tcpSYN(src, dst netip.AddrPort) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], src.Port())
	binary.BigEndian.PutUint16(h[2:], dst.Port())
	binary.BigEndian.PutUint32(h[4:], 12345)
	h[12] = 5 << 4
	h[13] = 0x02
	binary.BigEndian.PutUint16(h[14:], 65535)
	if src.Addr().Is4() {
		s, d := src.Addr().As4(), dst.Addr().As4()
		ph := make([]byte, 12)
		copy(ph, s[:])
		copy(ph[4:], d[:])
		ph[9] = 6
		binary.BigEndian.PutUint16(ph[10:], 20)
		binary.BigEndian.PutUint16(h[16:], ^onesSum(ph, h))
		return ipv4Packet(src.Addr(), dst.Addr(), 6, h)
	}
	binary.BigEndian.PutUint16(h[16:], ^onesSum(pseudo6(src.Addr(), dst.Addr(), 20, 6), h))
	return ipv6Packet(src.Addr(), dst.Addr(), 6, h)
}

// refuseAll is a Forwarder that refuses every flow.
type refuseAll struct{}

func (refuseAll) DialTCP(context.Context, Flow) (net.Conn, error) { return nil, ErrDenied }
func (refuseAll) DialUDP(context.Context, Flow) (net.Conn, error) { return nil, ErrDenied }
func (refuseAll) Ping(context.Context, Flow, []byte) error        { return ErrDenied }

// drain reads and discards everything a device emits until it is closed.
func drain(d tun.Device) {
	bufs := [][]byte{make([]byte, 65536)}
	sizes := []int{0}
	for {
		if _, err := d.Read(bufs, sizes, 0); err != nil {
			return
		}
	}
}
