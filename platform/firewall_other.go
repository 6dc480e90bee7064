//go:build !linux

package platform

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
)

// Firewall is the kill switch's applier. On this system it is not
// implemented yet: NewFirewall reports it.
type Firewall struct{}

// errFirewallUnsupported wraps errors.ErrUnsupported.
func errFirewallUnsupported() error {
	return fmt.Errorf("firewall: the kill switch is not implemented on %s yet: %w", runtime.GOOS, errors.ErrUnsupported)
}

// NewFirewall reports that the kill switch is not implemented on this
// system (wrapping errors.ErrUnsupported).
func NewFirewall(*slog.Logger) (*Firewall, error) { return nil, errFirewallUnsupported() }

// Apply reports that the kill switch is not implemented on this system.
func (*Firewall) Apply(FirewallPolicy) error { return errFirewallUnsupported() }

// Remove reports that the kill switch is not implemented on this system.
func (*Firewall) Remove() error { return errFirewallUnsupported() }

// Active reports that the kill switch is not implemented on this system.
func (*Firewall) Active() (bool, error) { return false, errFirewallUnsupported() }

// Rules reports that the kill switch is not implemented on this system.
func (*Firewall) Rules() ([]AppliedFirewallRule, error) { return nil, errFirewallUnsupported() }
