package gateway_test

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
)

// benchTickets bounds -benchtime for BenchmarkPaidRegistration (one book).
const benchTickets = 256

// BenchmarkPaidRegistration: one registration with a ticket on loopback —
// Noise NK, ML-KEM-768, the ticket's checks (proof, pairing), the bbolt
// transaction (fsync) of its serial and payment info, the peer added to
// WireGuard. BenchmarkFreeRegistration is the same without the ticket; the
// difference is the ticket's cost. Run with -benchtime of at most 256x.
func BenchmarkPaidRegistration(b *testing.B) {
	p := newPaidGateway(b)
	book := p.book(b, credential.FastExit, benchTickets)
	tickets := make([][]byte, book.Len())
	for i := range tickets {
		tickets[i], _ = spend(b, book, i, p.noise, time.Now())
	}
	addr, noise, wg := p.gw.RegistrationAddr().String(), p.noise.Public(), p.wg.Public()
	i := 0
	for b.Loop() {
		if i >= len(tickets) {
			b.Fatalf("more than %d iterations: use -benchtime %dx or less", benchTickets, benchTickets)
		}
		if _, code := registerAt(b, addr, noise, wg, registration.RoleExit, tickets[i], transport.Key{}); code != "" {
			b.Fatalf("registration %d refused: %s", i, code)
		}
		i++
	}
}

func BenchmarkFreeRegistration(b *testing.B) {
	noise, _ := transport.GenerateKey()
	wg, _ := transport.GenerateKey()
	lo := netip.MustParseAddr("127.0.0.1")
	gw, err := gateway.New(gateway.Config{ID: "free", Roles: []directory.Role{directory.RoleExit}, NoiseKey: noise, WireGuardKey: wg,
		WireGuardListen: netip.AddrPortFrom(lo, 0), RegistrationListen: netip.AddrPortFrom(lo, 0), FreePass: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { gw.Close() })
	addr := gw.RegistrationAddr().String()
	for b.Loop() {
		if _, code := registerAt(b, addr, noise.Public(), wg.Public(), registration.RoleExit, nil, transport.Key{}); code != "" {
			b.Fatal(code)
		}
	}
}
