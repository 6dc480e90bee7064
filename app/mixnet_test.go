package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/app/viewmodel"
	"github.com/nymvpn/nymvpn/daemon/api"
)

// TestControllerMixnetStats: the daemon's mixnet statistics reach the model
// through the event stream, refresh as new ones come, go when the tunnel
// does, and the window shows them.
func TestControllerMixnetStats(t *testing.T) {
	d := newFakeDaemon(t)
	d.start(t, nil)
	c := startController(t, d.path)
	waitModel(t, c, "disconnected", kind(api.Disconnected))

	since := time.Now()
	d.hub.SetState(api.State{Kind: api.Connected, Mode: api.ModeMixnet, Since: &since,
		Entry: &api.Gateway{ID: "entry-de-1", Country: "DE"}, Exit: &api.Gateway{ID: "exit-ch-1", Country: "CH"}})
	d.hub.SetMixnet(&api.MixnetStats{Profile: api.ProfileMax, CoverPackets: 40})
	waitModel(t, c, "first statistics", func(m viewmodel.Model) error {
		if mx := m.Status.Mixnet; mx == nil || mx.CoverPackets != 40 {
			return fmt.Errorf("mixnet %+v", mx)
		}
		return nil
	})
	d.hub.SetMixnet(&api.MixnetStats{Profile: api.ProfileMax, RealPackets: 312, CoverPackets: 3800, LoopCoverPackets: 410, ExitRTTMs: 142.3})
	m := waitModel(t, c, "statistics as traffic flows", func(m viewmodel.Model) error {
		if mx := m.Status.Mixnet; mx == nil || mx.RealPackets != 312 {
			return fmt.Errorf("mixnet %+v", mx)
		}
		return nil
	})
	screen(t, "mixnet connected", m, viewmodel.PageMain, "Connected", "Mixnet · maximum privacy",
		"312 real / 4,210 cover (93% cover)", "142 ms to the exit")

	d.hub.SetMixnet(nil)
	d.hub.SetState(api.State{Kind: api.Disconnected})
	waitModel(t, c, "no statistics after the tunnel", func(m viewmodel.Model) error {
		if err := kind(api.Disconnected)(m); err != nil {
			return err
		}
		if m.Status.Mixnet != nil {
			return fmt.Errorf("mixnet %+v", m.Status.Mixnet)
		}
		return nil
	})
}
