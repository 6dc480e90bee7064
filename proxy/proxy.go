// Package proxy is the unprivileged client: it connects a tunnel — fast mode
// (two-hop WireGuard) or mixnet mode — whose inner end is a userspace
// network stack and serves a SOCKS5 proxy (CONNECT, UDP ASSOCIATE, remote
// DNS) on it, so applications use the VPN without root and without a TUN
// device.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/credential/wallet"
	"github.com/nymvpn/nymvpn/modes"
	"github.com/nymvpn/nymvpn/modes/fast"
	"github.com/nymvpn/nymvpn/modes/mixnet"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/socks5"
	"github.com/nymvpn/nymvpn/tun/netstack"
)

// Config configures a proxy.
type Config struct {
	Mode string // "fast" (default) or "mixnet"
	// Profile is mixnet mode's privacy profile (default "max").
	Profile      string
	DirectoryURL string // carries the pinned directory key
	Entry, Exit  modes.Choice
	Listen       string // SOCKS5 listen address, e.g. 127.0.0.1:1080
	// Out receives the human-readable progress and route lines.
	Out    io.Writer
	Logger *slog.Logger
	// Ready, if set, is called once the proxy accepts connections.
	Ready func(*Proxy)
	// Ticket pays the gateways (see fast.Config.Ticket). If nil and the
	// environment names a wallet directory (WalletDirEnv, e.g. the local
	// network's demo wallet), that wallet pays; otherwise no ticket is sent,
	// which only gateways with --free-pass accept.
	Ticket func(ctx context.Context, role string, gw directory.Node) ([]byte, error)
}

// WalletDirEnv names the environment variable with the directory of a
// wallet (package credential/wallet) whose account pays for the proxy's
// tunnel. One process at a time may use a wallet directory.
const WalletDirEnv = "NYMVPN_WALLET_DIR"

// Proxy is a running proxy.
type Proxy struct {
	Entry, Exit directory.Node
	Addr        net.Addr
	// Tunnel is the fast-mode tunnel, Mixnet the mixnet-mode one; Net is
	// the stack the proxy serves on, in either mode.
	Tunnel *fast.Tunnel
	Mixnet *mixnet.Tunnel
	Net    *netstack.Stack
	Server *socks5.Server
}

