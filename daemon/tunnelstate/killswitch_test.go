package tunnelstate

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/nymvpn/nymvpn/daemon/api"
)

var blocked = Protection{Block: true}

func (h *harness) wantProtection(when string, want Protection) {
	h.t.Helper()
	h.m.State(context.Background()) // a round trip: the loop applied it
	if got := h.fw.last(); !reflect.DeepEqual(got, want) {
		h.t.Fatalf("%s: kill switch %+v, want %+v", when, got, want)
	}
}

func TestKillSwitchFollowsTheStates(t *testing.T) {
	h := newHarness(t, false)
	h.wantProtection("disconnected", Protection{})

	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	h.wantProtection("connecting, nothing chosen yet", blocked)
	c := h.nextCall()
	// The connector opens the way to each endpoint before it uses it.
	if err := c.allow(c.ctx, directory); err != nil {
		t.Fatal(err)
	}
	h.wantProtection("connecting, fetching the directory", Protection{Block: true, Endpoints: []Endpoint{directory}})
	if err := c.allow(c.ctx, entryReg, entryWG); err != nil {
		t.Fatal(err)
	}
	h.wantProtection("connecting, entry chosen", Protection{Block: true, Endpoints: []Endpoint{directory, entryReg, entryWG}})
	tun := h.tunnel("exit-ch-1")
	c.result <- attemptResult{tunnel: tun}
	h.expectConnecting(StageSystem, 1)
	h.expect(api.Connected)
	connected := Protection{Block: true, Endpoints: []Endpoint{entryWG}, Tunnel: "nymvpn0", DNS: []netip.Addr{netip.MustParseAddr("10.1.0.1")}}
	h.wantProtection("connected", connected)

	// The tunnel dies: blocking all the way through the reconnect.
	before := len(h.fw.all())
	tun.mu.Lock()
	tun.broken = errors.New("no handshake")
	tun.mu.Unlock()
	h.clock.Advance(healthInterval)
	h.expect(api.Disconnecting)
	h.expectConnecting(StageStarting, 1)
	h.wantProtection("reconnecting", blocked)
	for _, p := range h.fw.all()[before:] {
		if !p.Block {
			t.Fatalf("the kill switch opened during the reconnect: %+v", h.fw.all()[before:])
		}
	}
	c = h.nextCall()
	c.result <- attemptResult{err: Permanent(api.CodeNoDirectory, errors.New("gone"))}
	h.expect(api.Error)
	h.wantProtection("error", blocked)

	h.m.SetOnline(context.Background(), false)
	h.expect(api.Offline)
	h.wantProtection("offline", blocked)

	// Only the user's disconnect opens the firewall.
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnected)
	h.wantProtection("disconnected by the user", Protection{})
}

func TestKillSwitchStaleAttemptCannotOpenEndpoints(t *testing.T) {
	h := newHarness(t, false)
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	c := h.nextCall()
	h.m.Disconnect(context.Background())
	h.expect(api.Disconnecting)
	h.expect(api.Disconnected)
	if err := c.allow(context.Background(), entryWG); err == nil {
		t.Fatal("a cancelled attempt could still open an endpoint")
	}
	h.wantProtection("disconnected", Protection{})
}

func TestLockdownAndSettings(t *testing.T) {
	h := newHarness(t, false)
	h.setMu.Lock()
	h.settings.Lockdown, h.settings.AllowLAN = true, true
	h.setMu.Unlock()
	if err := h.m.RefreshFirewall(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.wantProtection("lockdown while disconnected", Protection{Block: true, AllowLAN: true})

	h.setMu.Lock()
	h.settings.Lockdown, h.settings.KillSwitch = false, false
	h.setMu.Unlock()
	h.m.RefreshFirewall(context.Background())
	h.m.Connect(context.Background())
	h.expectConnecting(StageStarting, 1)
	h.wantProtection("kill switch off, connecting", Protection{})
}

func TestKillSwitchSurvivesStop(t *testing.T) {
	h := newHarness(t, true) // the user was connected when the last daemon died
	// The first thing the machine does is block.
	if all := h.fw.all(); len(all) == 0 || !all[0].Block {
		t.Fatalf("first protection %+v, want blocking", all)
	}
	h.connectOK(1, "exit-ch-1")
	h.stop()
	if got := h.fw.last(); !reflect.DeepEqual(got, blocked) {
		t.Fatalf("after a stop with the target connected: %+v, want blocking", got)
	}

	// A user who had disconnected leaves an open machine behind.
	h2 := newHarness(t, false)
	h2.stop()
	if got := h2.fw.last(); got.Block {
		t.Fatalf("after a stop while disconnected: %+v, want open", got)
	}
}

func (f *fakeFirewall) all() []Protection {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Protection(nil), f.applied...)
}
