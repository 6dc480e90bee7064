package gateway_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
)

// paidGateway is an exit gateway that takes tickets of an issuer set made
// here, with a clock the test moves.
type paidGateway struct {
	gw        *gateway.Gateway
	noise, wg transport.Key
	vk        *credential.VerificationKey
	sks       []*credential.IssuerSecretKey
	ivks      []*credential.IssuerVerificationKey
	user      *credential.UserSecret
	clock     atomic.Pointer[time.Time]
	db        string
	roles     []directory.Role
	mixnet    *gateway.MixnetConfig
	bandwidth map[credential.TicketType]int64
	exit      gateway.ExitPolicy
}

func newPaidGateway(t testing.TB, opts ...func(*paidGateway)) *paidGateway {
	t.Helper()
	p := &paidGateway{db: filepath.Join(t.TempDir(), "tickets.db"), roles: []directory.Role{directory.RoleExit}}
	for _, o := range opts {
		o(p)
	}
	var err error
	if p.vk, p.sks, p.ivks, err = credential.GenerateThresholdKeys(rand.Reader, 2, 3); err != nil {
		t.Fatal(err)
	}
	if p.user, err = credential.NewUserSecret(rand.Reader); err != nil {
		t.Fatal(err)
	}
	p.noise, _ = transport.GenerateKey()
	p.wg, _ = transport.GenerateKey()
	now := time.Now()
	p.clock.Store(&now)
	p.start(t)
	return p
}

