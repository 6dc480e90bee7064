package mixnet

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/nymvpn/nymvpn/node/directory"
)

// TestReachMovedEntry: the first dial's addresses are the caller's to allow;
// the same addresses again call nothing; an entry the directory moved is
// let through (Config.Reach) before it is dialled, and a refusal stops the
// dial with the reason.
func TestReachMovedEntry(t *testing.T) {
	var reached []directory.Node
	refuse := false
	tun := &Tunnel{log: slog.New(slog.DiscardHandler), cfg: Config{Reach: func(ctx context.Context, n directory.Node) error {
		if refuse {
			return errors.New("kill switch: attempt no longer current")
		}
		reached = append(reached, n)
		return nil
	}}}
	first := directory.Node{ID: "entry", MixClientAddr: "127.0.0.1:1000", RegistrationAddr: "127.0.0.1:1001"}
	ctx := context.Background()
	for range 2 {
		if err := tun.reach(ctx, first); err != nil {
			t.Fatal(err)
		}
	}
	if len(reached) != 0 {
		t.Fatalf("Reach called %d times for the entry's first addresses, want 0", len(reached))
	}
	moved := first
	moved.MixClientAddr = "127.0.0.1:2000"
	if err := tun.reach(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if len(reached) != 1 || reached[0].MixClientAddr != moved.MixClientAddr {
		t.Fatalf("Reach got %+v, want the moved entry once", reached)
	}
	if err := tun.reach(ctx, moved); err != nil || len(reached) != 1 {
		t.Fatalf("the same moved addresses again: err %v, %d calls, want none more", err, len(reached))
	}
	refuse = true
	again := moved
	again.RegistrationAddr = "127.0.0.1:2001"
	if err := tun.reach(ctx, again); err == nil {
		t.Fatal("a refused Reach let the dial go on")
	}
	refuse = false
	if err := tun.reach(ctx, again); err != nil || len(reached) != 2 {
		t.Fatalf("retry after a refusal: err %v, %d calls, want 2", err, len(reached))
	}
}
