package netstack

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	tcpicmp "gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// skipWithoutPing skips unless this process may send ICMP echo: through
// unprivileged ping sockets (net.ipv4.ping_group_range) or raw sockets (root).
func skipWithoutPing(t *testing.T, v6 bool) {
	t.Helper()
	dgram, raw, addr := "udp4", "ip4:icmp", "127.0.0.1"
	if v6 {
		dgram, raw, addr = "udp6", "ip6:ipv6-icmp", "::1"
	}
	c, err := icmp.ListenPacket(dgram, addr)
	if err == nil {
		c.Close()
		return
	}
	c, rerr := icmp.ListenPacket(raw, addr)
	if rerr == nil {
		c.Close()
		t.Logf("ping sockets not permitted (%v); using raw ICMP sockets", err)
		return
	}
	t.Skipf("cannot send ICMP echo: ping sockets not permitted (%v; see sysctl net.ipv4.ping_group_range) and no raw socket (%v; needs root/CAP_NET_RAW)", err, rerr)
}

// readEchoReply reads packets from s until an echo reply arrives.
func readEchoReply(t *testing.T, s *Stack) []byte {
	t.Helper()
	bufs := [][]byte{make([]byte, 65536)}
	sizes := []int{0}
	for {
		if _, err := s.Read(bufs, sizes, 0); err != nil {
			t.Fatalf("Read: %v", err)
		}
		p := bufs[0][:sizes[0]]
		info, ok := parsePacket(p)
		if ok && info.isICMP && info.l4off < len(p) && (p[info.l4off] == 0 || p[info.l4off] == 129) {
			return bytes.Clone(p)
		}
	}
}

func TestICMPEchoForward(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		local    netip.Addr
	}{
		{"ipv4", clientV4, netip.MustParseAddr("127.0.0.1"), gwLocal},
		{"ipv6", clientV6, netip.IPv6Loopback(), netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v6 := tc.dst.Is6()
			skipWithoutPing(t, v6)
			gw, err := New(Config{Addresses: []netip.Addr{gwV4, gwV6}, AllowLoopback: true, Forward: &DirectForwarder{LocalAddr: tc.local}, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer gw.Close()

			data := []byte("nymvpn ping payload 0123456789")
			req := echoRequestPacket(tc.src, tc.dst, 0x1234, 7, data)
			if _, err := gw.Write([][]byte{req}, 0); err != nil {
				t.Fatalf("Write: %v", err)
			}
			rep := readEchoReply(t, gw)
			info, ok := parsePacket(rep)
			if !ok {
				t.Fatalf("reply does not parse: %x", rep)
			}
			if info.src != tc.dst || info.dst != tc.src {
				t.Errorf("reply %v -> %v, want %v -> %v", info.src, info.dst, tc.dst, tc.src)
			}
			msg := rep[info.l4off:]
			if v6 {
				if msg[0] != 129 || msg[1] != 0 {
					t.Errorf("ICMPv6 type/code = %d/%d, want 129/0", msg[0], msg[1])
				}
				if onesSum(pseudo6(info.src, info.dst, len(msg), 58), msg) != 0xffff {
					t.Error("bad ICMPv6 checksum")
				}
			} else {
				if msg[0] != 0 || msg[1] != 0 {
					t.Errorf("ICMP type/code = %d/%d, want 0/0", msg[0], msg[1])
				}
				if onesSum(rep[:20]) != 0xffff {
					t.Error("bad IPv4 header checksum")
				}
				if onesSum(msg) != 0xffff {
					t.Error("bad ICMP checksum")
				}
			}
			if id, seq := binary.BigEndian.Uint16(msg[4:]), binary.BigEndian.Uint16(msg[6:]); id != 0x1234 || seq != 7 {
				t.Errorf("id/seq = %#x/%d, want 0x1234/7", id, seq)
			}
			if !bytes.Equal(msg[8:], data) {
				t.Errorf("payload = %q, want %q", msg[8:], data)
			}
			if st := gw.Stats(); st.PingsForwarded != 1 {
				t.Errorf("PingsForwarded = %d, want 1", st.PingsForwarded)
			}
		})
	}
}

