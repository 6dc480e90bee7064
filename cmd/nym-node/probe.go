package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/mixnet"
)

// probeBookSize is the ticketbook a probe's temporary wallet fetches: a
// probe spends one mixnet-entry ticket, the rest is lost with the wallet.
const probeBookSize = 4

// probe runs `nym-node probe` and returns the exit status: 0 if every route
// brought at least one packet back, 1 if a route lost everything, 2 if the
// probe could not run.
func probe(args []string) int {
	fs := flag.NewFlagSet("nym-node probe", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: nym-node probe --directory URL [--account FILE] [flags]\n\nSends loop packets through an entry gateway over every mix (L1 → L2 → L3 → the same gateway)\nand reports sent, received, loss and latency per route. Exit status 1 if a route loses every packet.\nAn entry gateway without --free-pass admits only paying clients: --account pays it with a\nmixnet-entry ticket of that account, fetched from the issuers the directory lists.")
		fs.PrintDefaults()
	}
	dirURL := fs.String("directory", "", "directory URL with its key (?key=...)")
	gw := fs.String("gateway", "", "entry gateway id (default: the first that takes mixnet clients)")
	packets := fs.Int("packets", mixnet.DefaultProbePackets, "packets per route")
	routes := fs.String("routes", string(mixnet.RoutesAuto), "all (every L1×L2×L3), cover (every mix at least once per layer), or auto (all up to 64 routes)")
	meanDelay := fs.Duration("mean-delay", 0, "mean of the exponential delay asked of each mix (0: none)")
	interval := fs.Duration("interval", 0, "pause between two sends")
	timeout := fs.Duration("timeout", mixnet.DefaultProbeTimeout, "how long to wait for packets after the last send")
	account := fs.String("account", "", "file with the recovery phrase of the account that pays the entry gateway (- reads standard input; the local network's: DIR/demo-wallet/account)")
	walletDir := fs.String("wallet-dir", "", "wallet directory (0700) for the account's ticketbooks, kept between runs; default a temporary one. Without --account, the account stored there pays")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	verbose := fs.Bool("v", false, "debug logging")
	fs.Parse(args)
	if *dirURL == "" {
		fmt.Fprintln(os.Stderr, "nym-node probe: --directory is required")
		fs.Usage()
		return 2
	}
	switch mixnet.RouteSet(*routes) {
	case mixnet.RoutesAll, mixnet.RoutesCover, mixnet.RoutesAuto:
	default:
		fmt.Fprintf(os.Stderr, "nym-node probe: --routes %q: want all, cover or auto\n", *routes)
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := mixnet.ProbeConfig{
		DirectoryURL: *dirURL, Gateway: *gw, Packets: *packets, Routes: mixnet.RouteSet(*routes),
		MeanDelay: *meanDelay, Interval: *interval, Timeout: *timeout, Logger: log,
	}
	if *account != "" || *walletDir != "" {
		w, cleanup, err := probeWallet(*dirURL, *account, *walletDir, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nym-node probe: %v\n", err)
			return 2
		}
		defer cleanup()
		cfg.Ticket = w.Ticket
	}
	rep, err := mixnet.Probe(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nym-node probe: %v\n", err)
		switch {
		case errors.Is(err, mixnet.ErrPaymentRequired):
			fmt.Fprintln(os.Stderr, "nym-node probe: the entry gateway admits only paying mixnet clients: pass --account FILE, a file with the recovery phrase of an account with tickets (on nym-localnet: --account DIR/demo-wallet/account)")
		case wallet.NoAllowance(err):
			fmt.Fprintln(os.Stderr, "nym-node probe: the account has no allowance left at the issuers (nym-node issuer-grant gives it one)")
		}
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.WriteText(os.Stdout)
	}
	if dead := rep.Dead(); len(dead) > 0 {
		for _, r := range dead {
			fmt.Fprintf(os.Stderr, "nym-node probe: route %s → %s → %s lost all %d packets\n", r.Mixes[0], r.Mixes[1], r.Mixes[2], r.Sent)
		}
		return 1
	}
	return 0
}

// probeWallet opens the wallet that pays the probe's entry gateway: dir, or
// a temporary directory removed by cleanup, with the account of the phrase
// in accountFile (if given) imported.
func probeWallet(dirURL, accountFile, dir string, log *slog.Logger) (*wallet.Wallet, func(), error) {
	var phrase string
	if accountFile != "" {
		var err error
		if phrase, err = readPhrase(accountFile, log); err != nil {
			return nil, nil, err
		}
	}
	cfg := wallet.Config{Dir: dir, Topology: wallet.FromDirectory(dirURL, nil), Keep: []credential.TicketType{}, Logger: log}
	cleanup := func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "nym-node-probe-wallet-") // 0700
		if err != nil {
			return nil, nil, fmt.Errorf("temporary wallet: %w", err)
		}
		cleanup = func() {
			if err := os.RemoveAll(tmp); err != nil {
				log.Warn("removing the temporary wallet", "dir", tmp, "err", err)
			}
		}
		cfg.Dir, cfg.BookSize = tmp, probeBookSize
	}
	w, err := openProbeWallet(cfg, accountFile, phrase)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	log.Info("paying the entry gateway with the account", "account", base64.StdEncoding.EncodeToString(w.Account().ID()), "wallet", cfg.Dir)
	return w, cleanup, nil
}

func openProbeWallet(cfg wallet.Config, accountFile, phrase string) (*wallet.Wallet, error) {
	w, err := wallet.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("wallet %s: %w", cfg.Dir, err)
	}
	if phrase != "" {
		if err := w.ImportAccount(phrase); errors.Is(err, wallet.ErrBadPhrase) {
			// Not err itself: it may quote a word of the file.
			return nil, fmt.Errorf("%s does not hold a valid recovery phrase (24 BIP39 English words): %w", accountFile, wallet.ErrBadPhrase)
		} else if err != nil {
			return nil, fmt.Errorf("wallet %s: import the account of %s: %w", cfg.Dir, accountFile, err)
		}
	}
	if w.Account() == nil {
		return nil, fmt.Errorf("the wallet in %s has no account: pass --account FILE", cfg.Dir)
	}
	return w, nil
}

// readPhrase reads a recovery phrase from path ("-": standard input).
func readPhrase(path string, log *slog.Logger) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
	} else {
		if st, serr := os.Stat(path); serr == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("the recovery phrase file is readable by others than its owner (chmod 600)", "file", path, "mode", st.Mode().Perm())
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("--account: %w", err)
	}
	phrase := strings.TrimSpace(string(b))
	if phrase == "" {
		return "", fmt.Errorf("--account %s: empty", path)
	}
	return phrase, nil
}
