package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nymvpn/nymvpn/node/issuer"
)

// issuerKeygen runs `nym-node issuer-keygen`: the trusted dealer.
func issuerKeygen(args []string) int {
	fs := flag.NewFlagSet("nym-node issuer-keygen", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: nym-node issuer-keygen --t T --n N --out DIR\n\nMakes a threshold key for N issuers, any T of which sign a ticketbook (a trusted dealer:\nthis process sees the whole key and keeps nothing). Writes DIR/issuer-<i>/issuer-key.json (0600),\nthe data directory of issuer i, and DIR/group.key (public). Move each issuer's directory to its host.")
		fs.PrintDefaults()
	}
	t := fs.Int("t", 2, "threshold: issuers needed to sign")
	n := fs.Int("n", 3, "number of issuers")
	out := fs.String("out", "", "output directory")
	fs.Parse(args)
	if *out == "" {
		fs.Usage()
		return 2
	}
	dirs, err := issuer.Keygen(rand.Reader, *out, *t, *n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nym-node issuer-keygen: %v\n", err)
		return 1
	}
	for _, d := range dirs {
		fmt.Printf("issuer key: %s\n", filepath.Join(d, issuer.KeyFileName))
	}
	fmt.Printf("group key:  %s (%d of %d)\n", filepath.Join(*out, issuer.GroupKeyFileName), *t, *n)
	return 0
}

// issuerGrant runs `nym-node issuer-grant`: gives an account tickets at one
// issuer through its admin API.
func issuerGrant(args []string) int {
	fs := flag.NewFlagSet("nym-node issuer-grant", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: nym-node issuer-grant --issuer URL --token-file DATA_DIR/admin.token --account KEY --tickets N\n\nGives an account N more tickets at one issuer (repeat for every issuer). KEY is the account's\npublic key in base64 (what the wallet shows as the account id).")
		fs.PrintDefaults()
	}
	url := fs.String("issuer", "", "issuer base URL, e.g. http://127.0.0.1:8090")
	tokenFile := fs.String("token-file", "", "the issuer's admin token file")
	account := fs.String("account", "", "account public key (base64)")
	tickets := fs.Int64("tickets", 0, "tickets to add")
	fs.Parse(args)
	if *url == "" || *tokenFile == "" || *account == "" || *tickets <= 0 {
		fs.Usage()
		return 2
	}
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nym-node issuer-grant: %v\n", err)
		return 1
	}
	s := strings.TrimSpace(*account)
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil || len(key) != ed25519.PublicKeySize {
		fmt.Fprintln(os.Stderr, "nym-node issuer-grant: --account: want a 32-byte key in base64")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := issuer.GrantAllowance(ctx, nil, strings.TrimRight(*url, "/"), string(tok), key, *tickets)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nym-node issuer-grant: %v\n", err)
		return 1
	}
	fmt.Printf("account %s: %d tickets left, %d issued\n", s, a.Allowance, a.Issued)
	return 0
}
