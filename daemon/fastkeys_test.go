package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/tunnelstate"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/transport"
)

// A session's attempts to the same entry and exit get the same keys, to
// resume; other gateways (by ID or by key), the end of the session and an
// attempt cancelled by a disconnect get new ones.
func TestFastKeysPerSession(t *testing.T) {
	gw := func(id string, key byte) directory.Node {
		return directory.Node{ID: id, NoiseKey: directory.Key32{key}, WireGuardKey: directory.Key32{key, 1}}
	}
	entry, exit := gw("entry-de-1", 1), gw("exit-ch-1", 2)
	ctx := context.Background()
	var k fastKeys
	take := func(entry, exit directory.Node) (transport.Key, transport.Key, bool) {
		t.Helper()
		ek, xk, resume, err := k.take(ctx, entry, exit)
		if err != nil {
			t.Fatal(err)
		}
		if ek.IsZero() || xk.IsZero() || ek == xk {
			t.Fatalf("keys: zero or equal")
		}
		return ek, xk, resume
	}
	ek, xk, resume := take(entry, exit)
	if resume {
		t.Fatal("the session's first attempt resumes")
	}
	if ek2, xk2, resume := take(entry, exit); !resume || ek2 != ek || xk2 != xk {
		t.Fatalf("a second attempt to the same gateways: resume %v, same keys %v %v", resume, ek2 == ek, xk2 == xk)
	}
	for _, c := range []struct {
		what        string
		entry, exit directory.Node
	}{
		{"another entry", gw("entry-ch-1", 3), exit},
		{"another exit", entry, gw("exit-de-1", 4)},
		{"the entry's ID with other keys", gw("entry-de-1", 5), exit},
		{"the same gateways after the others", entry, exit},
	} {
		ek2, xk2, resume := take(c.entry, c.exit)
		if resume || ek2 == ek || xk2 == xk || ek2 == xk || xk2 == ek {
			t.Errorf("%s: resume %v, reused a key %v", c.what, resume, ek2 == ek || xk2 == xk)
		}
		ek, xk = ek2, xk2
	}
	// A hop that started afresh: the tunnel's new key is kept; not for
	// other gateways, nor once the attempt was cancelled.
	fresh, _ := transport.GenerateKey()
	k.keep(ctx, entry, exit, fresh, xk)
	k.keep(ctx, gw("entry-ch-1", 3), exit, ek, ek)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	k.keep(cancelled, entry, exit, ek, ek)
	if ek2, xk2, resume := take(entry, exit); !resume || ek2 != fresh || xk2 != xk {
		t.Errorf("after the tunnel's new entry key: resume %v, that key %v, the exit key %v", resume, ek2 == fresh, xk2 == xk)
	}
	ek = fresh
	k.forget()
	if ek2, xk2, resume := take(entry, exit); resume || ek2 == ek || xk2 == xk {
		t.Errorf("after the session ended: resume %v, reused a key %v", resume, ek2 == ek || xk2 == xk)
	}
	// An attempt cancelled by a disconnect gets none, and leaves none.
	k.forget()
	if _, _, _, err := k.take(cancelled, entry, exit); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled attempt: %v", err)
	}
	if _, _, resume := take(entry, exit); resume {
		t.Error("a cancelled attempt left keys for the next session")
	}
}

// sessionConnector refuses to connect and counts the ends of sessions.
type sessionConnector struct{ ended atomic.Int64 }

func (c *sessionConnector) Connect(context.Context, api.Settings, tunnelstate.Progress, tunnelstate.Allow) (tunnelstate.Tunnel, error) {
	return nil, tunnelstate.Permanent(api.CodeNotSupported, errors.New("this test does not connect"))
}

func (c *sessionConnector) endSession() { c.ended.Add(1) }

// The daemon ends the connector's session when the user disconnects or
// changes the mode, not when other settings change.
func TestDaemonEndsSession(t *testing.T) {
	conn := &sessionConnector{}
	c := runFakeTunnelDaemon(t, conn)
	ipv6 := false // not a mode change
	if code := call(t, c, "PATCH", "/v1/settings", api.SettingsPatch{IPv6: &ipv6}, nil); code != 200 {
		t.Fatalf("turn IPv6 off: %d", code)
	}
	if n := conn.ended.Load(); n != 0 {
		t.Fatalf("%d sessions ended before a disconnect or a mode change", n)
	}
	mixnet := api.ModeMixnet
	if code := call(t, c, "PATCH", "/v1/settings", api.SettingsPatch{Mode: &mixnet}, nil); code != 200 {
		t.Fatalf("set the mode: %d", code)
	}
	if n := conn.ended.Load(); n != 1 {
		t.Fatalf("after a mode change %d sessions ended, want 1", n)
	}
	if code := call(t, c, "POST", "/v1/disconnect", struct{}{}, nil); code/100 != 2 {
		t.Fatalf("disconnect: %d", code)
	}
	if n := conn.ended.Load(); n != 2 {
		t.Fatalf("after a disconnect %d sessions ended, want 2", n)
	}
}
