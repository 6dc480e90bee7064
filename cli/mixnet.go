package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// mixnetRows are the status block of a mixnet-mode tunnel: what its
// privacy costs (cover), how well the path holds (resends, losses, round
// trip) and whether replies can come back (SURBs at the exit).
func mixnetRows(m api.MixnetStats) [][2]string {
	profile := m.Profile + " privacy profile"
	if r := repairs(m); r != "" {
		profile += "; repaired itself: " + r
	}
	return [][2]string{
		{"Mixnet", profile},
		{"Packets", packetsLine(m)},
		{"Resent", fmt.Sprintf("%s retransmitted, %s lost", thousands(m.Retransmissions), thousands(m.Lost))},
		{"Exit RTT", rttLine(m)},
		{"Exit SURBs", fmt.Sprintf("%d held for replies", m.ExitSURBs)},
	}
}

// mixnetLine is the mixnet statistics on one line, for nymvpn watch.
func mixnetLine(m api.MixnetStats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mixnet: %s; %s retransmitted, %s lost; exit RTT %s; %d SURBs at the exit",
		packetsLine(m), thousands(m.Retransmissions), thousands(m.Lost), rttLine(m), m.ExitSURBs)
	if r := repairs(m); r != "" {
		b.WriteString("; " + r)
	}
	return b.String()
}

// packetsLine is "312 real, 4,210 cover (93% cover)": cover counts the
// main stream's cover and the loop cover, everything sent that carried
// nothing.
func packetsLine(m api.MixnetStats) string {
	s := thousands(m.RealPackets) + " real, " + thousands(m.Cover()) + " cover"
	if pct, ok := m.CoverPercent(); ok {
		s += fmt.Sprintf(" (%.0f%% cover)", pct)
	}
	return s
}

// rttLine is "142 ms (7.3 ms above the mix delays)".
func rttLine(m api.MixnetStats) string {
	if m.ExitRTTMs == 0 {
		return "not measured yet"
	}
	return milliseconds(m.ExitRTTMs) + " (" + milliseconds(m.OverheadMs) + " above the mix delays)"
}

func repairs(m api.MixnetStats) string {
	var parts []string
	if m.Reconnects > 0 {
		parts = append(parts, plural(m.Reconnects, "reconnect"))
	}
	if m.Reopens > 0 {
		parts = append(parts, plural(m.Reopens, "reopened session"))
	}
	return strings.Join(parts, ", ")
}

func plural(n uint64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return thousands(n) + " " + what + "s"
}

// milliseconds prints a duration in ms to a precision a person reads: a
// tenth below 10 ms, whole ones above.
func milliseconds(ms float64) string {
	if ms > -10 && ms < 10 {
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
}

// thousands prints n with commas between groups of three digits.
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
