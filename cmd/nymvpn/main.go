// Command nymvpn is the command-line client: the daemon commands of package
// cli, and proxy, an unprivileged SOCKS5 client that needs no daemon.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/nymvpn/nymvpn/cli"
	"github.com/nymvpn/nymvpn/modes"
	"github.com/nymvpn/nymvpn/proxy"
)

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "proxy" {
		runProxy(os.Args[2:])
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func runProxy(args []string) {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	mode := fs.String("mode", "fast", "fast (two-hop WireGuard) or mixnet (3 mix layers, cover traffic)")
	profile := fs.String("profile", "max", "mixnet privacy profile: max (NymVPN's delays and cover traffic) or fast")
	dir := fs.String("directory", os.Getenv("NYMVPN_DIRECTORY"), "directory URL with its pinned key (?key=...); default $NYMVPN_DIRECTORY")
	listen := fs.String("listen", "127.0.0.1:1080", "SOCKS5 listen address")
	entry := fs.String("entry", "", "entry gateway: country code, node id, or empty for automatic")
	exit := fs.String("exit", "", "exit gateway: country code, node id, or empty for automatic")
	verbose := fs.Bool("v", false, "debug logging")
	fs.Parse(args)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "nymvpn proxy: --directory URL is required (nym-localnet prints it)")
		os.Exit(2)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := proxy.Run(ctx, proxy.Config{
		Mode: *mode, Profile: *profile, DirectoryURL: *dir, Listen: *listen,
		Entry: modes.ParseChoice(*entry), Exit: modes.ParseChoice(*exit),
		Out: os.Stdout, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "nymvpn:", err)
		os.Exit(1)
	}
}
