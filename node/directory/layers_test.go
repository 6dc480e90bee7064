package directory

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

func mixWithKeys(id string, epochs ...uint64) Node {
	n := mixnode(id, testKey(40))
	n.Layer = 0
	n.SphinxKeys = nil
	for _, e := range epochs {
		n.SphinxKeys = append(n.SphinxKeys, SphinxKey{Epoch: e, PublicKey: key32(byte(e) + 1)})
	}
	return n
}

func TestAssignLayersBalancedDeterministic(t *testing.T) {
	for _, count := range []int{0, 1, 2, 3, 5, 6, 7, 100} {
		var nodes []Node
		for i := range count {
			nodes = append(nodes, mixWithKeys(fmt.Sprintf("mix-%d", i), 7, 8))
		}
		nodes = append(nodes, gateway("gw-1", "DE", testKey(41)))
		AssignLayers(nodes, 7)
		sizes := map[int]int{}
		for _, n := range nodes {
			sizes[n.Layer]++
		}
		if sizes[0] != 1 {
			t.Errorf("%d mixes: %d nodes without a layer, want only the gateway", count, sizes[0])
		}
		lo, hi := count, 0
		for l := 1; l <= Layers; l++ {
			lo, hi = min(lo, sizes[l]), max(hi, sizes[l])
		}
		if count > 0 && hi-lo > 1 {
			t.Errorf("%d mixes: layer sizes %v not balanced", count, sizes)
		}
		// Same input in another order: same assignment.
		again := make([]Node, len(nodes))
		for i := range nodes {
			again[len(nodes)-1-i] = nodes[i].clone()
			again[len(nodes)-1-i].Layer = 3
		}
		AssignLayers(again, 7)
		want := map[string]int{}
		for _, n := range nodes {
			want[n.ID] = n.Layer
		}
		for _, n := range again {
			if want[n.ID] != n.Layer {
				t.Fatalf("%d mixes: %s in layer %d, then %d: not deterministic", count, n.ID, want[n.ID], n.Layer)
			}
		}
	}
}

func TestAssignLayersPerEpoch(t *testing.T) {
	var nodes []Node
	for i := range 30 {
		nodes = append(nodes, mixWithKeys(fmt.Sprintf("mix-%d", i), 1, 2))
	}
	nodes = append(nodes, mixWithKeys("no-key", 9))
	AssignLayers(nodes, 1)
	first := map[string]int{}
	for _, n := range nodes {
		first[n.ID] = n.Layer
	}
	if first["no-key"] != 0 {
		t.Error("a mix without a key for the epoch got a layer")
	}
	AssignLayers(nodes, 2)
	moved := 0
	for _, n := range nodes {
		if first[n.ID] != n.Layer {
			moved++
		}
	}
	if moved == 0 {
		t.Error("layers did not change from one epoch to the next")
	}
}

// The served topology assigns layers and publishes the current and the next
// epoch's Sphinx keys only, whatever the nodes announced.
func TestServerLayersAndKeys(t *testing.T) {
	d := newTestDir(t, ServerConfig{EpochLength: time.Minute})
	epoch, start := EpochAt(t0, time.Minute)
	for i := range 6 {
		n := mixWithKeys(fmt.Sprintf("mix-%d", i), epoch-1, epoch, epoch+1, epoch+2)
		n.Layer = 3
		if err := d.srv.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	late := mixWithKeys("mix-late", epoch+1)
	if err := d.srv.Add(late); err != nil {
		t.Fatal(err)
	}
	top, err := d.client().Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for l := 1; l <= Layers; l++ {
		if got := len(top.Layer(l)); got != 2 {
			t.Errorf("layer %d has %d mixes, want 2", l, got)
		}
	}
	for _, n := range top.Nodes {
		if n.ID == "mix-late" {
			if n.Layer != 0 {
				t.Errorf("mix-late has no key for epoch %d but got layer %d", epoch, n.Layer)
			}
			continue
		}
		if len(n.SphinxKeys) != 2 || n.SphinxKeys[0].Epoch != epoch || n.SphinxKeys[1].Epoch != epoch+1 {
			t.Errorf("%s: published keys %+v, want epochs %d and %d", n.ID, n.SphinxKeys, epoch, epoch+1)
		}
	}
	// Next epoch: re-signed, mix-late now has a current key and a layer.
	d.clock.Set(start.Add(time.Minute + time.Second))
	top, err = d.client().Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if top.Epoch != epoch+1 {
		t.Fatalf("epoch %d, want %d", top.Epoch, epoch+1)
	}
	if n, _ := top.Node("mix-late"); n.Layer == 0 {
		t.Error("mix-late has a key for the new epoch but no layer")
	}
	if n, _ := top.Node("mix-0"); len(n.SphinxKeys) != 2 || n.SphinxKeys[0].Epoch != epoch+1 {
		t.Errorf("mix-0 keys in the next epoch: %+v", n.SphinxKeys)
	}
}

// AnnounceFunc announces the node's current record, and at once when told
// it changed.
func TestAnnounceFuncChanged(t *testing.T) {
	s, err := NewServer(ServerConfig{Key: testKey(1), Open: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	go s.Serve(sctx, ln)
	dirURL := s.URL("http://" + ln.Addr().String())

	k := testKey(61)
	epoch, _ := EpochAt(time.Now(), DefaultEpochLength)
	var mu sync.Mutex
	n := mixnode("mix-rot", k)
	n.SphinxKeys = []SphinxKey{{Epoch: epoch, PublicKey: key32(1)}}
	get := func() Node {
		mu.Lock()
		defer mu.Unlock()
		return n.clone()
	}
	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- AnnounceFunc(ctx, dirURL, get, k, time.Hour, changed, nil) }()
	waitKey := func(want Key32) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if m, ok := s.Topology().Node("mix-rot"); ok {
				if got, _ := m.SphinxKey(epoch + 1); got == want {
					return
				}
				if got, _ := m.SphinxKey(epoch); got == want {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("directory never listed key %v", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitKey(key32(1))
	mu.Lock()
	n.SphinxKeys = append(n.SphinxKeys, SphinxKey{Epoch: epoch + 1, PublicKey: key32(2)})
	mu.Unlock()
	changed <- struct{}{}
	waitKey(key32(2))
	cancel()
	<-done
}
