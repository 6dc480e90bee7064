// Command nym-node runs one node of the network — a directory, a gateway, a
// mix node or a credential issuer — or, as `nym-node probe`, checks every
// mixnet route; `nym-node issuer-keygen` makes the issuers' keys and
// `nym-node issuer-grant` gives an account tickets at an issuer.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nymvpn/nymvpn/node"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/gateway"
	"github.com/nymvpn/nymvpn/node/issuer"
	"github.com/nymvpn/nymvpn/node/mixnode"
	"github.com/nymvpn/nymvpn/version"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "probe":
			os.Exit(probe(os.Args[2:]))
		case "issuer-keygen":
			os.Exit(issuerKeygen(os.Args[2:]))
		case "issuer-grant":
			os.Exit(issuerGrant(os.Args[2:]))
		}
	}
	role := flag.String("role", "", "directory, gateway, mixnode or issuer")
	dataDir := flag.String("data-dir", "", "where the node keeps its keys (created 0700)")
	listen := flag.String("listen", "127.0.0.1:8080", "directory, issuer: HTTP listen address")
	open := flag.Bool("open", false, "directory: accept announcements from any node (test networks)")
	epochLength := flag.Duration("epoch-length", directory.DefaultEpochLength, "directory: epoch length (mix layers and Sphinx keys change every epoch)")
	id := flag.String("id", "", "gateway, mixnode: node id, e.g. gw-de-1")
	country := flag.String("country", "", "gateway, mixnode: ISO country code, e.g. DE")
	mix := flag.String("mix", "", "gateway, mixnode: Sphinx TCP listen address (mixnode default 127.0.0.1:1789; a gateway without it takes no mixnet traffic)")
	mixClient := flag.String("mix-client", "", "entry gateway with --mix: TCP listen address for mixnet clients")
	metricsAddr := flag.String("metrics", "", "gateway, mixnode: serve Prometheus metrics at http://ADDR/metrics")
	gwRoles := flag.String("gateway-roles", "entry,exit", "gateway: entry, exit or both")
	dirURL := flag.String("directory", "", "gateway, mixnode: directory URL with its key (?key=...)")
	wg := flag.String("wireguard", "127.0.0.1:51822", "gateway: WireGuard UDP listen address")
	reg := flag.String("registration", "127.0.0.1:51821", "gateway: registration TCP listen address")
	announce := flag.String("announce", "", "gateway, mixnode: address to publish if not the listen address")
	freePass := flag.Bool("free-pass", false, "gateway: admit clients without a ticket (development only); without it the gateway takes zk-nym tickets of the directory's issuers")
	ticketBytes := flag.Int64("ticket-bandwidth", 0, "gateway: bytes one ticket buys (0: the types' own, 500/500/200/100 MB)")
	outbound := flag.String("outbound-addr", "", "gateway: local address exit traffic leaves from")
	dnsUp := flag.String("dns-upstream", "", "gateway: resolver for exit clients' DNS, ip:port")
	allowLoop := flag.Bool("exit-allow-loopback", false, "gateway: let exit traffic reach this host's loopback (local test networks only)")
	exitMode := flag.String("exit-mode", "userspace", "gateway: how exit traffic leaves: userspace (re-originated from the node's sockets, no root) or kernel (Linux, root: a TUN with nftables masquerade)")
	verbose := flag.Bool("v", false, "debug logging")
	showVersion := flag.Bool("version", false, "print the version")
	flag.Parse()
	if *showVersion {
		fmt.Println("nym-node", version.String())
		return
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *dataDir == "" {
		fatal("--data-dir is required: the node keeps its keys there")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch *role {
	case "directory":
		err = node.RunDirectory(ctx, node.DirectoryConfig{Listen: *listen, DataDir: *dataDir, Open: *open, EpochLength: *epochLength, Logger: log,
			Ready: func(url string) { fmt.Println("directory:", url) }})
	case "gateway":
		cfg := node.GatewayConfig{ID: *id, Country: strings.ToUpper(*country), DirectoryURL: *dirURL, DataDir: *dataDir,
			FreePass: *freePass, TicketBandwidth: *ticketBytes, Logger: log, Exit: gateway.ExitPolicy{AllowLoopback: *allowLoop}}
		for _, r := range strings.Split(*gwRoles, ",") {
			cfg.Roles = append(cfg.Roles, directory.Role(strings.TrimSpace(r)))
		}
		cfg.WireGuard = mustAddrPort("--wireguard", *wg)
		cfg.Registration = mustAddrPort("--registration", *reg)
		cfg.Metrics = *metricsAddr
		if *mix != "" {
			cfg.MixListen = mustAddrPort("--mix", *mix)
		}
		if *mixClient != "" {
			if *mix == "" {
				fatal("--mix-client needs --mix: a gateway that takes mixnet clients is a Sphinx hop too")
			}
			cfg.MixClientListen = mustAddrPort("--mix-client", *mixClient)
		}
		if *announce != "" {
			cfg.Announce = mustAddr("--announce", *announce)
		}
		if *outbound != "" {
			cfg.Exit.OutboundAddr = mustAddr("--outbound-addr", *outbound)
		}
		switch *exitMode {
		case "userspace":
		case "kernel":
			cfg.Exit.Kernel = true
		default:
			fatal("unknown --exit-mode %q: want userspace or kernel", *exitMode)
		}
		if *dnsUp != "" {
			cfg.Exit.DNSUpstream = mustAddrPort("--dns-upstream", *dnsUp)
		}
		if cfg.DirectoryURL == "" || cfg.ID == "" || cfg.Country == "" {
			fatal("a gateway needs --directory, --id and --country")
		}
		err = node.RunGateway(ctx, cfg)
	case "mixnode":
		cfg := node.MixnodeConfig{ID: *id, Country: strings.ToUpper(*country), DirectoryURL: *dirURL, DataDir: *dataDir,
			Metrics: *metricsAddr, Logger: log, Ready: func(m *mixnode.Node) { fmt.Println("mixnode: sphinx", m.Addr()) }}
		if *mix == "" {
			*mix = "127.0.0.1:1789"
		}
		cfg.Listen = mustAddrPort("--mix", *mix)
		if *announce != "" {
			cfg.Announce = mustAddr("--announce", *announce)
		}
		if cfg.DirectoryURL == "" || cfg.ID == "" || cfg.Country == "" {
			fatal("a mix node needs --directory, --id and --country")
		}
		err = node.RunMixnode(ctx, cfg)
	case "issuer":
		cfg := node.IssuerConfig{ID: *id, Country: strings.ToUpper(*country), DirectoryURL: *dirURL, DataDir: *dataDir, Logger: log,
			Listen: mustAddrPort("--listen", *listen),
			Ready:  func(_ *issuer.Issuer, url string) { fmt.Println("issuer:", url) }}
		if *announce != "" {
			cfg.Announce = mustAddr("--announce", *announce)
		}
		if cfg.DirectoryURL == "" || cfg.ID == "" || cfg.Country == "" {
			fatal("an issuer needs --directory, --id and --country (and its key in --data-dir, from nym-node issuer-keygen)")
		}
		err = node.RunIssuer(ctx, cfg)
	case "":
		fatal("--role is required: directory, gateway, mixnode or issuer (or a command: nym-node probe|issuer-keygen|issuer-grant)")
	default:
		fatal("unknown --role %q: want directory, gateway, mixnode or issuer", *role)
	}
	if err != nil {
		fatal("%v", err)
	}
}

func mustAddrPort(flag, s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		fatal("%s: %v", flag, err)
	}
	return ap
}

func mustAddr(flag, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		fatal("%s: %v", flag, err)
	}
	return a
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "nym-node: "+f+"\n", a...)
	os.Exit(1)
}