// TestICMPEchoThroughPair pings from a client stack through the gateway,
// as a user-space ping would travel: gVisor's own ICMP socket on the client
// sends the request, the gateway forwards it and synthesizes the reply.
func TestICMPEchoThroughPair(t *testing.T) {
	skipWithoutPing(t, false)
	client, _ := newPair(t, &DirectForwarder{LocalAddr: gwLocal}, nil)
	var wq waiter.Queue
	ep, terr := client.stack.NewEndpoint(tcpicmp.ProtocolNumber4, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatalf("ICMP endpoint: %s", terr)
	}
	defer ep.Close()
	if terr := ep.Connect(tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4([4]byte{127, 0, 0, 1})}); terr != nil {
		t.Fatalf("connect: %s", terr)
	}
	c := gonet.NewUDPConn(&wq, ep) // datagram semantics over the ICMP endpoint
	for seq := range uint16(3) {
		req := []byte{8, 0, 0, 0, 0, 0, byte(seq >> 8), byte(seq), 'p', 'i', 'n', 'g', byte(seq)}
		if _, err := c.Write(req); err != nil {
			t.Fatalf("send echo: %v", err)
		}
		buf := make([]byte, 1500)
		c.SetReadDeadline(time.Now().Add(generous))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no echo reply: %v", err)
		}
		rep := buf[:n]
		if rep[0] != 0 || binary.BigEndian.Uint16(rep[6:]) != seq || !bytes.Equal(rep[8:], req[8:]) {
			t.Fatalf("unexpected reply %x to %x", rep, req)
		}
	}
}

func TestICMPEchoPolicyDenied(t *testing.T) {
	gw, err := New(Config{Addresses: []netip.Addr{gwV4}, AllowLoopback: true,
		Forward: &PolicyForwarder{Allow: AllowOnly(ProtoUDP), Next: &DirectForwarder{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if _, err := gw.Write([][]byte{echoRequestPacket(clientV4, netip.MustParseAddr("127.0.0.1"), 1, 1, nil)}, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ping policy drop", func() bool { return gw.Stats().DroppedPolicy == 1 })
	if st := gw.Stats(); st.PingsForwarded != 0 || st.PacketsOut != 0 {
		t.Errorf("denied ping answered: %+v", st)
	}
}

// TestEchoToOwnAddress: echo requests to the gateway's own address are
// answered by gVisor itself, without the Forwarder.
func TestEchoToOwnAddress(t *testing.T) {
	gw, err := New(Config{Addresses: []netip.Addr{gwV4, gwV6}, Forward: refuseAll{}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	for _, p := range [][]byte{
		echoRequestPacket(clientV4, gwV4, 5, 6, []byte("own")),
		echoRequestPacket(clientV6, gwV6, 5, 6, []byte("own")),
	} {
		if _, err := gw.Write([][]byte{p}, 0); err != nil {
			t.Fatal(err)
		}
		rep := readEchoReply(t, gw)
		info, _ := parsePacket(rep)
		if info.src != map[bool]netip.Addr{false: gwV4, true: gwV6}[info.v6] {
			t.Errorf("reply from %v", info.src)
		}
	}
	if st := gw.Stats(); st.PingsForwarded != 0 || st.DroppedPolicy != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestEchoReplyBuilder(t *testing.T) {
	// Odd-length payloads exercise the checksum's trailing byte.
	for _, data := range [][]byte{nil, {1}, bytes.Repeat([]byte{0xff}, 1001)} {
		for _, pair := range [][2]netip.Addr{{clientV4, gwV4}, {clientV6, gwV6}} {
			req := echoRequestPacket(pair[0], pair[1], 1, 2, data)
			info, ok := parsePacket(req)
			if !ok {
				t.Fatal("request does not parse")
			}
			msg, ok := echoRequest(req, info)
			if !ok {
				t.Fatalf("echoRequest rejected a valid request %x", req)
			}
			rep := echoReply(info, msg)
			rinfo, ok := parsePacket(rep)
			if !ok || rinfo.src != pair[1] || rinfo.dst != pair[0] || rinfo.totalLen != len(rep) {
				t.Fatalf("reply header wrong: %+v", rinfo)
			}
			m := rep[rinfo.l4off:]
			var sum uint16
			if rinfo.v6 {
				sum = onesSum(pseudo6(rinfo.src, rinfo.dst, len(m), 58), m)
			} else {
				sum = onesSum(m)
			}
			if sum != 0xffff {
				t.Errorf("bad checksum in reply (v6=%v, %d bytes)", rinfo.v6, len(data))
			}
		}
	}
}
