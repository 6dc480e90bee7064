package localnet

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestDNSServer(t *testing.T) {
	s, err := StartDNS(netip.MustParseAddrPort("127.0.0.1:0"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Set("web", netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"))
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.Addr().String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip", "web.localnet")
	if err != nil || len(ips) != 2 {
		t.Fatalf("lookup web.localnet = %v, %v", ips, err)
	}
	if _, err := r.LookupNetIP(ctx, "ip4", "nope.localnet"); err == nil {
		t.Fatal("unknown name resolved")
	}
	if _, err := r.LookupNetIP(ctx, "ip4", "example.com"); err == nil {
		t.Fatal("name outside the zone resolved")
	}
	if _, err := s.Answer([]byte{1, 2, 3}); err == nil {
		t.Fatal("garbage answered")
	}
}

func FuzzDNSAnswer(f *testing.F) {
	q, _ := (&dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 7, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("web.localnet."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}).Pack()
	f.Add(q)
	s := &DNSServer{records: map[string][]netip.Addr{"web.localnet.": {netip.MustParseAddr("127.0.0.1")}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		reply, err := s.Answer(b)
		if err != nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(reply); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	})
}
