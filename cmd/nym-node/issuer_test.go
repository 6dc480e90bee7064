package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
)

// TestIssuerProcesses: issuer-keygen, three issuer processes (2 of 3), an
// account given tickets with issuer-grant, a gateway without --free-pass that
// finds the issuers and pins their key, a wallet that buys a book and pays
// the gateway — and buys another with one issuer down.
func TestIssuerProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir, bin := buildNymNode(t)
	keys := filepath.Join(dir, "keys")
	if out, err := exec.Command(bin, "issuer-keygen", "--t", "2", "--n", "3", "--out", keys).CombinedOutput(); err != nil {
		t.Fatalf("issuer-keygen: %v\n%s", err, out)
	}
	d := run(t, bin, "--role", "directory", "--data-dir", filepath.Join(dir, "dir"), "--listen", "127.0.0.1:0", "--open")
	dirURL := strings.TrimSpace(strings.TrimPrefix(d.waitLine(t, "directory:"), "directory:"))
	var issuers []*proc
	var urls []string
	for i := 1; i <= 3; i++ {
		p := run(t, bin, "--role", "issuer", "--data-dir", filepath.Join(keys, fmt.Sprintf("issuer-%d", i)), "--id", fmt.Sprintf("issuer-%d", i),
			"--country", "CH", "--directory", dirURL, "--listen", "127.0.0.1:0")
		urls = append(urls, strings.TrimSpace(strings.TrimPrefix(p.waitLine(t, "issuer:"), "issuer:")))
		issuers = append(issuers, p)
	}
	gwDir := filepath.Join(dir, "gw")
	run(t, bin, "--role", "gateway", "--data-dir", gwDir, "--id", "exit-1", "--country", "DE",
		"--gateway-roles", "exit", "--directory", dirURL, "--wireguard", "127.0.0.1:0", "--registration", "127.0.0.1:0")

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	w, err := wallet.Open(wallet.Config{Dir: filepath.Join(dir, "wallet"), BookSize: 5, Keep: []credential.TicketType{}, Topology: wallet.FromDirectory(dirURL, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.CreateAccount(); err != nil {
		t.Fatal(err)
	}
	acct := base64.StdEncoding.EncodeToString(w.Account().ID())
	for i, u := range urls {
		tok := filepath.Join(keys, fmt.Sprintf("issuer-%d", i+1), "admin.token")
		if out, err := exec.Command(bin, "issuer-grant", "--issuer", u, "--token-file", tok, "--account", acct, "--tickets", "20").CombinedOutput(); err != nil {
			t.Fatalf("issuer-grant: %v\n%s", err, out)
		}
	}
	// Ready: the directory lists the three issuers and the gateway, and the
	// gateway has pinned the issuers' key.
	var gw *directory.Node
	deadline := time.Now().Add(60 * time.Second)
	for {
		top, err := (&directory.Client{URL: dirURL}).Fetch(ctx)
		if err == nil && len(top.WithRole(directory.RoleIssuer)) == 3 {
			gw, _ = top.Node("exit-1")
		}
		if _, serr := os.Stat(filepath.Join(gwDir, "issuers.key")); gw != nil && serr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issuers or gateway not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pay := func() error {
		tk, err := w.Ticket(ctx, registration.RoleExit, *gw)
		if err != nil {
			return err
		}
		key, _ := transport.GenerateKey()
		c, err := net.Dial("tcp", gw.RegistrationAddr)
		if err != nil {
			return err
		}
		_, err = registration.Register(ctx, c, registration.Gateway{NoiseKey: transport.Key(gw.NoiseKey), WireGuardKey: transport.Key(gw.WireGuardKey)},
			registration.Params{Role: registration.RoleExit, WireGuardKey: key, Ticket: tk})
		return err
	}
	if err := pay(); err != nil {
		t.Fatalf("paying the gateway: %v", err)
	}
	// n−t issuers down: a new book still comes from the other two.
	issuers[0].cmd.Process.Kill()
	issuers[0].cmd.Wait()
	if err := w.Refill(ctx, credential.FastExit); err != nil {
		t.Fatalf("refill with one issuer down: %v", err)
	}
	if c := w.Counts()[credential.FastExit]; c != 9 {
		t.Fatalf("fast-exit tickets left %d, want 9", c)
	}
	if err := pay(); err != nil {
		t.Fatalf("paying with one issuer down: %v", err)
	}
}
