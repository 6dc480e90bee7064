package netstack

import (
	"net/netip"
	"testing"
)

// FuzzWrite feeds arbitrary bytes to Write on a forwarding stack whose
// Forwarder refuses everything. Nothing may panic; the stack must stay
// usable. Seeds (valid TCP, UDP and ICMP packets, IPv6 extension headers,
// fragments, broken lengths) are in testdata/fuzz/FuzzWrite.
func FuzzWrite(f *testing.F) {
	src4, dst4 := netip.MustParseAddrPort("10.64.0.2:40000"), netip.MustParseAddrPort("192.0.2.7:443")
	src6, dst6 := netip.MustParseAddrPort("[fd00::2]:40000"), netip.MustParseAddrPort("[2001:db8::7]:443")
	f.Add(tcpSYN(src4, dst4))
	f.Add(udpPacket(src6, dst6, []byte("seed")))
	f.Add(echoRequestPacket(src4.Addr(), dst4.Addr(), 1, 2, []byte("seed")))

	s, err := New(Config{Addresses: []netip.Addr{gwV4, gwV6}, AllowLoopback: true, Forward: refuseAll{}})
	if err != nil {
		f.Fatal(err)
	}
	go drain(s)
	f.Cleanup(func() { s.Close() })

	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := s.Write([][]byte{data}, 0); err != nil {
			t.Fatalf("Write: %v", err)
		}
		// The same packet at an offset, batched with a copy of itself.
		buf := append(make([]byte, testOffset), data...)
		if _, err := s.Write([][]byte{buf, buf}, testOffset); err != nil {
			t.Fatalf("Write at offset: %v", err)
		}
	})
}
