package mixnet

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Profile is how much a tunnel pays in speed for its privacy: the delays
// asked of the mixes and the shape of the client's own traffic.
type Profile struct {
	Name string
	// HopDelay is the mean of the exponential delay each of the three mixes
	// holds a packet (the gateway hops add none). Every packet, ack and SURB
	// draws its own delays.
	HopDelay time.Duration
	// SendInterval is the mean gap of the Poisson main stream: at each draw
	// one packet leaves, a real one if one is queued, else cover (a loop
	// packet). Zero: no pacing and no cover in the main stream; real packets
	// leave as soon as they are queued.
	SendInterval time.Duration
	// LoopCover is the mean gap of the loop-cover stream (loop packets
	// through the mixnet back to the client); zero: none.
	LoopCover time.Duration
	// SURBs is how many reply SURBs the client keeps at the exit.
	SURBs int
	// Bundle is how long the exit lets a reply bundle of small packets
	// wait to fill (NymVPN: 20 ms); a bundle that cannot take another
	// full-size packet leaves at once.
	Bundle time.Duration
}

// Hold is how long each end holds IP packets that overtook earlier ones in
// the mixes: the spread of the delays of two packets' routes (three
// exponential delays each) and some.
func (p *Profile) Hold() time.Duration { return 6*p.HopDelay + 10*time.Millisecond }

// The profiles. Their cost in anonymity is in docs/architecture.md.
var (
	// ProfileMax is NymVPN's defaults: 15 ms mean per hop, a Poisson
	// stream of one packet every 20 ms on average whether the user sends or
	// not, and loop cover every 200 ms.
	ProfileMax = Profile{Name: "max", HopDelay: 15 * time.Millisecond, SendInterval: 20 * time.Millisecond,
		LoopCover: 200 * time.Millisecond, SURBs: 64, Bundle: 20 * time.Millisecond}
	// ProfileFast keeps the route, the Sphinx packets, the SURB replies and
	// a little mixing (1 ms mean per hop), but sends real packets when they
	// come instead of on a Poisson clock, with no cover in the main stream,
	// loop cover only every second, and small replies held 2 ms at most
	// for bundling (fewer SURBs for TCP's ACKs).
	ProfileFast = Profile{Name: "fast", HopDelay: time.Millisecond, SendInterval: 0,
		LoopCover: time.Second, SURBs: 128, Bundle: 2 * time.Millisecond}
)

// Profiles lists the profiles by name, the default first.
var Profiles = []Profile{ProfileMax, ProfileFast}

// DefaultProfile is ProfileMax.
var DefaultProfile = ProfileMax

// ProfileByName returns the profile called name (any case).
func ProfileByName(name string) (Profile, error) {
	for _, p := range Profiles {
		if strings.EqualFold(p.Name, strings.TrimSpace(name)) {
			return p, nil
		}
	}
	names := make([]string, len(Profiles))
	for i, p := range Profiles {
		names[i] = p.Name
	}
	return Profile{}, fmt.Errorf("mixnet: no privacy profile %q (have %s)", name, strings.Join(slices.Clip(names), ", "))
}

// Validate checks a profile's numbers.
func (p *Profile) Validate() error {
	switch {
	case p.HopDelay < 0 || p.SendInterval < 0 || p.LoopCover < 0:
		return fmt.Errorf("mixnet: profile %q: negative interval", p.Name)
	case p.HopDelay > 10*time.Second:
		return fmt.Errorf("mixnet: profile %q: mean hop delay %v above the nodes' 10 s cap", p.Name, p.HopDelay)
	case p.SendInterval > 0 && p.SendInterval < 100*time.Microsecond:
		return fmt.Errorf("mixnet: profile %q: send interval %v below 100 µs", p.Name, p.SendInterval)
	case p.LoopCover > 0 && p.LoopCover < time.Millisecond:
		return fmt.Errorf("mixnet: profile %q: loop cover interval %v below 1 ms", p.Name, p.LoopCover)
	case p.Bundle < 0 || p.Bundle > time.Second:
		return fmt.Errorf("mixnet: profile %q: bundle delay %v, want 0..1s", p.Name, p.Bundle)
	case p.Hold() > 10*time.Second:
		return fmt.Errorf("mixnet: profile %q: hop delay %v too long to hold packets for", p.Name, p.HopDelay)
	case p.SURBs < 8 || p.SURBs > 4096:
		return fmt.Errorf("mixnet: profile %q: %d SURBs, want 8..4096", p.Name, p.SURBs)
	}
	return nil
}
