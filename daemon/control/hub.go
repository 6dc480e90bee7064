package control

import (
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// Hub holds the daemon's published Status and fans its changes out to
// subscribers (GET /v1/events). The daemon changes the Status only through
// the Set methods; each publishes one Event carrying only what changed, and
// a Set that changes nothing publishes nothing.
//
// Publishing never blocks: a subscriber whose buffer is full is dropped (its
// channel is closed). The server then ends that client's stream, and the
// client reconnects and starts over from a fresh full Status, so a slow
// client can miss changes but never sees a wrong state.
//
// The Status and Events a Hub hands out are copies or are shared read-only
// between subscribers: receivers must not modify them.
type Hub struct {
	mu   sync.Mutex
	st   api.Status
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch  chan api.Event
	seq uint64
}

// NewHub returns a Hub publishing initial (without its Caller, which the
// server fills in per request).
func NewHub(initial api.Status) *Hub {
	st := cloneStatus(initial)
	st.Caller = nil
	return &Hub{st: st, subs: make(map[*subscriber]struct{})}
}

// Status returns a copy of the current Status.
func (h *Hub) Status() api.Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return cloneStatus(h.st)
}

// SetState publishes the tunnel's state.
func (h *Hub) SetState(s api.State) {
	s = cloneState(s)
	h.mu.Lock()
	defer h.mu.Unlock()
	if reflect.DeepEqual(h.st.State, s) {
		return
	}
	h.st.State = s
	e := cloneState(s)
	h.publish(api.Event{State: &e})
}

// SetSettings publishes the user's settings.
func (h *Hub) SetSettings(s api.Settings) {
	s = cloneSettings(s)
	h.mu.Lock()
	defer h.mu.Unlock()
	if reflect.DeepEqual(h.st.Settings, s) {
		return
	}
	h.st.Settings = s
	e := cloneSettings(s)
	h.publish(api.Event{Settings: &e})
}

// SetTraffic publishes the tunnel's traffic counters; nil clears them (when
// the tunnel goes down), which is published as an all-zero Traffic (see
// api.Status.Apply).
func (h *Hub) SetTraffic(t *api.Traffic) {
	t = cloneTraffic(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	if reflect.DeepEqual(h.st.Traffic, t) {
		return
	}
	h.st.Traffic = t
	e := api.Traffic{}
	if t != nil {
		e = *cloneTraffic(t)
	}
	h.publish(api.Event{Traffic: &e})
}

// SetMixnet publishes a mixnet-mode tunnel's statistics; nil clears them
// (when the tunnel goes down), which is published as an all-zero
// MixnetStats (see api.Status.Apply). Unchanged statistics publish
// nothing; the daemon calls it about once a second, so the cover and loop
// packets that change the counts all the time cost one event a second.
func (h *Hub) SetMixnet(m *api.MixnetStats) {
	if m != nil {
		c := *m
		m = &c
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if reflect.DeepEqual(h.st.Mixnet, m) {
		return
	}
	h.st.Mixnet = m
	e := api.MixnetStats{}
	if m != nil {
		e = *m
	}
	h.publish(api.Event{Mixnet: &e})
}

// SetTarget publishes what the user asked for: "connected" or
// "disconnected".
func (h *Hub) SetTarget(target string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.st.Target == target {
		return
	}
	h.st.Target = target
	h.publish(api.Event{Target: target})
}

// Subscribe returns the current Status and a channel of the changes after
// it, registered atomically with taking the Status, so no change is missed
// or seen twice. The Status is event 1 of the stream; the channel's events
// have Seq 2, 3, … without gaps. buffer (at least 1) is how many events may
// wait unread; on overflow the subscriber is dropped and the channel closed.
// cancel unsubscribes (and closes the channel if still open); it may be
// called more than once.
func (h *Hub) Subscribe(buffer int) (first api.Status, events <-chan api.Event, cancel func()) {
	if buffer < 1 {
		buffer = 1
	}
	sub := &subscriber{ch: make(chan api.Event, buffer), seq: 1}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[sub] = struct{}{}
	return cloneStatus(h.st), sub.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[sub]; ok {
			delete(h.subs, sub)
			close(sub.ch)
		}
	}
}

// Subscribers returns how many subscribers are registered.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// publish sends e to every subscriber, dropping those that are full. h.mu
// is held.
func (h *Hub) publish(e api.Event) {
	for sub := range h.subs {
		sub.seq++
		e.Seq = sub.seq
		select {
		case sub.ch <- e:
		default:
			delete(h.subs, sub)
			close(sub.ch)
		}
	}
}

func cloneStatus(s api.Status) api.Status {
	s.State = cloneState(s.State)
	s.Settings = cloneSettings(s.Settings)
	s.Traffic = cloneTraffic(s.Traffic)
	s.Notices = slices.Clone(s.Notices)
	s.Tickets = cloneTickets(s.Tickets)
	if s.Mixnet != nil {
		m := *s.Mixnet
		s.Mixnet = &m
	}
	if s.Caller != nil {
		c := *s.Caller
		s.Caller = &c
	}
	return s
}

func cloneState(s api.State) api.State {
	s.Since = cloneTime(s.Since)
	s.NextAttempt = cloneTime(s.NextAttempt)
	s.Entry = cloneGateway(s.Entry)
	s.Exit = cloneGateway(s.Exit)
	s.Addresses = slices.Clone(s.Addresses)
	s.DNS = slices.Clone(s.DNS)
	return s
}

func cloneSettings(s api.Settings) api.Settings {
	s.DNS = slices.Clone(s.DNS)
	return s
}

func cloneTraffic(t *api.Traffic) *api.Traffic {
	if t == nil {
		return nil
	}
	c := *t
	c.LastHandshake = cloneTime(c.LastHandshake)
	return &c
}

func cloneGateway(g *api.Gateway) *api.Gateway {
	if g == nil {
		return nil
	}
	c := *g
	c.Roles = slices.Clone(c.Roles)
	return &c
}

func cloneTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}
