package daemon

import (
	"context"
	"sync"

	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/transport"
)

// fastKeys keeps the per-hop WireGuard keys of a session's last fast-mode
// attempt, so that the next attempt to the same entry and exit gateways (a
// reconnect after a gateway restart, a stale handshake, a network change)
// uses them again with fast.Config.Resume: the gateways admit the keys with
// the allowance their tickets left (kept across a gateway's restart), and
// the reconnect spends no new ticket while anything is left. A session runs
// from the user's connect to the user's disconnect; forget ends it, as does
// a mode change, and an attempt to other gateways replaces the keys with new
// ones: keys that outlived a session would link the user's sessions at a
// gateway, which matters more than a ticket. The keys live in memory only
// and are never logged.
type fastKeys struct {
	mu          sync.Mutex
	entry, exit directory.Node // the gateways the keys were made for
	entryKey    transport.Key
	exitKey     transport.Key
	set         bool
}

// take returns the keys for an attempt to entry and exit: with resume true
// the previous attempt's, when it went to the same two gateways; otherwise
// new keys, kept for the next attempt. An attempt already cancelled (the
// user disconnected while it ran) gets nothing: its keys must not outlive
// the session into the next one.
func (k *fastKeys) take(ctx context.Context, entry, exit directory.Node) (entryKey, exitKey transport.Key, resume bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return entryKey, exitKey, false, err
	}
	if k.set && sameGateway(k.entry, entry) && sameGateway(k.exit, exit) {
		return k.entryKey, k.exitKey, true, nil
	}
	k.forgetLocked()
	if entryKey, err = transport.GenerateKey(); err != nil {
		return entryKey, exitKey, false, err
	}
	if exitKey, err = transport.GenerateKey(); err != nil {
		return entryKey, exitKey, false, err
	}
	k.entry, k.exit, k.entryKey, k.exitKey, k.set = entry, exit, entryKey, exitKey, true
	return entryKey, exitKey, false, nil
}

// keep records the keys a connected tunnel to entry and exit uses (fast mode
// makes a new one for a hop that had nothing left to resume), if the session
// still holds keys for those gateways and the attempt was not cancelled.
func (k *fastKeys) keep(ctx context.Context, entry, exit directory.Node, entryKey, exitKey transport.Key) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ctx.Err() != nil || !k.set || !sameGateway(k.entry, entry) || !sameGateway(k.exit, exit) {
		return
	}
	k.entryKey, k.exitKey = entryKey, exitKey
}

// forget ends the session: the next attempt makes new keys.
func (k *fastKeys) forget() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgetLocked()
}

func (k *fastKeys) forgetLocked() {
	// Overwrite rather than drop, so the old keys do not linger in this
	// struct (copies handed to tunnels go with them).
	k.entryKey, k.exitKey = transport.Key{}, transport.Key{}
	k.entry, k.exit, k.set = directory.Node{}, directory.Node{}, false
}

// sameGateway reports whether a and b are the same gateway: the same ID and
// keys (a directory that now lists other keys under the ID is another
// gateway as far as the keys registered with it go).
func sameGateway(a, b directory.Node) bool {
	return a.ID == b.ID && a.NoiseKey == b.NoiseKey && a.WireGuardKey == b.WireGuardKey
}
