package api

// Apply folds an event of GET /v1/events into s, so a client that keeps the
// first event's Status and applies every later event holds the daemon's
// current Status. An all-zero Traffic or Mixnet clears it (the daemon sends
// one when the tunnel goes down). Apply keeps s.Caller when the event
// carries a Status without one.
func (s *Status) Apply(e Event) {
	if e.Status != nil {
		caller := s.Caller
		*s = *e.Status
		if s.Caller == nil {
			s.Caller = caller
		}
	}
	if e.State != nil {
		s.State = *e.State
	}
	if e.Settings != nil {
		s.Settings = *e.Settings
	}
	if e.Traffic != nil {
		if *e.Traffic == (Traffic{}) {
			s.Traffic = nil
		} else {
			t := *e.Traffic
			s.Traffic = &t
		}
	}
	if e.Target != "" {
		s.Target = e.Target
	}
	if e.Tickets != nil {
		t := *e.Tickets
		s.Tickets = &t
	}
	if e.Mixnet != nil {
		if *e.Mixnet == (MixnetStats{}) {
			s.Mixnet = nil
		} else {
			m := *e.Mixnet
			s.Mixnet = &m
		}
	}
}
