// Command nym-localnet runs the whole nym network on this machine, on loopback.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nymvpn/nymvpn/node/localnet"
)

func main() {
	cfg := localnet.DefaultConfig()
	dir := flag.String("dir", "", "write DIR/localnet.json with every node and the directory URL")
	host := flag.String("host", cfg.Host.String(), "first loopback address; nodes take the following ones")
	port := flag.Uint("directory-port", 0, "directory HTTP port (0: any free port)")
	epoch := flag.Duration("epoch", localnet.DefaultEpochLength, "epoch length: Sphinx keys rotate and mix layers are reassigned every epoch")
	perLayer := flag.Int("mixnodes-per-layer", 2, "mix nodes in each of the 3 layers")
	freePass := flag.Bool("free-pass", false, "gateways admit clients without tickets (development switch)")
	ticketBytes := flag.Int64("ticket-bandwidth", 0, "bytes one ticket buys (0: the types' own, 500/500/200/100 MB)")
	verbose := flag.Bool("v", false, "debug logging")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var err error
	if cfg.Host, err = netip.ParseAddr(*host); err != nil {
		fatal("--host: %v", err)
	}
	if *port > 65535 {
		fatal("--directory-port %d is not a port", *port)
	}
	cfg.DirectoryPort = uint16(*port)
	if *epoch < time.Second {
		fatal("--epoch %v: want at least 1s", *epoch)
	}
	cfg.EpochLength = *epoch
	if *perLayer < 1 {
		fatal("--mixnodes-per-layer %d: want at least 1", *perLayer)
	}
	cfg.MixnodesPerLayer = *perLayer
	cfg.FreePass = *freePass
	cfg.TicketBandwidth = *ticketBytes
	// With --dir the issuers, their ledgers and the demo account live there
	// (and are reused by the next run); without it in a temporary directory.
	cfg.Dir = *dir

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	n, err := localnet.Start(ctx, cfg)
	if err != nil {
		fatal("%v", err)
	}
	if *dir != "" {
		path, err := n.WriteManifest(*dir)
		if err != nil {
			n.Close()
			fatal("%v", err)
		}
		fmt.Printf("manifest: %s\n", path)
	}
	fmt.Printf("directory: %s\n", n.DirectoryURL)
	fmt.Printf("web:       %s (resolvable through an exit only)\n", n.WebURL)
	for _, spec := range localnet.Gateways {
		g := n.Gateways[spec.ID]
		node := g.Node()
		fmt.Printf("%-11s %s %-5s wireguard %s registration %s sphinx %s", spec.ID, spec.Country, spec.Role, g.WireGuardAddr(), g.RegistrationAddr(), node.MixAddr)
		if node.MixClientAddr != "" {
			fmt.Printf(" mixnet clients %s", node.MixClientAddr)
		}
		fmt.Println()
	}
	topo := n.Directory.Topology()
	for _, id := range n.MixnodeIDs {
		layer := 0
		if node, ok := topo.Node(id); ok {
			layer = node.Layer
		}
		fmt.Printf("%-11s layer %d (epoch %d) sphinx %s\n", id, layer, topo.Epoch, n.Mixnodes[id].Addr())
	}
	for i, u := range n.IssuerURLs {
		fmt.Printf("issuer-%d    %s (%d of %d sign)\n", i+1, u, localnet.IssuerThreshold, localnet.IssuerCount)
	}
	pay := "gateways take zk-nym tickets; the demo account's wallet is " + n.WalletDir + " (NYMVPN_WALLET_DIR=" + n.WalletDir + " nymvpn proxy ...)"
	if cfg.FreePass {
		pay = "gateways run with --free-pass (no tickets needed)"
	}
	fmt.Printf("ready in %v; %s; Ctrl-C stops\n", time.Since(start).Round(time.Millisecond), pay)
	<-ctx.Done()
	fmt.Println("stopping")
	if err := n.Close(); err != nil {
		fatal("stop: %v", err)
	}
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "nym-localnet: "+f+"\n", a...)
	os.Exit(1)
}