// Run connects, serves until ctx ends, and tears everything down.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	profile := mixnet.DefaultProfile
	switch cfg.Mode {
	case "", "fast":
		cfg.Mode = "fast"
	case "mixnet":
		if cfg.Profile != "" {
			var err error
			if profile, err = mixnet.ProfileByName(cfg.Profile); err != nil {
				return fmt.Errorf("proxy: %w", err)
			}
		}
	default:
		return fmt.Errorf("proxy: unknown mode %q (want fast or mixnet)", cfg.Mode)
	}
	base, _, err := directory.ParseURL(cfg.DirectoryURL)
	if err != nil {
		return fmt.Errorf("proxy: --directory: %w", err)
	}
	// On the local network every node and server is on loopback; the
	// stacks must then accept loopback packets from the tunnel.
	allowLoopback := isLoopbackURL(base)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen on %s: %w", cfg.Listen, err)
	}
	defer ln.Close()

	fmt.Fprintf(cfg.Out, "fetching the directory from %s\n", base)
	fetchCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	topo, err := (&directory.Client{URL: cfg.DirectoryURL}).Fetch(fetchCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	selectGateways := modes.SelectGateways
	if cfg.Mode == "mixnet" {
		selectGateways = mixnet.SelectGateways
	}
	entry, exit, err := selectGateways(topo, cfg.Entry, cfg.Exit, nil)
	if err != nil {
		return fmt.Errorf("proxy: choose gateways: %w", err)
	}
	if cfg.Mode == "mixnet" {
		fmt.Fprintf(cfg.Out, "route: you → entry %s (%s, %s) → 3 mix layers → exit %s (%s) → internet; privacy profile %s\n",
			entry.ID, entry.Country, entry.MixClientAddr, exit.ID, exit.Country, profile.Name)
	} else {
		fmt.Fprintf(cfg.Out, "route: you → entry %s (%s, %s) → exit %s (%s, %s) → internet\n",
			entry.ID, entry.Country, entry.WireGuardAddr, exit.ID, exit.Country, exit.WireGuardAddr)
	}

	ticket := cfg.Ticket
	if ticket == nil {
		if dir := os.Getenv(WalletDirEnv); dir != "" {
			w, err := wallet.Open(wallet.Config{Dir: dir, Topology: wallet.FromDirectory(cfg.DirectoryURL, nil), Logger: cfg.Logger})
			if err != nil {
				return fmt.Errorf("proxy: %s: %w", WalletDirEnv, err)
			}
			if w.Account() == nil {
				return fmt.Errorf("proxy: the wallet in %s has no account", dir)
			}
			wctx, stop := context.WithCancel(ctx)
			defer stop()
			go w.Run(wctx)
			ticket = w.Ticket
			defer func() {
				c := w.Counts()
				if cfg.Mode == "mixnet" {
					fmt.Fprintf(cfg.Out, "tickets left: %v %d, %v %d\n", credential.MixnetEntry, c[credential.MixnetEntry], credential.MixnetExit, c[credential.MixnetExit])
					return
				}
				fmt.Fprintf(cfg.Out, "tickets left: %v %d, %v %d\n", credential.FastEntry, c[credential.FastEntry], credential.FastExit, c[credential.FastExit])
			}()
			fmt.Fprintf(cfg.Out, "paying with the account in %s\n", dir)
		}
	}
	p := &Proxy{Entry: entry, Exit: exit, Addr: ln.Addr()}
	var dns, addrs []netip.Addr
	connCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	if cfg.Mode == "mixnet" {
		dirURL := cfg.DirectoryURL
		p.Mixnet, err = mixnet.Connect(connCtx, mixnet.Config{
			Topology: topo, Refresh: (&directory.Client{URL: dirURL}).Fetch,
			Entry: entry, Exit: exit, Profile: profile, AllowLoopback: allowLoopback, Logger: cfg.Logger, Ticket: ticket,
			Progress: func(s mixnet.Stage) { fmt.Fprintf(cfg.Out, "  %s…\n", s) },
		})
		if err == nil {
			defer p.Mixnet.Close()
			p.Net, dns, addrs = p.Mixnet.Net, p.Mixnet.DNSServers(), p.Mixnet.Addresses()
		}
	} else {
		p.Tunnel, err = fast.Connect(connCtx, fast.Config{
			Entry: entry, Exit: exit, AllowLoopback: allowLoopback, Logger: cfg.Logger, Ticket: ticket,
			Progress: func(s fast.Stage) { fmt.Fprintf(cfg.Out, "  %s…\n", s) },
		})
		if err == nil {
			defer p.Tunnel.Close()
			p.Net, dns, addrs = p.Tunnel.Net, p.Tunnel.DNSServers(), p.Tunnel.Addresses()
		}
	}
	cancel()
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}

	stack := p.Net
	srv := &socks5.Server{
		Dial:    stack.DialContext,
		Resolve: Resolver(stack, dns),
		ListenPacket: func(ctx context.Context) (net.PacketConn, error) {
			return stack.ListenUDP(netip.AddrPort{})
		},
		Logger: cfg.Logger,
	}
	p.Server = srv
	fmt.Fprintf(cfg.Out, "connected: tunnel addresses %v; SOCKS5 proxy on %s (remote DNS: use socks5h://)\n", addrs, ln.Addr())
	if cfg.Ready != nil {
		cfg.Ready(p)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		srv.Close()
		ln.Close()
		<-errc
		fmt.Fprintln(cfg.Out, "disconnected")
		return nil
	case err := <-errc:
		return fmt.Errorf("proxy: SOCKS5 server: %w", err)
	}
}

func isLoopbackURL(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(u.Hostname())
	return err == nil && a.IsLoopback()
}

// Resolver returns a remote-DNS function: queries go through the tunnel's
// stack to its DNS servers, never to the system's resolver.
func Resolver(stack *netstack.Stack, servers []netip.Addr) func(ctx context.Context, host string) ([]netip.Addr, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var last error
		for _, s := range servers {
			if s.Is6() && network == "udp4" || s.Is4() && network == "udp6" {
				continue
			}
			c, err := stack.DialContext(ctx, network, netip.AddrPortFrom(s, 53).String())
			if err == nil {
				return c, nil
			}
			last = err
		}
		if last == nil {
			last = errors.New("no DNS server in the tunnel")
		}
		return nil, fmt.Errorf("proxy: DNS through the tunnel: %w", last)
	}}
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		if a, err := netip.ParseAddr(host); err == nil {
			return []netip.Addr{a}, nil
		}
		addrs, err := r.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s through the tunnel: %w", host, err)
		}
		return addrs, nil
	}
}
