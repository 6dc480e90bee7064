package mixnet

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	mix "github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/registration"
)

// meter pays the entry gateway for mixnet access: a RoleMixnet registration
// with the client's recipient key and a ticket buys an allowance of bytes
// in and out; the client counts the same bytes (every record it sends and
// receives) and pays again with the same key when what is left falls below
// the grant's TopUpAt.
type meter struct {
	used atomic.Int64

	mu      sync.Mutex
	grant   registration.Grant
	base    int64 // used when the grant was made
	topUps  int
	retryAt time.Time
	backoff time.Duration
}

func (m *meter) count(n int) { m.used.Add(int64(n)) }

func (m *meter) metered() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.grant.Bandwidth > 0 && m.grant.Bandwidth < 1<<62
}

// pay registers with the entry gateway and a new ticket (mix.PayEntry).
func (m *meter) pay(ctx context.Context, t *Tunnel) error {
	entry := t.routes.entryNode()
	if err := t.reach(ctx, entry); err != nil {
		return err
	}
	grant, err := mix.PayEntry(ctx, entry, t.key, t.cfg.Ticket, t.cfg.Dial)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.grant.Bandwidth != 0 {
		m.topUps++
	}
	m.grant, m.base = *grant, m.used.Load()
	return nil
}

// left is the allowance left as the client counts, and the top-up level.
func (m *meter) left() (left, topUpAt int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	topUpAt = m.grant.TopUpAt
	if topUpAt == 0 {
		topUpAt = m.grant.Bandwidth / 4
	}
	return m.grant.Bandwidth - (m.used.Load() - m.base), topUpAt
}

// meterLoop tops the allowance up before it runs out, retrying with
// back-off.
func (t *Tunnel) meterLoop() {
	defer t.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	m := &t.meter
	for {
		select {
		case <-tick.C:
		case <-t.ctx.Done():
			return
		}
		left, at := m.left()
		if left >= at || time.Now().Before(m.retryAt) {
			continue
		}
		if err := m.pay(t.ctx, t); err != nil {
			if t.ctx.Err() != nil {
				return
			}
			m.backoff = min(max(2*m.backoff, time.Second), 30*time.Second)
			m.retryAt = time.Now().Add(m.backoff)
			t.log.Warn("mixnet: top-up failed", "left", left, "err", err, "retry_in", m.backoff)
			continue
		}
		m.backoff, m.retryAt = 0, time.Time{}
		l, _ := m.left()
		t.log.Info("mixnet: topped up the entry allowance", "allowance", l)
	}
}
