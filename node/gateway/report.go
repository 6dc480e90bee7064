package gateway

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/nymvpn/nymvpn/node/issuer"
	"go.etcd.io/bbolt"
)

// reportBatch bounds the spends sent in one report.
const reportBatch = 128

// reportLoop sends queued spends to every issuer until ctx ends: each issuer
// has its own position in the queue, so one that is down delays only its own
// reports; entries every current issuer has taken are deleted. The queue lives
// in the database, so reports survive a restart.
func (g *Gateway) reportLoop(ctx context.Context) {
	p := g.pay
	rc := p.cfg.Reporting
	every := rc.Interval
	if every <= 0 {
		every = 10 * time.Second
	}
	type backoff struct {
		next time.Time
		wait time.Duration
	}
	failing := map[string]*backoff{}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		urls := rc.Issuers()
		now := time.Now()
		for _, u := range urls {
			if b := failing[u]; b != nil && now.Before(b.next) {
				continue
			}
			if err := g.reportTo(ctx, u); err != nil {
				b := failing[u]
				if b == nil {
					b = &backoff{wait: every}
					failing[u] = b
				} else {
					b.wait = min(2*b.wait, 5*time.Minute)
				}
				b.next = now.Add(b.wait)
				g.log.Warn("reporting spent tickets", "issuer", u, "err", err, "retry_in", b.wait)
				continue
			}
			delete(failing, u)
		}
		g.trimOutbox(urls)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.kick:
		}
	}
}

// reportTo sends the spends the issuer at url has not taken yet, in batches.
func (g *Gateway) reportTo(ctx context.Context, url string) error {
	p := g.pay
	for {
		var after uint64
		var seqs []uint64
		var spends [][]byte
		p.db.View(func(tx *bbolt.Tx) error {
			if v := tx.Bucket(bAcked).Get([]byte(url)); len(v) == 8 {
				after = binary.BigEndian.Uint64(v)
			}
			c := tx.Bucket(bOutbox).Cursor()
			for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(spends) < reportBatch; k, v = c.Next() {
				seqs = append(seqs, binary.BigEndian.Uint64(k))
				spends = append(spends, append([]byte(nil), v...))
			}
			return nil
		})
		if len(spends) == 0 {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := issuer.Report(rctx, nil, url, g.cfg.ID, p.cfg.Reporting.Identity, spends, time.Now())
		cancel()
		if err != nil {
			return err
		}
		g.stats.reported.Add(int64(len(spends)))
		if resp.DoubleSpends > 0 {
			g.log.Warn("issuer found double spends among reported tickets", "issuer", url, "double_spends", resp.DoubleSpends)
		}
		last := seqs[len(seqs)-1]
		if err := p.db.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bAcked).Put([]byte(url), binary.BigEndian.AppendUint64(nil, last))
		}); err != nil {
			return err
		}
		if len(spends) < reportBatch {
			return nil
		}
	}
}

// trimOutbox deletes the spends every issuer in urls has taken.
func (g *Gateway) trimOutbox(urls []string) {
	if len(urls) == 0 {
		return
	}
	p := g.pay
	err := p.db.Update(func(tx *bbolt.Tx) error {
		acked := tx.Bucket(bAcked)
		low := ^uint64(0)
		for _, u := range urls {
			v := acked.Get([]byte(u))
			if len(v) != 8 {
				return nil // an issuer has taken nothing yet
			}
			low = min(low, binary.BigEndian.Uint64(v))
		}
		c := tx.Bucket(bOutbox).Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= low; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		g.log.Warn("trimming the report queue", "err", err)
	}
}

// pendingReports is the number of spends queued for at least one issuer.
func (g *Gateway) pendingReports() int {
	if g.pay == nil {
		return 0
	}
	n := 0
	g.pay.db.View(func(tx *bbolt.Tx) error { n = tx.Bucket(bOutbox).Stats().KeyN; return nil })
	return n
}
