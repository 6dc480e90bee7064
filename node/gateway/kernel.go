package gateway

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

// kernelExitConfig is what the kernel exit path needs from the gateway.
type kernelExitConfig struct {
	Pool4, Pool6       netip.Prefix
	Gateway4, Gateway6 netip.Addr // the gateway's tunnel addresses, given to the TUN
	MTU                int
	Deny               []netip.Prefix
	// Outbound, if set, is the source address exit traffic of its family is
	// translated to (SNAT); otherwise the outgoing interface's (masquerade).
	Outbound netip.Addr
	Logger   *slog.Logger
}

// kernelExit is the host state a kernel-exit gateway sets up: a TUN, its
// addresses, forwarding and an nftables table. Every change registers its
// undo; Close runs them in reverse, also after a setup that failed halfway.
type kernelExit struct {
	dev   tun.Device // the kernel TUN
	name  string     // its interface name
	table string     // the nftables table (family inet)

	mu   sync.Mutex
	undo []undoStep
}

type undoStep struct {
	what string
	fn   func() error
}

func (k *kernelExit) onClose(what string, fn func() error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.undo = append(k.undo, undoStep{what, fn})
}

// Close undoes every change, last first, and reports all failures.
func (k *kernelExit) Close() error {
	k.mu.Lock()
	steps := k.undo
	k.undo = nil
	k.mu.Unlock()
	var errs error
	for i := len(steps) - 1; i >= 0; i-- {
		if err := steps[i].fn(); err != nil {
			errs = errors.Join(errs, err)
		}
	}
	return errs
}
