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

// DefaultTopUpGrace is how long a gateway that takes tickets keeps serving
// a peer whose allowance reached zero, for a top-up on its way (the client
// asks when what is left falls below the grant's top_up_at; a fast flow can
// spend that margin before the new ticket arrives). Meanwhile the peer may
// overdraw its top-up margin (and, counted once a meter interval, up to an
// interval's traffic more); the next tickets pay what it overdrew first.
// After that, or without a top-up, it is cut off.
const DefaultTopUpGrace = 2 * time.Second

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

	// Metering (gateways that take tickets): bytes left (below zero: owed
	// by the next ticket), the level below which the gateway asks for a
	// top-up, and the device's counters at the last count.
	metered        bool
	allowance      int64
	topUpAt        int64
	seenRx, seenTx int64
	// overdrawn is when the allowance fell to zero or below (zero while it
	// is positive): the start of the peer's grace for a late top-up.
	overdrawn time.Time
	// paused: cut off for running out. The peer stays on the device without
	// allowed IPs, so nothing passes in either direction but its WireGuard
	// session survives, and a late top-up resumes it at once (a removed
	// peer would need a new handshake, which the client starts only after
	// 15 s without an answer). pausedAt starts its idle time.
	paused   bool
	pausedAt time.Time
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
	// grace is how long a peer whose allowance reached zero keeps going, for
	// a top-up on its way to land, before it is cut off; it never owes more
	// than its top-up margin (topUpAt) meanwhile. Zero: cut off at zero.
	grace time.Duration

	// counting serializes reading the device's counters with charging
	// them (meter, credit), so that an older reading is never applied after
	// a newer one. Taken before mu.
	counting sync.Mutex

	mu      sync.Mutex
	byKey   map[transport.Key]*peer
	byAddr  map[netip.Addr]*peer
	byIndex map[uint64]*peer
	cursor  uint64
	// dirty holds the allowances changed since they were last written to
	// the gateway's database (allowances.go).
	dirty map[allowanceKey]allowanceRecord
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
		cursor: 2, dirty: map[allowanceKey]allowanceRecord{},
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
	fmt.Fprintf(&b, "public_key=%s\npreshared_key=%s\n", hex.EncodeToString(p.WireGuardKey[:]), hex.EncodeToString(p.PresharedKey[:]))
	if !pe.paused {
		// A paused peer gets its addresses back from credit, once it has
		// allowance again.
		fmt.Fprintf(&b, "replace_allowed_ips=true\nallowed_ip=%s/32\nallowed_ip=%s/128\n", pe.v4, pe.v6)
	}
	if err := t.dev.IpcSet(b.String()); err != nil {
		return nil, fmt.Errorf("gateway: add WireGuard peer: %w", err)
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
// WireGuard handshake within idle, and frees their addresses. A paused
// peer's handshakes do not count: it expires idle after its cut-off unless
// it pays again. What an expired peer had left stays in the database.
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
		if hs, ok := handshakes[k]; ok && hs.After(last) && !p.paused {
			last = hs
		}
		if p.paused && p.pausedAt.After(last) {
			last = p.pausedAt
		}
		if now.Sub(last) < idle {
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
// What the peer overdrew before it was cut off is paid first. A paused peer
// with allowance again is resumed: its addresses go back on the device, and
// its WireGuard session continues.
func (t *peerTable) credit(key transport.Key, role string, bytes, topUpAt int64) int64 {
	return t.creditFrom(key, role, bytes, topUpAt, 0)
}

// creditFrom is credit for a peer that, if not metered yet, starts from
// start: what the gateway's database kept for its key and role (a restart
// in between), or nothing.
func (t *peerTable) creditFrom(key transport.Key, role string, bytes, topUpAt, start int64) int64 {
	t.counting.Lock()
	defer t.counting.Unlock()
	t.mu.Lock()
	_, ok := t.byKey[key]
	t.mu.Unlock()
	var state wguapi.State
	if ok {
		// On an error the next meter round charges it instead.
		state, _ = wguapi.Get(t.dev)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pe, ok := t.byKey[key]
	if !ok {
		return 0
	}
	var ps *wguapi.Peer
	for i := range state.Peers {
		if state.Peers[i].PublicKey == key {
			ps = &state.Peers[i]
			break
		}
	}
	switch {
	case !pe.metered:
		// Counting starts now; what moved before is not charged.
		pe.metered, pe.allowance = true, start
		if ps != nil {
			pe.seenRx, pe.seenTx = ps.RxBytes, ps.TxBytes
		}
	case ps != nil && pe.paused:
		pe.seenRx, pe.seenTx = ps.RxBytes, ps.TxBytes // nothing passed
	case ps != nil:
		pe.charge(*ps)
	}
	// What the peer overdrew is paid first: during its grace, at most its
	// top-up margin, plus up to one meter interval's traffic before the
	// cut-off. A peer still in debt stays paused.
	pe.allowance += bytes
	pe.topUpAt = topUpAt
	if pe.allowance > 0 {
		pe.overdrawn = time.Time{}
		if pe.paused {
			t.resumeLocked(pe)
		}
	}
	t.markLocked(pe)
	return pe.allowance
}

// resumeLocked puts a paused peer's addresses back on the device (on an
// error the next meter round tries again); the table's mu is held.
func (t *peerTable) resumeLocked(pe *peer) {
	if err := t.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\nreplace_allowed_ips=true\nallowed_ip=%s/32\nallowed_ip=%s/128\n",
		hex.EncodeToString(pe.key[:]), pe.v4, pe.v6)); err == nil {
		pe.paused = false
	}
}

// markLocked notes that pe's allowance changed, for the next write to the
// database; the table's mu is held.
func (t *peerTable) markLocked(pe *peer) {
	if pe.metered {
		t.dirty[allowanceKey{key: pe.key, role: pe.role}] = allowanceRecord{Left: pe.allowance, TopUpAt: pe.topUpAt}
	}
}

// charge takes the bytes the peer's WireGuard counters (ps) moved since they
// were last charged off its allowance; the table's mu is held. It returns
// the bytes charged.
func (pe *peer) charge(ps wguapi.Peer) int64 {
	used := counterDelta(ps.RxBytes, pe.seenRx) + counterDelta(ps.TxBytes, pe.seenTx)
	pe.seenRx, pe.seenTx = ps.RxBytes, ps.TxBytes
	pe.allowance -= used
	return used
}

// meter charges each metered peer the bytes its WireGuard counters moved
// since the last count, and cuts off (pauses) every peer whose allowance is
// spent and whose grace is over: grace after the allowance reached zero, or
// an overdraft of its top-up margin, whichever comes first. A paused peer
// is not charged (nothing passes). It returns the keys cut off.
func (t *peerTable) meter() ([]transport.Key, error) {
	t.counting.Lock()
	defer t.counting.Unlock()
	state, err := wguapi.Get(t.dev)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	var cut []transport.Key
	for _, ps := range state.Peers {
		pe := t.byKey[ps.PublicKey]
		if pe == nil || !pe.metered {
			continue
		}
		if pe.paused {
			pe.seenRx, pe.seenTx = ps.RxBytes, ps.TxBytes
			if pe.allowance > 0 {
				t.resumeLocked(pe) // credit's attempt failed
			}
			continue
		}
		if pe.charge(ps) > 0 {
			t.markLocked(pe)
		}
		if pe.allowance > 0 {
			pe.overdrawn = time.Time{}
			continue
		}
		if pe.overdrawn.IsZero() {
			pe.overdrawn = now
		}
		if now.Sub(pe.overdrawn) < t.grace && -pe.allowance < pe.topUpAt {
			continue // a top-up may be on its way
		}
		if err := t.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\nreplace_allowed_ips=true\n", hex.EncodeToString(pe.key[:]))); err != nil {
			return cut, fmt.Errorf("gateway: cut off a peer: %w", err)
		}
		pe.paused, pe.pausedAt = true, now
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

// resetAllowance drops what a peer has left (it changes role): the next
// credit starts the new role's count.
func (t *peerTable) resetAllowance(key transport.Key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pe, ok := t.byKey[key]; ok {
		pe.metered, pe.allowance, pe.overdrawn = false, 0, time.Time{}
	}
}

// takeDirty returns the allowances changed since the last call.
func (t *peerTable) takeDirty() map[allowanceKey]allowanceRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.dirty
	t.dirty = map[allowanceKey]allowanceRecord{}
	return d
}

// requeue puts back records a failed write did not store, unless newer
// ones are waiting.
func (t *peerTable) requeue(recs map[allowanceKey]allowanceRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, r := range recs {
		if _, newer := t.dirty[k]; !newer {
			t.dirty[k] = r
		}
	}
}

// pending returns an allowance changed but not written yet.
func (t *peerTable) pending(k allowanceKey) (allowanceRecord, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.dirty[k]
	return r, ok
}
