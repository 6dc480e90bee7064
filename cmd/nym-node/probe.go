package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nymvpn/nymvpn/mixnet"
)

// probe runs `nym-node probe` and returns the exit status: 0 if every route
// brought at least one packet back, 1 if a route lost everything, 2 if the
// probe could not run.
func probe(args []string) int {
	fs := flag.NewFlagSet("nym-node probe", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: nym-node probe --directory URL [flags]\n\nSends loop packets through an entry gateway over every mix (L1 → L2 → L3 → the same gateway)\nand reports sent, received, loss and latency per route. Exit status 1 if a route loses every packet.")
		fs.PrintDefaults()
	}
	dirURL := fs.String("directory", "", "directory URL with its key (?key=...)")
	gw := fs.String("gateway", "", "entry gateway id (default: the first that takes mixnet clients)")
	packets := fs.Int("packets", mixnet.DefaultProbePackets, "packets per route")
	routes := fs.String("routes", string(mixnet.RoutesAuto), "all (every L1×L2×L3), cover (every mix at least once per layer), or auto (all up to 64 routes)")
	meanDelay := fs.Duration("mean-delay", 0, "mean of the exponential delay asked of each mix (0: none)")
	interval := fs.Duration("interval", 0, "pause between two sends")
	timeout := fs.Duration("timeout", mixnet.DefaultProbeTimeout, "how long to wait for packets after the last send")
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
	rep, err := mixnet.Probe(ctx, mixnet.ProbeConfig{
		DirectoryURL: *dirURL, Gateway: *gw, Packets: *packets, Routes: mixnet.RouteSet(*routes),
		MeanDelay: *meanDelay, Interval: *interval, Timeout: *timeout, Logger: log,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "nym-node probe: %v\n", err)
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
