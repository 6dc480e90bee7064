package gateway

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/registration"
	"github.com/nymvpn/nymvpn/transport"
	"github.com/nymvpn/nymvpn/wguapi"
)

// wgDevice is the part of a wireguard-go device the peer table drives.
type wgDevice interface {
	IpcSet(string) error
	IpcGet() (string, error)
}

// peer is one registered client.
type peer struct {
	key        transport.Key
	role       string
	index      uint64 // offset into both pools
	v4, v6     netip.Addr
	registered time.Time
	remote     netip.AddrPort

	// Metering (gateways that take tickets): bytes left, the level below
	// which the gateway asks for a top-up, the device's counters at the last
	// count, and whether the peer was cut off for running out.
	metered        bool
	allowance      int64
	topUpAt        int64
	seenRx, seenTx int64
	suspended      bool
}

// peerTable hands out addresses from a pool pair and keeps the WireGuard
// device's peers in step. Address index i maps to pool4.base+i and
// pool6.base+i, so a client's two addresses are always a pair.
type peerTable struct {
	dev          wgDevice
	pool4, pool6 netip.Prefix
	gw4, gw6     netip.Addr // index 1 of each pool
	size         uint64     // usable indexes are 2 .. size-1
	now          func() time.Time

	// counting serializes reading the device's counters with charging
	// them (meter, credit), so that an older reading is never applied after
	// a newer one. Taken before mu.
	counting sync.Mutex

	mu      sync.Mutex
	byKey   map[transport.Key]*peer
	byAddr  map[netip.Addr]*peer
	byIndex map[uint64]*peer
	cursor  uint64
}

func newPeerTable(dev wgDevice, pool4, pool6 netip.Prefix, now func() time.Time) (*peerTable, error) {
	if !pool4.Addr().Is4() || !pool6.Addr().Is6() {
		return nil, fmt.Errorf("gateway: pools must be one IPv4 and one IPv6 prefix, got %v and %v", pool4, pool6)
	}
	pool4, pool6 = pool4.Masked(), pool6.Masked()
	size4 := hostCount(pool4)
	size6 := hostCount(pool6)
	size := min(size4, size6)
	if size4 > 2 {
		size = min(size, size4-1) // keep the IPv4 broadcast address out
	}
	if size < 3 {
		return nil, fmt.Errorf("gateway: pool %v/%v has no room for clients", pool4, pool6)
	}
	t := &peerTable{
		dev: dev, pool4: pool4, pool6: pool6, size: size, now: now,
		byKey: map[transport.Key]*peer{}, byAddr: map[netip.Addr]*peer{}, byIndex: map[uint64]*peer{},
		cursor: 2,
	}
	t.gw4, t.gw6 = addrAt(pool4, 1), addrAt(pool6, 1)
	return t, nil
}

// hostCount is 2^(bits-prefix), capped to fit a uint64 index space.
func hostCount(p netip.Prefix) uint64 {
	free := p.Addr().BitLen() - p.Bits()
	if free >= 32 {
		return 1 << 32
	}
	return 1 << uint(free)
}

func addrAt(p netip.Prefix, i uint64) netip.Addr {
	b := new(big.Int).SetBytes(p.Addr().AsSlice())
	b.Add(b, new(big.Int).SetUint64(i))
	raw := b.FillBytes(make([]byte, p.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(raw)
	return a
}

// Register implements registration.Registrar's address and device part; the
// gateway wraps it with payment and role checks.
func (t *peerTable) register(p registration.Peer) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pe, ok := t.byKey[p.WireGuardKey]
	if !ok {
		idx, ok := t.freeIndexLocked()
		if !ok {
			return nil, registration.Errorf(registration.CodePoolExhausted, "this gateway has no free addresses (%d clients); try another gateway", len(t.byKey))
		}
		pe = &peer{key: p.WireGuardKey, index: idx, v4: addrAt(t.pool4, idx), v6: addrAt(t.pool6, idx)}
	}
	pe.role = p.Role
	pe.registered = t.now()
	pe.remote = p.Remote
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%s\npreshared_key=%s\nreplace_allowed_ips=true\nallowed_ip=%s/32\nallowed_ip=%s/128\n",
		hex.EncodeToString(p.WireGuardKey[:]), hex.EncodeToString(p.PresharedKey[:]), pe.v4, pe.v6)
	if err := t.dev.IpcSet(b.String()); err != nil {
		return nil, fmt.Errorf("gateway: add WireGuard peer: %w", err)
	}
	if pe.suspended {
		// Back on the device after a cut-off: its counters start again.
		pe.suspended, pe.seenRx, pe.seenTx = false, 0, 0
	}
	if !ok {
		t.byKey[pe.key] = pe
		t.byAddr[pe.v4] = pe
		t.byAddr[pe.v6] = pe
		t.byIndex[pe.index] = pe
	}
	return pe, nil
}

func (t *peerTable) freeIndexLocked() (uint64, bool) {
	span := t.size - 2
	for n := uint64(0); n < span; n++ {
		i := 2 + (t.cursor-2+n)%span
		if _, used := t.byIndex[i]; !used {
			t.cursor = i + 1
			return i, true
		}
	}
	return 0, false
}

// lookup returns the peer owning a tunnel source address.
func (t *peerTable) lookup(a netip.Addr) (peer, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.byAddr[a]
	if !ok {
		return peer{}, false
	}
	return *p, true
}

