package viewmodel

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// profileLabels name the privacy profiles as the window does (the
// settings page's "maximum mixnet privacy" switch).
var profileLabels = map[string]string{
	api.ProfileMax:  "maximum privacy",
	api.ProfileFast: "fast profile",
}

// mixnetRows are two lines on a mixnet-mode tunnel: how much of what it
// sends is cover, and the round trip to the exit (with resends and losses
// when there are any, which say the path struggles).
func mixnetRows(m api.MixnetStats) []Row {
	packets := Count(m.RealPackets) + " real / " + Count(m.Cover()) + " cover"
	if pct, ok := m.CoverPercent(); ok {
		packets += fmt.Sprintf(" (%.0f%% cover)", pct)
	}
	rtt := "measuring…"
	if m.ExitRTTMs > 0 {
		rtt = strconv.FormatFloat(m.ExitRTTMs, 'f', 0, 64) + " ms to the exit"
	}
	var trouble []string
	if m.Retransmissions > 0 {
		trouble = append(trouble, Count(m.Retransmissions)+" resent")
	}
	if m.Lost > 0 {
		trouble = append(trouble, Count(m.Lost)+" lost")
	}
	if len(trouble) > 0 {
		rtt += " · " + strings.Join(trouble, ", ")
	}
	return []Row{{"Packets", packets}, {"Round trip", rtt}}
}

// mixnetMode is the Mode row's value in mixnet mode: "Mixnet · maximum
// privacy", the profile the tunnel runs (the settings' until it reports).
func mixnetMode(m Model) string {
	p := m.Status.Settings.PrivacyProfile
	if mx := m.Status.Mixnet; mx != nil && mx.Profile != "" {
		p = mx.Profile
	}
	if l, ok := profileLabels[p]; ok {
		p = l
	}
	if p == "" {
		return "Mixnet"
	}
	return "Mixnet · " + p
}

// Count formats a count with commas between thousands: "4,210".
func Count(n uint64) string {
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
