package wallet_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/node/directory"
)

// TestNotNowKeepsTheIssuersVerdict: once the issuers said the account has
// no allowance, a fetch that could not even try them (its dialer says
// ErrNotNow, as the daemon's does while the kill switch holds them back)
// leaves that verdict as LastRefillError; any other failure replaces it.
func TestNotNowKeepsTheIssuersVerdict(t *testing.T) {
	topo, _ := issuers(t)
	var blocked, down atomic.Bool
	var d net.Dialer
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if blocked.Load() {
			return nil, fmt.Errorf("dial %s: %w: a kill switch", addr, wallet.ErrNotNow)
		}
		if down.Load() {
			return nil, fmt.Errorf("dial %s: connection refused", addr)
		}
		return d.DialContext(ctx, network, addr)
	}}}
	w := accountWallet(t, topo, hc)
	ctx := context.Background()
	if err := w.Refill(ctx, credential.FastEntry); !wallet.NoAllowance(err) {
		t.Fatalf("refill for an account without allowance: %v", err)
	}
	blocked.Store(true)
	if err := w.Refill(ctx, credential.FastEntry); err == nil || wallet.NoAllowance(err) {
		t.Fatalf("refill with the issuers held back: %v, want a dial error", err)
	}
	if err := w.LastRefillError(); !wallet.NoAllowance(err) {
		t.Fatalf("LastRefillError after a fetch that could not try: %v, want the issuers' no-allowance verdict", err)
	}
	// A failure that is not ErrNotNow (issuers down) does replace it.
	blocked.Store(false)
	down.Store(true)
	if err := w.Refill(ctx, credential.FastEntry); err == nil {
		t.Fatal("refill from issuers that are down succeeded")
	}
	if err := w.LastRefillError(); err == nil || wallet.NoAllowance(err) {
		t.Fatalf("LastRefillError after the issuers were down: %v, want that failure", err)
	}
}

// TestLateFailureKeepsNewerVerdict: a fetch that started first (its
// issuers' dials hang, as through a dying tunnel) and fails after a newer
// fetch got the issuers' no-allowance answer leaves that answer as
// LastRefillError.
func TestLateFailureKeepsNewerVerdict(t *testing.T) {
	topo, _ := issuers(t)
	var hung atomic.Int32
	waiting, release := make(chan struct{}, 3), make(chan struct{})
	var d net.Dialer
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if hung.Add(1) <= 3 { // the first fetch's three issuers
			waiting <- struct{}{}
			<-release
			return nil, fmt.Errorf("dial %s: i/o timeout", addr)
		}
		return d.DialContext(ctx, network, addr)
	}}}
	w := accountWallet(t, topo, hc)
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- w.Refill(ctx, credential.FastExit) }()
	for range 3 {
		<-waiting
	}
	if err := w.Refill(ctx, credential.FastEntry); !wallet.NoAllowance(err) {
		t.Fatalf("the newer fetch: %v, want no allowance", err)
	}
	close(release)
	if err := <-first; err == nil || wallet.NoAllowance(err) {
		t.Fatalf("the first fetch: %v, want its dial failure", err)
	}
	if err := w.LastRefillError(); !wallet.NoAllowance(err) {
		t.Fatalf("LastRefillError: %v, want the newer fetch's no-allowance verdict", err)
	}
}

// accountWallet opens a wallet of the issuers in topo that reaches them
// with hc, and creates its account.
func accountWallet(t *testing.T, topo *directory.Topology, hc *http.Client) *wallet.Wallet {
	t.Helper()
	w, err := wallet.Open(wallet.Config{Dir: filepath.Join(t.TempDir(), "wallet"), BookSize: 5, Keep: []credential.TicketType{},
		HTTP:     hc,
		Topology: func(context.Context) (*directory.Topology, error) { return topo, nil }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.CreateAccount(); err != nil {
		t.Fatal(err)
	}
	return w
}
