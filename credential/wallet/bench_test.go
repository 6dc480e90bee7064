package wallet_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/node/directory"
)

// BenchmarkFetchBook: one 50-ticket book from 3 issuers (2 of 3) over
// loopback HTTP, wall time: the client's request, three issuers' blind
// signing in parallel (on the same 2 cores), unblinding, aggregation with the
// batched check, and the crash-safe write of the book.
func BenchmarkFetchBook(b *testing.B) {
	topo, iss := issuers(b)
	w, err := wallet.Open(wallet.Config{Dir: filepath.Join(b.TempDir(), "w"), Keep: []credential.TicketType{},
		Topology: func(context.Context) (*directory.Topology, error) { return topo, nil }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.CreateAccount(); err != nil {
		b.Fatal(err)
	}
	for _, i := range iss {
		i.AddAllowance(w.Account().ID(), 1<<40)
	}
	for b.Loop() {
		if err := w.Refill(context.Background(), credential.FastEntry); err != nil {
			b.Fatal(err)
		}
	}
}
