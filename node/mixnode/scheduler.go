package mixnode

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// scheduler holds packets for their delay: a min-heap by due time served by
// one goroutine and one timer, bounded to max packets.
type scheduler struct {
	max  int
	wake chan struct{}

	mu sync.Mutex
	h  delayHeap
}

type delayedOut struct {
	due time.Time
	o   out
}

type delayHeap []delayedOut

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayedOut)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = delayedOut{}
	*h = old[:len(old)-1]
	return x
}

func newScheduler(max int) *scheduler {
	return &scheduler{max: max, wake: make(chan struct{}, 1)}
}

// add schedules o for due; false if the scheduler is full.
func (s *scheduler) add(due time.Time, o out) bool {
	s.mu.Lock()
	if len(s.h) >= s.max {
		s.mu.Unlock()
		return false
	}
	heap.Push(&s.h, delayedOut{due: due, o: o})
	first := s.h[0].due.Equal(due)
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// run sends each packet to dispatch when due, until ctx ends; then it hands
// what is left to drop.
func (s *scheduler) run(ctx context.Context, dispatch, drop func(out)) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var due []out
	for {
		s.mu.Lock()
		now := time.Now()
		due = due[:0]
		for len(s.h) > 0 && !s.h[0].due.After(now) {
			due = append(due, heap.Pop(&s.h).(delayedOut).o)
		}
		var wait time.Duration = -1
		if len(s.h) > 0 {
			wait = s.h[0].due.Sub(now)
		}
		s.mu.Unlock()
		for i := range due {
			dispatch(due[i])
			due[i] = out{}
		}
		if len(due) > 0 {
			continue
		}
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			s.mu.Lock()
			left := s.h
			s.h = nil
			s.mu.Unlock()
			for _, d := range left {
				drop(d.o)
			}
			return
		case <-s.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// len is the number of packets held.
func (s *scheduler) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}