func (t *peerTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}

// expire removes peers that have neither registered nor completed a
// WireGuard handshake within idle, and frees their addresses.
func (t *peerTable) expire(idle time.Duration) (int, error) {
	state, err := wguapi.Get(t.dev)
	if err != nil {
		return 0, fmt.Errorf("gateway: %w", err)
	}
	handshakes := make(map[transport.Key]time.Time, len(state.Peers))
	for _, p := range state.Peers {
		handshakes[p.PublicKey] = p.LastHandshake
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	removed := 0
	for k, p := range t.byKey {
		last := p.registered
		if hs, ok := handshakes[k]; ok && hs.After(last) {
			last = hs
		}
		if now.Sub(last) < idle {
			continue
		}
		if p.suspended { // not on the device any more
			delete(t.byKey, k)
			delete(t.byAddr, p.v4)
			delete(t.byAddr, p.v6)
			delete(t.byIndex, p.index)
			removed++
			continue
		}
		if err := t.dev.IpcSet(fmt.Sprintf("public_key=%s\nremove=true\n", hex.EncodeToString(k[:]))); err != nil {
			return removed, fmt.Errorf("gateway: remove idle peer: %w", err)
		}
		delete(t.byKey, k)
		delete(t.byAddr, p.v4)
		delete(t.byAddr, p.v6)
		delete(t.byIndex, p.index)
		removed++
	}
	return removed, nil
}

// expireLoop runs expire every interval until ctx ends.
func (t *peerTable) expireLoop(ctx context.Context, idle, every time.Duration, onErr func(error), onRemoved func(int)) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			n, err := t.expire(idle)
			if err != nil {
				onErr(err)
			}
			if n > 0 {
				onRemoved(n)
			}
		}
	}
}

// hasRoom reports whether key is registered or a free address pair is left,
// so that a ticket is not spent on a registration the pool cannot take.
func (t *peerTable) hasRoom(key transport.Key) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byKey[key]; ok {
		return true
	}
	return uint64(len(t.byIndex)) < t.size-2
}

// allowanceOf returns a registered peer's role, allowance and whether it is
// metered.
func (t *peerTable) allowanceOf(key transport.Key) (role string, allowance int64, metered, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pe, ok := t.byKey[key]
	if !ok {
		return "", 0, false, false
	}
	return pe.role, pe.allowance, pe.metered, true
}

// credit adds bytes to a peer's allowance (a new role starts from nothing)
// and returns the new allowance. It first charges the traffic the device
// counted since the last meter round: the returned allowance, which the
// client counts down from with its own counters, is what is left now, not
// what was left up to a meter interval ago (the client would otherwise
// believe it has that interval's traffic more than the gateway lets it use).
func (t *peerTable) credit(key transport.Key, role string, bytes, topUpAt int64) int64 {
	t.counting.Lock()
	defer t.counting.Unlock()
	t.mu.Lock()
	pe, ok := t.byKey[key]
	charge := ok && pe.metered && !pe.suspended // a new peer has moved nothing yet
	t.mu.Unlock()
	var state wguapi.State
	if charge {
		// On an error the next meter round charges it instead.
		state, _ = wguapi.Get(t.dev)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if pe, ok = t.byKey[key]; !ok {
		return 0
	}
	if !pe.metered {
		pe.metered, pe.allowance = true, 0
	} else if !pe.suspended {
		for _, ps := range state.Peers {
			if ps.PublicKey == key {
				pe.charge(ps)
				break
			}
		}
	}
	pe.allowance = max(pe.allowance, 0) + bytes
	pe.topUpAt = topUpAt
	return pe.allowance
}

// charge takes the bytes the peer's WireGuard counters (ps) moved since they
// were last charged off its allowance; the table's mu is held.
func (pe *peer) charge(ps wguapi.Peer) {
	used := counterDelta(ps.RxBytes, pe.seenRx) + counterDelta(ps.TxBytes, pe.seenTx)
	pe.seenRx, pe.seenTx = ps.RxBytes, ps.TxBytes
	pe.allowance -= used
}

// meter charges each metered peer the bytes its WireGuard counters moved since
// the last count, and cuts off (removes from the device, keeping its addresses
// until it expires) every peer whose allowance is spent. It returns the keys
// cut off.
func (t *peerTable) meter() ([]transport.Key, error) {
	t.counting.Lock()
	defer t.counting.Unlock()
	state, err := wguapi.Get(t.dev)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var cut []transport.Key
	for _, ps := range state.Peers {
		pe := t.byKey[ps.PublicKey]
		if pe == nil || !pe.metered || pe.suspended {
			continue
		}
		pe.charge(ps)
		if pe.allowance > 0 {
			continue
		}
		if err := t.dev.IpcSet(fmt.Sprintf("public_key=%s\nremove=true\n", hex.EncodeToString(pe.key[:]))); err != nil {
			return cut, fmt.Errorf("gateway: cut off a peer: %w", err)
		}
		pe.suspended = true
		cut = append(cut, pe.key)
	}
	return cut, nil
}

// counterDelta is now−before for a counter that restarts from 0 when its
// peer is re-created.
func counterDelta(now, before int64) int64 {
	if now < before {
		return now
	}
	return now - before
}

// resetAllowance drops what a peer has left (it changes role).
func (t *peerTable) resetAllowance(key transport.Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pe, ok := t.byKey[key]; ok {
		pe.allowance = 0
	}
}
