package iprouter

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nymvpn/nymvpn/mixnet/ipr"
)

// testPay is a Config.Pay for tests: tickets that start with "good" buy
// bandwidth bytes, the rest are refused as spent.
func testPay(bandwidth, topUpAt int64) func([]byte) (int64, int64, error) {
	return func(ticket []byte) (int64, int64, error) {
		if !strings.HasPrefix(string(ticket), "good") {
			return 0, 0, errors.New("ticket_spent: this ticket was spent before")
		}
		return bandwidth, topUpAt, nil
	}
}

// udp4 builds an IPv4 UDP packet of size bytes in all (header checksum
// set, no UDP checksum).
func udp4(src, dst netip.AddrPort, size int) []byte {
	b := make([]byte, size)
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(size))
	copy(b[12:16], src.Addr().AsSlice())
	copy(b[16:20], dst.Addr().AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(size-20))
	return b
}

// udpServer listens on loopback and counts what it gets; with echo it
// sends every datagram back.
func udpServer(t *testing.T, echo bool) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var got atomic.Int64
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got.Add(1)
			if echo {
				pc.WriteTo(buf[:n], from)
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String()), &got
}

// expectError waits for the next reply and checks it is an Error of code
// whose text contains want.
func (h *harness) expectError(code uint8, want string) {
	h.t.Helper()
	_, items := h.reply()
	c, text, err := ipr.ParseError(items[ipr.KindError])
	if err != nil || c != code || !strings.Contains(text, want) {
		h.t.Fatalf("want error %d %q, got %v (%d %q, %v)", code, want, items, c, text, err)
	}
}

// TestPaymentOpen: an exit that takes tickets refuses an Open without one
// (payment required, said in words) and one whose ticket it refuses (the
// reason), giving back the addresses it held for it; an Open with a ticket
// gets the Welcome and the allowance the ticket bought. Tickets in an Open
// of an open session top it up; the last one again is taken as paid.
func TestPaymentOpen(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Pay = testPay(100_000, 25_000) })
	tag := ipr.Tag{1}
	h.send(tag, 1, append(ipr.AppendOpen(nil, &ipr.Open{}), h.surbs(4, h.epoch())...))
	h.expectError(ipr.ErrPaymentRequired, "mixnet-exit ticket")
	h.send(tag, 2, append(ipr.AppendOpen(nil, &ipr.Open{Ticket: []byte("spent one")}), h.surbs(4, h.epoch())...))
	h.expectError(ipr.ErrTicketRefused, "ticket_spent: this ticket was spent before")
	if st := h.r.Stats(); st.Refused != 2 || st.TicketsRefused != 1 || st.Tickets != 0 || st.PaymentRequired != 1 || st.Opened != 0 {
		t.Fatalf("after two refusals: %+v", st)
	}
	h.send(tag, 3, append(ipr.AppendOpen(nil, &ipr.Open{Ticket: []byte("good 1")}), h.surbs(8, h.epoch())...))
	_, items := h.reply()
	w, err := ipr.ParseWelcome(items[ipr.KindWelcome])
	if err != nil {
		t.Fatalf("paid open: %v (items %v)", err, items)
	}
	if w.IPv4 != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("paid open got %v: the refused Open kept its address", w.IPv4)
	}
	a, err := ipr.ParseAllowance(items[ipr.KindAllowance])
	if err != nil || a != (ipr.Allowance{Left: 100_000, TopUpAt: 25_000}) {
		t.Fatalf("allowance %+v %v", a, err)
	}
	h.send(tag, 4, ipr.AppendOpen(nil, &ipr.Open{Ticket: []byte("good 2")}))
	_, items = h.reply()
	if a, err := ipr.ParseAllowance(items[ipr.KindAllowance]); err != nil || a.Left != 200_000 {
		t.Fatalf("a repeated Open with a ticket: %+v %v (items %v)", a, err, items)
	}
	// The same Open again (its answer lost): paid already, not spent twice.
	h.send(tag, 5, ipr.AppendOpen(nil, &ipr.Open{Ticket: []byte("good 2")}))
	_, items = h.reply()
	if a, err := ipr.ParseAllowance(items[ipr.KindAllowance]); err != nil || a.Left != 200_000 || items[ipr.KindError] != nil {
		t.Fatalf("the last ticket again: %+v %v (items %v)", a, err, items)
	}
	if st := h.r.Stats(); st.Tickets != 2 || st.TicketsRefused != 1 || st.Opened != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestPaymentMetering: the client's packets use the allowance up; NeedTicket
