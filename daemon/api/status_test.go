package api

import (
	"testing"
	"time"
)

func TestStatusApply(t *testing.T) {
	var s Status
	s.Apply(Event{Seq: 1, Status: &Status{State: State{Kind: Disconnected}, Target: "disconnected",
		Settings: DefaultSettings(), Caller: &Caller{UID: 1000}}})
	if s.State.Kind != Disconnected || s.Caller == nil || s.Caller.UID != 1000 {
		t.Fatalf("after status: %+v", s)
	}
	s.Apply(Event{Seq: 2, Target: "connected", State: &State{Kind: Connecting, Stage: "x", Attempt: 1}})
	if s.Target != "connected" || s.State.Kind != Connecting || s.State.Attempt != 1 {
		t.Fatalf("after state: %+v", s)
	}
	now := time.Now()
	s.Apply(Event{Seq: 3, Traffic: &Traffic{TxBytes: 5, LastHandshake: &now}})
	if s.Traffic == nil || s.Traffic.TxBytes != 5 {
		t.Fatalf("after traffic: %+v", s.Traffic)
	}
	set := DefaultSettings()
	set.Entry = "DE"
	s.Apply(Event{Seq: 4, Settings: &set, Traffic: &Traffic{}})
	if s.Traffic != nil || s.Settings.Entry != "DE" {
		t.Fatalf("after clearing traffic: %+v", s)
	}
	// A new full status without a caller keeps the one we had.
	s.Apply(Event{Status: &Status{State: State{Kind: Offline}}})
	if s.State.Kind != Offline || s.Caller == nil {
		t.Fatalf("after second status: %+v", s)
	}
}

func TestStatusApplyTickets(t *testing.T) {
	var s Status
	s.Apply(Event{Seq: 1, Status: &Status{State: State{Kind: Disconnected}}})
	if s.Tickets != nil {
		t.Fatalf("tickets from nowhere: %+v", s.Tickets)
	}
	s.Apply(Event{Seq: 2, Tickets: &Tickets{Account: true, Left: map[string]int{TicketFastEntry: 50}}})
	if s.Tickets == nil || !s.Tickets.Account || s.Tickets.Left[TicketFastEntry] != 50 {
		t.Fatalf("after tickets: %+v", s.Tickets)
	}
	s.Apply(Event{Seq: 3, Tickets: &Tickets{}})
	if s.Tickets == nil || s.Tickets.Account {
		t.Fatalf("after forgetting: %+v", s.Tickets)
	}
}

func TestStatusApplyMixnet(t *testing.T) {
	var s Status
	s.Apply(Event{Seq: 1, Status: &Status{State: State{Kind: Connected, Mode: ModeMixnet},
		Mixnet: &MixnetStats{Profile: ProfileMax, CoverPackets: 3}}})
	if s.Mixnet == nil || s.Mixnet.CoverPackets != 3 {
		t.Fatalf("after status: %+v", s.Mixnet)
	}
	e := &MixnetStats{Profile: ProfileMax, RealPackets: 1, CoverPackets: 9, ExitRTTMs: 142.5}
	s.Apply(Event{Seq: 2, Mixnet: e})
	e.RealPackets = 100 // the event's value was copied
	if s.Mixnet == nil || s.Mixnet.RealPackets != 1 || s.Mixnet.CoverPackets != 9 || s.Mixnet.ExitRTTMs != 142.5 {
		t.Fatalf("after mixnet: %+v", s.Mixnet)
	}
	s.Apply(Event{Seq: 3, Traffic: &Traffic{TxBytes: 1}})
	if s.Mixnet == nil {
		t.Fatal("an event without mixnet statistics cleared them")
	}
	s.Apply(Event{Seq: 4, Mixnet: &MixnetStats{}})
	if s.Mixnet != nil {
		t.Fatalf("after clearing: %+v", s.Mixnet)
	}
}
