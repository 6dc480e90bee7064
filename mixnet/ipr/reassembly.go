package ipr

import (
	"fmt"
	"time"
)

// Reassembly defaults.
const (
	// DefaultMaxPending bounds the incomplete messages of one stream.
	DefaultMaxPending = 256
	// DefaultMaxAge drops an incomplete message this long after its first
	// fragment arrived: its sender has long given up retransmitting it.
	DefaultMaxAge = time.Minute
	// Window is how far back the Reassembler remembers completed message
	// ids: a fragment of a message that old is a duplicate.
	Window = 4096
)

// Reassembler puts the messages of one stream (one session, one direction)
// together from their fragments, in any order, and drops duplicates: a
// fragment sent again because its ack was lost, or a fragment of a message
// already complete. Message ids must grow (by one per message, as senders
// number them); an id more than Window below the highest complete one is
// taken for a duplicate. Not safe for concurrent use.
type Reassembler struct {
	// MaxPending and MaxAge default to DefaultMaxPending and DefaultMaxAge.
	MaxPending int
	MaxAge     time.Duration

	pending map[uint32]*partial
	// done marks complete ids in (high-Window, high], bit i for high-i.
	high  uint32
	begun bool
	done  [Window / 64]uint64

	// Dropped counts incomplete messages given up (too old, too many).
	Dropped uint64
	// Duplicates counts fragments that added nothing.
	Duplicates uint64
}

type partial struct {
	first time.Time
	count uint8
	have  int
	parts [][]byte
	size  int
}

// Add takes one fragment (data is copied when kept). It returns the whole
// message when this fragment completed it, or nil; dup reports a fragment
// that added nothing.
func (r *Reassembler) Add(id uint32, index, count uint8, data []byte, now time.Time) (msg []byte, dup bool, err error) {
	if err := checkIndex(index, count); err != nil {
		return nil, false, err
	}
	if r.isDone(id) {
		r.Duplicates++
		return nil, true, nil
	}
	if count == 1 {
		r.markDone(id)
		return append([]byte(nil), data...), false, nil
	}
	if r.pending == nil {
		r.pending = map[uint32]*partial{}
	}
	p := r.pending[id]
	if p == nil {
		r.expire(now)
		p = &partial{first: now, count: count, parts: make([][]byte, count)}
		r.pending[id] = p
	}
	if p.count != count {
		return nil, false, fmt.Errorf("%w: message %d has %d fragments, this one says %d", ErrMalformed, id, p.count, count)
	}
	if p.parts[index] != nil {
		r.Duplicates++
		return nil, true, nil
	}
	p.parts[index] = append(make([]byte, 0, max(len(data), 1)), data...)
	p.have++
	p.size += len(data)
	if p.have < int(p.count) {
		return nil, false, nil
	}
	delete(r.pending, id)
	r.markDone(id)
	msg = make([]byte, 0, p.size)
	for _, part := range p.parts {
		msg = append(msg, part...)
	}
	return msg, false, nil
}

// Pending is the number of incomplete messages held.
func (r *Reassembler) Pending() int { return len(r.pending) }

// expire drops incomplete messages older than MaxAge, and the oldest ones
// beyond MaxPending-1 (room for one more).
func (r *Reassembler) expire(now time.Time) {
	maxAge, maxPending := r.MaxAge, r.MaxPending
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	for id, p := range r.pending {
		if now.Sub(p.first) > maxAge {
			delete(r.pending, id)
			r.Dropped++
		}
	}
	for len(r.pending) >= maxPending {
		var oldest uint32
		var at time.Time
		first := true
		for id, p := range r.pending {
			if first || p.first.Before(at) || (p.first.Equal(at) && id < oldest) {
				oldest, at, first = id, p.first, false
			}
		}
		delete(r.pending, oldest)
		r.Dropped++
	}
}

func (r *Reassembler) isDone(id uint32) bool {
	if !r.begun || id > r.high {
		return false
	}
	d := r.high - id
	if d >= Window {
		return true // too old to tell: treat as seen
	}
	return r.done[d/64]&(1<<(d%64)) != 0
}

func (r *Reassembler) markDone(id uint32) {
	if !r.begun {
		r.begun, r.high = true, id
		r.done[0] = 1
		return
	}
	if id > r.high {
		r.shift(id - r.high)
		r.high = id
	}
	d := r.high - id
	if d < Window {
		r.done[d/64] |= 1 << (d % 64)
	}
}

// shift moves the window up by n ids.
func (r *Reassembler) shift(n uint32) {
	if n >= Window {
		r.done = [Window / 64]uint64{}
		return
	}
	words, bits := int(n/64), n%64
	for i := len(r.done) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = r.done[j] << bits
			if bits > 0 && j > 0 {
				v |= r.done[j-1] >> (64 - bits)
			}
		}
		r.done[i] = v
	}
}
