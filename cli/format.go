package cli

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// describeState is one line saying what st means.
func describeState(st api.State, now time.Time) string {
	switch st.Kind {
	case api.Disconnected:
		return "Disconnected"
	case api.Connecting:
		return describeConnecting(st, now)
	case api.Connected:
		return "Connected: " + describeRoute(st)
	case api.Disconnecting:
		if st.Then == api.Connecting {
			return "Disconnecting to reconnect..."
		}
		return "Disconnecting..."
	case api.Error:
		return "Error: " + orUnknown(st.Reason)
	case api.Offline:
		if st.Reason != "" {
			return "Offline: " + st.Reason + "; waiting for the network..."
		}
		return "Offline: waiting for the network..."
	}
	return string(st.Kind)
}

func describeConnecting(st api.State, now time.Time) string {
	var b strings.Builder
	b.WriteString("Connecting")
	if st.Attempt > 0 {
		fmt.Fprintf(&b, " (attempt %d)", st.Attempt)
	}
	switch {
	case st.Retrying:
		b.WriteString(": the attempt failed")
		if st.Reason != "" {
			b.WriteString(": " + st.Reason)
		}
		if st.NextAttempt != nil {
			fmt.Fprintf(&b, "; retrying in %s", roundDuration(st.NextAttempt.Sub(now)))
		} else {
			b.WriteString("; retrying")
		}
	case st.Stage != "":
		b.WriteString(": " + st.Stage + "...")
	default:
		b.WriteString("...")
	}
	return b.String()
}

// describeRoute is "entry ID (CC) → exit ID (CC), addresses A, B".
func describeRoute(st api.State) string {
	var parts []string
	if st.Entry != nil {
		parts = append(parts, "entry "+describeGateway(st.Entry))
	}
	if st.Exit != nil {
		parts = append(parts, "exit "+describeGateway(st.Exit))
	}
	s := strings.Join(parts, " → ")
	if len(st.Addresses) > 0 {
		if s != "" {
			s += ", "
		}
		s += "addresses " + joinAddrs(st.Addresses)
	}
	if s == "" {
		return "through the VPN"
	}
	return s
}

func describeGateway(g *api.Gateway) string {
	if g.Country == "" {
		return g.ID
	}
	return fmt.Sprintf("%s (%s)", g.ID, g.Country)
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown reason"
	}
	return s
}

// formatBytes prints a byte count in SI units.
func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTP"[exp])
}

// roundDuration rounds d to what a person wants to read.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d < time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
