package localnet

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
)

func registerWith(t *testing.T, gw *directory.Node, role string, ticket []byte) error {
	t.Helper()
	key, _ := transport.GenerateKey()
	c, err := net.Dial("tcp", gw.RegistrationAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = registration.Register(ctx, c, registration.Gateway{NoiseKey: transport.Key(gw.NoiseKey), WireGuardKey: transport.Key(gw.WireGuardKey)},
		registration.Params{Role: role, WireGuardKey: key, Ticket: ticket})
	return err
}

// A user restores an old backup of a wallet and spends the same ticket at a
// second entry gateway. Neither gateway can tell, but both report their spends
// to the issuers, which find the serial twice and name the account.
func TestDoubleSpendAcrossGatewaysIdentified(t *testing.T) {
	n := startNet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topo := n.Directory.Topology()
	cfg := func(dir string) wallet.Config {
		return wallet.Config{Dir: dir, BookSize: 5, Keep: []credential.TicketType{},
			Topology: func(context.Context) (*directory.Topology, error) { return n.Directory.Topology(), nil }}
	}
	dirA := filepath.Join(t.TempDir(), "a")
	wA, err := wallet.Open(cfg(dirA))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wA.CreateAccount(); err != nil {
		t.Fatal(err)
	}
	acct := wA.Account().ID()
	// No allowance yet: the issuers refuse.
	if err := wA.Refill(ctx, credential.FastEntry); err == nil {
		t.Fatal("issuers signed for an account without allowance")
	}
	for _, iss := range n.Issuers {
		if _, err := iss.AddAllowance(acct, 10); err != nil {
			t.Fatal(err)
		}
	}
	if err := wA.Refill(ctx, credential.FastEntry); err != nil {
		t.Fatal(err)
	}
	// The backup: a copy of the wallet directory.
	dirB := filepath.Join(t.TempDir(), "b")
	copyDir(t, dirA, dirB)
	wB, err := wallet.Open(cfg(dirB))
	if err != nil {
		t.Fatal(err)
	}
	de, _ := topo.Node("entry-de-1")
	ch, _ := topo.Node("entry-ch-1")
	ta, err := wA.Ticket(ctx, registration.RoleEntry, *de)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := wB.Ticket(ctx, registration.RoleEntry, *ch)
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := credential.ParseSpend(ta)
	sb, _ := credential.ParseSpend(tb)
	if sa.Serial() != sb.Serial() {
		t.Fatal("the restored book spent another ticket")
	}
	if err := registerWith(t, de, registration.RoleEntry, ta); err != nil {
		t.Fatal(err)
	}
	if err := registerWith(t, ch, registration.RoleEntry, tb); err != nil {
		t.Fatalf("second gateway (which cannot know): %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		found := 0
		for id, iss := range n.Issuers {
			ds, err := iss.DoubleSpends()
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				if !bytes.Equal(d.Account, acct) {
					t.Fatalf("%s names account %x, want %x", id, d.Account, acct)
				}
				found++
			}
		}
		if found >= IssuerThreshold {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issuers identified the double spender %d times, want at least %d", found, IssuerThreshold)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