func (p *paidGateway) start(t testing.TB) {
	t.Helper()
	lo := netip.MustParseAddr("127.0.0.1")
	gw, err := gateway.New(gateway.Config{
		ID: "paid", Roles: p.roles, NoiseKey: p.noise, WireGuardKey: p.wg,
		WireGuardListen: netip.AddrPortFrom(lo, 0), RegistrationListen: netip.AddrPortFrom(lo, 0),
		Payment: &gateway.PaymentConfig{
			Key: func() *credential.VerificationKey { return p.vk }, Database: p.db,
			Now: func() time.Time { return *p.clock.Load() }, Bandwidth: p.bandwidth,
		},
		Topology: func() *directory.Topology { return &directory.Topology{} },
		Mixnet:   p.mixnet,
		Exit:     p.exit,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.gw = gw
	t.Cleanup(func() { gw.Close() })
}

// book issues a book of typ from issuers 1 and 3 of the set vk, sks.
func issueBook(t testing.TB, user *credential.UserSecret, vk *credential.VerificationKey, sks []*credential.IssuerSecretKey, ivks []*credential.IssuerVerificationKey, typ credential.TicketType, n int) *credential.Ticketbook {
	t.Helper()
	req, pend, err := credential.NewTicketbookRequest(rand.Reader, user, typ, credential.ExpiryFor(time.Now()), n)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*credential.SignatureShares
	for _, i := range []int{0, 2} {
		part, err := credential.BlindSign(sks[i], req)
		if err != nil {
			t.Fatal(err)
		}
		sh, err := pend.Unblind(ivks[i], part)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	b, err := credential.Aggregate(rand.Reader, vk, shares)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (p *paidGateway) book(t testing.TB, typ credential.TicketType, n int) *credential.Ticketbook {
	return issueBook(t, p.user, p.vk, p.sks, p.ivks, typ, n)
}

func spend(t testing.TB, b *credential.Ticketbook, i int, gwKey transport.Key, at time.Time) ([]byte, credential.PayInfo) {
	t.Helper()
	pay, err := credential.NewPayInfo(rand.Reader, [32]byte(gwKey.Public()), at)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := b.Spend(rand.Reader, i, pay)
	if err != nil {
		t.Fatal(err)
	}
	return sp, pay
}

// register registers a fresh key in role with ticket and returns the grant or
// the refusal's code.
func (p *paidGateway) register(t testing.TB, role string, ticket []byte) (*registration.Result, string) {
	t.Helper()
	return registerAt(t, p.gw.RegistrationAddr().String(), p.noise.Public(), p.wg.Public(), role, ticket, transport.Key{})
}

func registerAt(t testing.TB, addr string, noise, wg transport.Key, role string, ticket []byte, key transport.Key) (*registration.Result, string) {
	t.Helper()
	if key.IsZero() {
		key, _ = transport.GenerateKey()
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := registration.Register(ctx, c, registration.Gateway{NoiseKey: noise, WireGuardKey: wg},
		registration.Params{Role: role, WireGuardKey: key, Ticket: ticket})
	if err != nil {
		var re *registration.Error
		if !errors.As(err, &re) {
			t.Fatalf("registration failed without a refusal: %v", err)
		}
		return nil, re.Code
	}
	return res, ""
}

func TestTicketAccepted(t *testing.T) {
	p := newPaidGateway(t)
	b := p.book(t, credential.FastExit, 2)
	sp, _ := spend(t, b, 0, p.noise, time.Now())
	res, code := p.register(t, registration.RoleExit, sp)
	if code != "" {
		t.Fatalf("valid ticket refused: %s", code)
	}
	if res.Bandwidth != int64(credential.FastExit.Bandwidth()) || res.TopUpAt != res.Bandwidth/4 {
		t.Fatalf("grant: bandwidth %d, top up at %d", res.Bandwidth, res.TopUpAt)
	}
	if st := p.gw.Stats(); st.TicketsAccepted != 1 || st.SerialsStored != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Every refusal of the issue's list, each with its own code.
func TestTicketRefusals(t *testing.T) {
	p := newPaidGateway(t)
	now := time.Now()
	exitBook := p.book(t, credential.FastExit, 8)
	other, _ := transport.GenerateKey()

	// A "ticket" from an issuer set the gateway does not trust.
	fvk, fsks, fivks, _ := credential.GenerateThresholdKeys(rand.Reader, 2, 3)
	forged := issueBook(t, p.user, fvk, fsks, fivks, credential.FastExit, 1)
	forgedSpend, _ := spend(t, forged, 0, p.noise, now)
	otherGW, _ := spend(t, exitBook, 0, other, now)
	stale, _ := spend(t, exitBook, 1, p.noise, now.Add(-10*time.Minute))
	wrongType, _ := spend(t, p.book(t, credential.FastEntry, 1), 0, p.noise, now)
	mixType, _ := spend(t, p.book(t, credential.MixnetExit, 1), 0, p.noise, now)

	cases := []struct {
		name   string
		ticket []byte
		want   string
	}{
		{"no ticket", nil, registration.CodePaymentRequired},
		{"malformed", []byte("not a ticket"), registration.CodeTicketInvalid},
		{"forged (other issuers)", forgedSpend, registration.CodeTicketInvalid},
		{"bound to another gateway", otherGW, registration.CodeTicketWrongGateway},
		{"stale timestamp", stale, registration.CodeTicketStale},
		{"entry ticket at the exit", wrongType, registration.CodeTicketWrongType},
		{"mixnet ticket at the exit", mixType, registration.CodeTicketWrongType},
	}
	for _, c := range cases {
		if _, code := p.register(t, registration.RoleExit, c.ticket); code != c.want {
			t.Errorf("%s: code %q, want %q", c.name, code, c.want)
		}
	}
	// A tampered valid spend: one flipped bit in the proof.
	good, _ := spend(t, exitBook, 2, p.noise, now)
	bad := append([]byte(nil), good...)
	bad[len(bad)-40] ^= 1
	if _, code := p.register(t, registration.RoleExit, bad); code != registration.CodeTicketInvalid {
		t.Errorf("tampered proof: %q", code)
	}

	// Replayed payment info: another ticket spent with the timestamp and
	// nonce of one already accepted.
	first, pay := spend(t, exitBook, 3, p.noise, now)
	if _, code := p.register(t, registration.RoleExit, first); code != "" {
		t.Fatalf("first spend refused: %s", code)
	}
	replay, err := exitBook.Spend(rand.Reader, 4, pay)
	if err != nil {
		t.Fatal(err)
	}
	if _, code := p.register(t, registration.RoleExit, replay); code != registration.CodeTicketReplayed {
		t.Errorf("replayed payment info: %q", code)
	}
	// The same spend again: a seen serial.
	if _, code := p.register(t, registration.RoleExit, first); code != registration.CodeTicketSpent {
		t.Errorf("replayed spend: %q", code)
	}

	// Expired: the gateway's clock three weeks on (timestamp fresh).
	later := now.Add(21 * 24 * time.Hour)
	p.clock.Store(&later)
	expired, _ := spend(t, exitBook, 5, p.noise, later)
	if _, code := p.register(t, registration.RoleExit, expired); code != registration.CodeTicketExpired {
		t.Errorf("expired: %q", code)
	}
	if st := p.gw.Stats(); st.Peers != 1 || st.TicketsAccepted != 1 {
		t.Errorf("after refusals: %d peers, %d tickets accepted; want 1 and 1", st.Peers, st.TicketsAccepted)
	}
}

// A ticket spent twice at one gateway, with new payment info the second time
// (a restored backup of the book), is refused — also after the gateway
// restarts, since the serials are in its database.
func TestDoubleSpendSameGatewayAcrossRestart(t *testing.T) {
	p := newPaidGateway(t)
	b := p.book(t, credential.FastExit, 1)
	backup, _ := b.MarshalBinary()
	sp, _ := spend(t, b, 0, p.noise, time.Now())
	if _, code := p.register(t, registration.RoleExit, sp); code != "" {
		t.Fatalf("first spend refused: %s", code)
	}
	again := func() string {
		var restored credential.Ticketbook
		if err := restored.UnmarshalBinary(backup); err != nil {
			t.Fatal(err)
		}
		sp2, _ := spend(t, &restored, 0, p.noise, time.Now())
		_, code := p.register(t, registration.RoleExit, sp2)
		return code
	}
	if code := again(); code != registration.CodeTicketSpent {
		t.Fatalf("double spend: %q, want %q", code, registration.CodeTicketSpent)
	}
	p.gw.Close()
	p.start(t)
	if code := again(); code != registration.CodeTicketSpent {
		t.Fatalf("double spend after a restart: %q, want %q", code, registration.CodeTicketSpent)
	}
	if st := p.gw.Stats(); st.SerialsStored != 1 {
		t.Fatalf("serials after restart: %d", st.SerialsStored)
	}
}

// A registration of a known key with a new ticket tops up the same peer; one
// without a ticket is admitted only while allowance is left.
func TestTopUpExtendsPeer(t *testing.T) {
	p := newPaidGateway(t)
	b := p.book(t, credential.FastExit, 2)
	key, _ := transport.GenerateKey()
	addr := p.gw.RegistrationAddr().String()
	sp1, _ := spend(t, b, 0, p.noise, time.Now())
	r1, code := registerAt(t, addr, p.noise.Public(), p.wg.Public(), registration.RoleExit, sp1, key)
	if code != "" {
		t.Fatal(code)
	}
	sp2, _ := spend(t, b, 1, p.noise, time.Now())
	r2, code := registerAt(t, addr, p.noise.Public(), p.wg.Public(), registration.RoleExit, sp2, key)
	if code != "" {
		t.Fatal(code)
	}
	if r2.Bandwidth != 2*r1.Bandwidth || r2.Addresses[0] != r1.Addresses[0] || r2.PresharedKey == r1.PresharedKey {
		t.Fatalf("top-up: bandwidth %d → %d, addresses %v → %v", r1.Bandwidth, r2.Bandwidth, r1.Addresses, r2.Addresses)
	}
	r3, code := registerAt(t, addr, p.noise.Public(), p.wg.Public(), registration.RoleExit, nil, key)
	if code != "" || r3.Bandwidth != r2.Bandwidth {
		t.Fatalf("re-registration without a ticket while allowance is left: %q %d", code, r3.Bandwidth)
	}
	if p.gw.Stats().Peers != 1 {
		t.Fatal("a top-up made a second peer")
	}
}