// goes out when it falls below the top-up level, not again on the next
// packet; at zero packets are dropped and counted, the client is told once,
// and asked for a ticket again after NeedTicketEvery; a refused Ticket item
// gets the reason, a good one the new allowance, and packets flow again.
func TestPaymentMetering(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Pay = testPay(4000, 2000) })
	sink, got := udpServer(t, false)
	tag := ipr.Tag{2}
	h.send(tag, 1, append(ipr.AppendOpen(nil, &ipr.Open{Ticket: []byte("good")}), h.surbs(32, h.epoch())...))
	_, items := h.reply()
	w, err := ipr.ParseWelcome(items[ipr.KindWelcome])
	if err != nil {
		t.Fatal(err)
	}
	src := netip.AddrPortFrom(w.IPv4, 4000)
	pkt := ipr.AppendItem(nil, ipr.KindIP, udp4(src, sink, 1000))
	id := uint32(2)
	send := func(msg []byte) {
		h.send(tag, id, msg)
		id++
	}
	// 3000 bytes: 1000 left, below 2000.
	send(append(append(append([]byte(nil), pkt...), pkt...), pkt...))
	_, items = h.reply()
	if left, err := ipr.ParseNeedTicket(items[ipr.KindNeedTicket]); err != nil || left != 1000 {
		t.Fatalf("need-ticket %d %v (items %v)", left, err, items)
	}
	send(pkt) // 0 left: passes, no second NeedTicket
	send(pkt) // dropped
	h.expectError(ipr.ErrPaymentRequired, "allowance ran out")
	send(pkt) // dropped, no second error
	waitFor(t, "two unpaid packets", func() bool { return h.r.Stats().Unpaid == 2 })
	send(ipr.AppendU64(nil, ipr.KindPing, 1))
	if _, items = h.reply(); items[ipr.KindPong] == nil || len(items) != 1 {
		t.Fatalf("after the drops: %v, want the pong alone", items)
	}
	waitFor(t, "4 packets at the server", func() bool { return got.Load() == 4 })
	// A while later, still nothing paid: asked again.
	h.now.Add(int64(NeedTicketEvery))
	send(pkt)
	_, items = h.reply()
	if left, err := ipr.ParseNeedTicket(items[ipr.KindNeedTicket]); err != nil || left != 0 {
		t.Fatalf("second need-ticket %d %v (items %v)", left, err, items)
	}
	send(ipr.AppendTicket(nil, []byte("spent")))
	h.expectError(ipr.ErrTicketRefused, "ticket_spent")
	send(ipr.AppendTicket(nil, []byte("good again")))
	_, items = h.reply()
	if a, err := ipr.ParseAllowance(items[ipr.KindAllowance]); err != nil || a != (ipr.Allowance{Left: 4000, TopUpAt: 2000}) {
		t.Fatalf("top-up: %+v %v (items %v)", a, err, items)
	}
	send(pkt)
	waitFor(t, "the packet after the top-up at the server", func() bool { return got.Load() == 5 })
	st := h.r.Stats()
	if st.Unpaid != 3 || st.IPIn != 5 || st.Tickets != 2 || st.TicketsRefused != 1 || st.NeedTickets != 2 || st.PaymentRequired != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestPaymentMeteringReplies: replies count too: an echo's answer takes the
// allowance below the top-up level (NeedTicket after the bundle), and one
// that comes when it is used up is dropped.
func TestPaymentMeteringReplies(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Pay = testPay(2500, 1000) })
	echo, _ := udpServer(t, true)
	tag := ipr.Tag{3}
	h.send(tag, 1, append(ipr.AppendOpen(nil, &ipr.Open{Ticket: []byte("good")}), h.surbs(32, h.epoch())...))
	_, items := h.reply()
	w, err := ipr.ParseWelcome(items[ipr.KindWelcome])
	if err != nil {
		t.Fatal(err)
	}
	pkt := ipr.AppendItem(nil, ipr.KindIP, udp4(netip.AddrPortFrom(w.IPv4, 4000), echo, 1000))
	h.send(tag, 2, pkt) // 1500 left after it, 500 after the echo
	if _, items = h.reply(); len(items[ipr.KindIP]) != 1000 {
		t.Fatalf("want the echo, got %v", items)
	}
	_, items = h.reply()
	if left, err := ipr.ParseNeedTicket(items[ipr.KindNeedTicket]); err != nil || left != 500 {
		t.Fatalf("need-ticket after the echo: %d %v (items %v)", left, err, items)
	}
	h.send(tag, 3, pkt) // passes (500 left), its echo finds none
	h.expectError(ipr.ErrPaymentRequired, "allowance ran out")
	if st := h.r.Stats(); st.Unpaid != 1 || st.IPOut != 1 || st.IPIn != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestFreeRouterIgnoresTickets: without Pay, Opens need no ticket, nothing
// is metered and Ticket items are not redeemed.
func TestFreeRouterIgnoresTickets(t *testing.T) {
	h := newHarness(t, nil)
	tag := ipr.Tag{4}
	h.open(tag, 1, &ipr.Open{}, 4)
	h.send(tag, 2, ipr.AppendU64(ipr.AppendTicket(nil, []byte("good")), ipr.KindPing, 5))
	if _, items := h.reply(); items[ipr.KindPong] == nil || len(items) != 1 {
		t.Fatalf("free router answered %v", items)
	}
	if st := h.r.Stats(); st.Tickets != 0 || st.NeedTickets != 0 || st.Malformed != 0 {
		t.Errorf("stats %+v", st)
	}
}
