package mixnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/sphinx"
	"github.com/nymvpn/nymvpn/transport"
)

// DialTimeout bounds connecting to a next hop, handshake included.
const DialTimeout = 5 * time.Second

// Reconnect back-off after a failed dial.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

var errUnknownHop = errors.New("mixnode: next hop not in the topology")

// linkPool keeps one outbound link per next hop, created on first use for
// nodes of the topology only (so there are at most as many links as nodes),
// and retired after LinkIdle without traffic.
type linkPool struct {
	n      *Node
	mu     sync.Mutex
	links  map[sphinx.NodeID]*link
	closed bool
}

// link is the channel to one next hop: a bounded queue drained by one
// goroutine that dials (Noise IK with the next hop's key from the directory),
// batches queued packets into one transport message, writes with a deadline
// and reconnects with back-off.
type link struct {
	pool *linkPool
	id   sphinx.NodeID
	q    chan queued
}

type queued struct {
	epoch uint64
	p     *[]byte
}

// send queues p for id, taking ownership of it; false if it was dropped.
// A full queue drops the packet (drop-and-count): a mixnet is lossy by
// design, and blocking would let one slow next hop stall every other.
func (lp *linkPool) send(id sphinx.NodeID, epoch uint64, p *[]byte) bool {
	n := lp.n
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.closed {
		n.m.Drop(DropClosed)
		n.putBuf(p)
		return false
	}
	l := lp.links[id]
	if l == nil {
		if _, ok := n.Lookup(id); !ok {
			n.m.Drop(DropUnknownHop)
			n.putBuf(p)
			return false
		}
		l = &link{pool: lp, id: id, q: make(chan queued, n.lim.LinkQueue)}
		lp.links[id] = l
		n.m.links.Add(1)
		n.wg.Add(1)
		go l.run()
	}
	select {
	case l.q <- queued{epoch: epoch, p: p}:
		return true
	default:
		n.m.Drop(DropLinkFull)
		n.putBuf(p)
		return false
	}
}

// retire removes l if nothing is queued for it.
func (lp *linkPool) retire(l *link) bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if len(l.q) > 0 {
		return false
	}
	delete(lp.links, l.id)
	return true
}

func (lp *linkPool) close() {
	lp.mu.Lock()
	lp.closed = true
	lp.mu.Unlock()
}

// drain drops everything queued on l, counting reason.
func (l *link) drain(reason DropReason) {
	n := l.pool.n
	for {
		select {
		case q := <-l.q:
			n.m.Drop(reason)
			n.putBuf(q.p)
		default:
			return
		}
	}
}

func (l *link) run() {
	n := l.pool.n
	defer n.wg.Done()
	defer n.m.links.Add(-1)
	var conn *transport.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	idle := time.NewTimer(LinkIdle)
	defer idle.Stop()
	backoff := minBackoff
	batch := make([]queued, 0, 16)
	var msg []byte
	release := func(reason DropReason) {
		for _, q := range batch {
			if reason != DropNone {
				n.m.Drop(reason)
			}
			n.putBuf(q.p)
		}
		batch = batch[:0]
	}
	for {
		select {
		case q := <-l.q:
			batch = append(batch, q)
		case <-idle.C:
			if l.pool.retire(l) {
				n.log.Debug("mixnode: link idle, closed", "next_hop", l.id)
				return
			}
			idle.Reset(LinkIdle)
			continue
		case <-n.ctx.Done():
			l.drain(DropClosed)
			return
		}
		size := mixnet.PacketRecordLength(*batch[0].p)
	fill:
		for size < maxBatch {
			select {
			case q := <-l.q:
				batch = append(batch, q)
				size += mixnet.PacketRecordLength(*q.p)
			default:
				break fill
			}
		}
		if conn == nil {
			c, err := l.dial()
			if err != nil {
				reason := DropLinkDown
				if errors.Is(err, errUnknownHop) {
					reason = DropUnknownHop
				}
				n.log.Debug("mixnode: next hop unreachable; dropping its queue", "next_hop", l.id, "dropped", len(batch)+len(l.q), "retry_in", backoff, "err", err)
				release(reason)
				l.drain(reason)
				t := time.NewTimer(backoff)
				select {
				case <-n.ctx.Done():
					t.Stop()
					l.drain(DropClosed)
					return
				case <-t.C:
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			conn, backoff = c, minBackoff
		}
		msg = msg[:0]
		for _, q := range batch {
			msg = mixnet.AppendPacket(msg, q.epoch, *q.p)
		}
		conn.SetWriteDeadline(time.Now().Add(mixnet.WriteTimeout))
		if err := conn.WriteMessage(msg); err != nil {
			n.log.Debug("mixnode: write to next hop failed; reconnecting", "next_hop", l.id, "err", err)
			release(DropLinkDown)
			conn.Close()
			conn = nil
			continue
		}
		n.m.forwarded.Add(uint64(len(batch)))
		release(DropNone)
		if !idle.Stop() {
			select {
			case <-idle.C:
			default:
			}
		}
		idle.Reset(LinkIdle)
	}
}

// dial opens a Noise IK channel to the next hop at the address the
// directory lists for it, authenticated by its key (the Sphinx id). A
// goroutine reads and discards what the peer sends, so a closed peer is
// noticed at once: the read fails and closes the channel, and the next
// write fails and reconnects.
func (l *link) dial() (*transport.Conn, error) {
	n := l.pool.n
	d, ok := n.Lookup(l.id)
	if !ok || d.MixAddr == "" {
		return nil, errUnknownHop
	}
	ctx, cancel := context.WithTimeout(n.ctx, DialTimeout)
	defer cancel()
	var dialer net.Dialer
	raw, err := dialer.DialContext(ctx, "tcp", d.MixAddr)
	if err != nil {
		return nil, fmt.Errorf("mixnode: dial %s at %s: %w", d.ID, d.MixAddr, err)
	}
	tc, err := transport.Client(ctx, raw, transport.Config{
		Pattern: transport.IK, Prologue: []byte(mixnet.NodePrologue),
		LocalStatic: n.cfg.NoiseKey, RemoteStatic: transport.Key(l.id),
	})
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("mixnode: handshake with %s at %s: %w", d.ID, d.MixAddr, err)
	}
	go func() {
		var buf []byte
		for {
			m, err := tc.ReadMessage(buf)
			if err != nil {
				tc.Close()
				return
			}
			buf = m[:0]
		}
	}()
	return tc, nil
}
