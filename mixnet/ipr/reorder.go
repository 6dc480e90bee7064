package ipr

import (
	"slices"
	"time"
)

// DefaultReorderMax bounds the messages a Reorderer holds.
const DefaultReorderMax = 1024

// Reorderer releases the messages of one stream in id order. A message that
// comes before an earlier one is held until the gap fills or Hold passes
// (the missing message was lost, or is very late); then it and the
// messages after it go, and the missing one goes whenever it comes. The
// mixes' random delays reorder packets, and TCP takes reordering for loss.
// Not safe for concurrent use.
type Reorderer[T any] struct {
	// Hold bounds how long a message waits for the ones before it; Max
	// bounds the messages held (default DefaultReorderMax): beyond it the
	// oldest gap is given up.
	Hold time.Duration
	Max  int

	next  uint32
	held  map[uint32]held[T]
	begun bool
}

type held[T any] struct {
	v  T
	at time.Time
}

// Reset starts the order at id: held messages before it are released
// (in order), and later ones wait for it.
func (r *Reorderer[T]) Reset(id uint32) (ready []T) {
	r.begun, r.next = true, id
	var early []uint32
	for k := range r.held {
		if k < id {
			early = append(early, k)
		}
	}
	slices.Sort(early)
	for _, k := range early {
		ready = append(ready, r.held[k].v)
		delete(r.held, k)
	}
	return append(ready, r.release()...)
}

// Push takes message id and returns what is now ready, in order.
func (r *Reorderer[T]) Push(id uint32, v T, now time.Time) []T {
	if !r.begun {
		r.begun, r.next = true, id
	}
	switch {
	case id < r.next:
		return []T{v} // after its gap was given up: late, but wanted
	case id == r.next:
		r.next++
		return append([]T{v}, r.release()...)
	}
	if r.held == nil {
		r.held = map[uint32]held[T]{}
	}
	if _, dup := r.held[id]; !dup {
		r.held[id] = held[T]{v, now}
	}
	max := r.Max
	if max <= 0 {
		max = DefaultReorderMax
	}
	var out []T
	for len(r.held) > max {
		out = append(out, r.skip()...)
	}
	return out
}

// Expire gives up the gaps that messages have waited Hold for and returns
// what is then ready.
func (r *Reorderer[T]) Expire(now time.Time) []T {
	var out []T
	for {
		at, ok := r.oldest()
		if !ok || now.Sub(at) < r.Hold {
			return out
		}
		out = append(out, r.skip()...)
	}
}

// Deadline is when Expire has something to do (zero: nothing is held).
func (r *Reorderer[T]) Deadline() time.Time {
	at, ok := r.oldest()
	if !ok {
		return time.Time{}
	}
	return at.Add(r.Hold)
}

// Held is the number of messages held.
func (r *Reorderer[T]) Held() int { return len(r.held) }

func (r *Reorderer[T]) oldest() (time.Time, bool) {
	var at time.Time
	ok := false
	for _, h := range r.held {
		if !ok || h.at.Before(at) {
			at, ok = h.at, true
		}
	}
	return at, ok
}

// skip moves next to the lowest held id and releases from there.
func (r *Reorderer[T]) skip() []T {
	first := true
	var low uint32
	for k := range r.held {
		if first || k < low {
			low, first = k, false
		}
	}
	if first {
		return nil
	}
	r.next = low
	return r.release()
}

// release hands out the held messages from next on, while there is no gap.
func (r *Reorderer[T]) release() []T {
	var out []T
	for {
		h, ok := r.held[r.next]
		if !ok {
			return out
		}
		delete(r.held, r.next)
		out = append(out, h.v)
		r.next++
	}
}
