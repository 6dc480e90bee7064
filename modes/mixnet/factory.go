package mixnet

import (
	"crypto/rand"
	mrand "math/rand/v2"
	"sync/atomic"
	"time"

	mix "github.com/nymvpn/nymvpn/mixnet"
	"github.com/nymvpn/nymvpn/sphinx"
)

// factory builds SURBs and SURB-ACK packets ahead, on its own goroutine,
// so the sender only builds each fragment's own packet when its slot comes:
// the scalar multiplications of a SURB (0.36 ms) or an ack (0.4 ms) run on
// another core meanwhile. Everything it built is tied to a generation,
// bumped when the tunnel's keys may have changed (a new topology, a new
// entry connection), and to an epoch; the users drop stale items and build
// inline when a pool is empty.
type factory struct {
	t     *Tunnel
	surbs chan *readySURB
	acks  chan *readyAck
	kick  chan struct{}
	gen   atomic.Uint64
}

type readySURB struct {
	gen   uint64
	id    sphinx.SURBID
	surb  mix.SURB
	entry *surbEntry
}

type readyAck struct {
	gen    uint64
	id     sphinx.SURBID
	first  sphinx.NodeID
	epoch  uint64
	pkt    []byte
	delays time.Duration
}

func newFactory(t *Tunnel) *factory {
	return &factory{
		t:     t,
		surbs: make(chan *readySURB, max(16, min(t.profile.SURBs/2, 128))),
		acks:  make(chan *readyAck, 32),
		kick:  make(chan struct{}, 1),
	}
}

// invalidate drops what was built so far (lazily, by generation).
func (f *factory) invalidate() { f.gen.Add(1) }

// run keeps the pools full until the tunnel closes.
func (f *factory) run() {
	defer f.t.wg.Done()
	rng := newRand()
	for {
		built := false
		if len(f.acks) < cap(f.acks) {
			if a := f.buildAck(rng, time.Now()); a != nil {
				select {
				case f.acks <- a:
				default:
				}
				built = true
			}
		}
		if len(f.surbs) < cap(f.surbs) {
			if s := f.buildSURB(rng, time.Now()); s != nil {
				select {
				case f.surbs <- s:
				default:
				}
				built = true
			}
		}
		if built {
			if f.t.ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-f.kick:
		case <-time.After(time.Second): // a route may work again
		case <-f.t.ctx.Done():
			return
		}
	}
}

func (f *factory) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// surb returns a SURB for now: from the pool, or built here.
func (f *factory) surb(rng *mrand.Rand, now time.Time) *readySURB {
	defer f.wake()
	for {
		select {
		case s := <-f.surbs:
			if f.fresh(s.gen, s.surb.Epoch, now) {
				return s
			}
			continue
		default:
		}
		return f.buildSURB(rng, now)
	}
}

// ack returns a SURB-ACK packet for now: from the pool, or built here.
func (f *factory) ack(rng *mrand.Rand, now time.Time) *readyAck {
	defer f.wake()
	for {
		select {
		case a := <-f.acks:
			if f.fresh(a.gen, a.epoch, now) {
				return a
			}
			continue
		default:
		}
		return f.buildAck(rng, now)
	}
}

func (f *factory) fresh(gen, epoch uint64, now time.Time) bool {
	return gen == f.gen.Load() && epoch == mix.RouteEpoch(f.t.routes.topology(), now)
}

func (f *factory) buildSURB(rng *mrand.Rand, now time.Time) *readySURB {
	t := f.t
	gen := f.gen.Load()
	rt, err := t.routes.toSelf(rng, t.profile.HopDelay, now)
	if err != nil {
		t.log.Debug("SURB route", "err", err)
		return nil
	}
	id := randomID()
	sb, keys, err := t.geo.NewSURB(rand.Reader, rt.hops, &sphinx.Destination{Recipient: t.me, SURBID: id})
	if err != nil {
		t.log.Debug("SURB", "err", err)
		return nil
	}
	return &readySURB{gen: gen, id: id, surb: mix.SURB{Epoch: rt.epoch, SURB: sb},
		entry: &surbEntry{keys: keys, epoch: rt.epoch, delays: rt.delays, created: now}}
}

func (f *factory) buildAck(rng *mrand.Rand, now time.Time) *readyAck {
	t := f.t
	gen := f.gen.Load()
	rt, err := t.routes.toSelf(rng, t.profile.HopDelay, now)
	if err != nil {
		t.log.Debug("ack route", "err", err)
		return nil
	}
	id := randomID()
	pkt, err := t.ackGeo.NewPacket(rand.Reader, rt.hops, &sphinx.Destination{Recipient: t.me, SURBID: id}, nil)
	if err != nil {
		t.log.Debug("ack packet", "err", err)
		return nil
	}
	return &readyAck{gen: gen, id: id, first: rt.hops[0].ID, epoch: rt.epoch, pkt: pkt, delays: rt.delays}
}
