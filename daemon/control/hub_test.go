package control

import (
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

func TestHubPublishesOnlyChanges(t *testing.T) {
	h := NewHub(initialStatus())
	_, ev, cancel := h.Subscribe(16)
	defer cancel()
	st := api.State{Kind: api.Connecting, Stage: "a", Attempt: 1}
	h.SetState(st)
	h.SetState(st) // no change
	h.SetTarget("connected")
	h.SetTarget("connected")
	set := api.DefaultSettings()
	h.SetSettings(set) // same as initial
	set.Exit = "CH"
	h.SetSettings(set)
	h.SetTraffic(nil) // already nil
	h.SetTraffic(&api.Traffic{TxBytes: 1})
	cancel()
	var got []api.Event
	for e := range ev {
		got = append(got, e)
	}
	if len(got) != 4 {
		t.Fatalf("got %d events, want 4: %+v", len(got), got)
	}
	for i, e := range got {
		if e.Seq != uint64(i+2) {
			t.Errorf("event %d: seq %d", i, e.Seq)
		}
	}
	if got[0].State == nil || got[1].Target != "connected" || got[2].Settings == nil || got[2].Settings.Exit != "CH" || got[3].Traffic == nil {
		t.Fatalf("events %+v", got)
	}
	// Each event carries only what changed.
	if got[0].Settings != nil || got[0].Traffic != nil || got[0].Target != "" || got[0].Status != nil {
		t.Errorf("state event carries more: %+v", got[0])
	}
}

func TestHubCopies(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("10.1.0.2")}
	h := NewHub(initialStatus())
	st := api.State{Kind: api.Connected, Addresses: addrs, Entry: &api.Gateway{ID: "a", Roles: []string{"entry"}}}
	h.SetState(st)
	addrs[0] = netip.MustParseAddr("10.9.9.9")
	st.Entry.ID = "changed"
	got := h.Status()
	if got.State.Addresses[0] != netip.MustParseAddr("10.1.0.2") || got.State.Entry.ID != "a" {
		t.Fatalf("hub shares memory with its caller: %+v", got.State)
	}
	got.State.Entry.Roles[0] = "x"
	if h.Status().State.Entry.Roles[0] != "entry" {
		t.Fatal("Status returns shared memory")
	}
	notices := []string{"the settings file was corrupt"}
	h3 := NewHub(api.Status{Notices: notices})
	notices[0] = "changed"
	if h3.Status().Notices[0] != "the settings file was corrupt" {
		t.Error("hub shares its notices with its caller")
	}
	h2 := NewHub(api.Status{Caller: &api.Caller{UID: 5}})
	if h2.Status().Caller != nil {
		t.Error("hub keeps a caller")
	}
}

// TestHubSubscribeAtomic races subscribers against a publisher: every
// subscriber's snapshot plus its events must count up without a gap or a
// repeat.
func TestHubSubscribeAtomic(t *testing.T) {
	h := NewHub(initialStatus())
	const n = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			h.SetTraffic(&api.Traffic{TxBytes: int64(i)})
		}
	}()
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, ev, cancel := h.Subscribe(n + 1)
			defer cancel()
			last := int64(0)
			if first.Traffic != nil {
				last = first.Traffic.TxBytes
			}
			seq := uint64(1)
			for last < n {
				e, ok := <-ev
				if !ok {
					t.Error("subscriber with room for everything was dropped")
					return
				}
				if e.Seq != seq+1 || e.Traffic == nil || e.Traffic.TxBytes != last+1 {
					t.Errorf("after seq %d / traffic %d got %+v", seq, last, e)
					return
				}
				seq, last = e.Seq, e.Traffic.TxBytes
			}
		}()
	}
	wg.Wait()
}

func TestHubDropsSlowSubscriber(t *testing.T) {
	h := NewHub(initialStatus())
	_, slow, cancelSlow := h.Subscribe(2)
	defer cancelSlow()
	_, fast, cancelFast := h.Subscribe(1000)
	defer cancelFast()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			h.SetTraffic(&api.Traffic{TxBytes: int64(i + 1)})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publisher blocked on a subscriber that does not read")
	}
	var got []uint64
	for e := range slow {
		got = append(got, e.Seq)
	}
	if !reflect.DeepEqual(got, []uint64{2, 3}) {
		t.Fatalf("slow subscriber got seqs %v, want [2 3] then a closed channel", got)
	}
	if n := h.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers, want 1", n)
	}
	if len(fast) != 100 {
		t.Fatalf("fast subscriber has %d events, want 100", len(fast))
	}
	cancelSlow() // after the drop: no double close
	cancelSlow()
}

// TestHubMixnet: mixnet statistics are published when they change, copied,
// and cleared with an all-zero event that api.Status.Apply understands.
func TestHubMixnet(t *testing.T) {
	h := NewHub(initialStatus())
	first, ev, cancel := h.Subscribe(16)
	defer cancel()
	if first.Mixnet != nil {
		t.Fatalf("mixnet statistics from nowhere: %+v", first.Mixnet)
	}
	h.SetMixnet(nil) // already none
	m := &api.MixnetStats{Profile: api.ProfileMax, RealPackets: 3, CoverPackets: 40, ExitRTTMs: 142.5}
	h.SetMixnet(m)
	// The hub keeps its own copy.
	m.RealPackets = 99
	// No change.
	h.SetMixnet(&api.MixnetStats{Profile: api.ProfileMax, RealPackets: 3, CoverPackets: 40, ExitRTTMs: 142.5})
	if got := h.Status().Mixnet; got == nil || got.RealPackets != 3 {
		t.Fatalf("status %+v", got)
	}
	h.Status().Mixnet.RealPackets = 7
	if h.Status().Mixnet.RealPackets != 3 {
		t.Fatal("Status returns shared memory")
	}
	h.SetMixnet(&api.MixnetStats{Profile: api.ProfileMax, RealPackets: 4, CoverPackets: 41, ExitRTTMs: 140})
	h.SetMixnet(nil)
	cancel()
	var got []api.Event
	for e := range ev {
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("got %d events, want 3: %+v", len(got), got)
	}
	st := first
	for i, e := range got {
		if e.Mixnet == nil || e.State != nil || e.Traffic != nil {
			t.Fatalf("event %d carries %+v", i, e)
		}
		st.Apply(e)
		if i == 1 && (st.Mixnet == nil || st.Mixnet.RealPackets != 4 || st.Mixnet.CoverPackets != 41) {
			t.Fatalf("after event %d: %+v", i, st.Mixnet)
		}
	}
	if got[0].Mixnet.RealPackets != 3 || st.Mixnet != nil || h.Status().Mixnet != nil {
		t.Fatalf("first event %+v; after clearing %+v, hub %+v", got[0].Mixnet, st.Mixnet, h.Status().Mixnet)
	}
}
