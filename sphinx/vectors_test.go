package sphinx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json and the fuzz seed corpora")

const vectorsFile = "testdata/vectors.json"

type vectorFile struct {
	Comment string   `json:"comment"`
	Vectors []vector `json:"vectors"`
}

type vectorHop struct {
	PrivateKey string `json:"private_key"`
	PublicKey  string `json:"public_key"`
	ID         string `json:"id"`
	DelayUS    int64  `json:"delay_us"`
}

// vectorStep is what one hop's Unwrap returns.
type vectorStep struct {
	ReplayTag    string `json:"replay_tag"`
	DelayUS      int64  `json:"delay_us"`
	NextHop      string `json:"next_hop,omitempty"`
	PacketSHA256 string `json:"packet_sha256,omitempty"` // relay: processed packet
	Recipient    string `json:"recipient,omitempty"`     // final
	SURBID       string `json:"surb_id,omitempty"`       // final
	IsReply      bool   `json:"is_reply,omitempty"`      // final
	Payload      string `json:"payload,omitempty"`       // final: message or encrypted reply
}

type vector struct {
	Name            string       `json:"name"`
	Kind            string       `json:"kind"` // "forward" or "surb-reply"
	Hops            int          `json:"geometry_hops"`
	PlaintextLength int          `json:"geometry_plaintext"`
	Route           []vectorHop  `json:"route"`
	Recipient       string       `json:"recipient"`
	SURBID          string       `json:"surb_id"`
	Randomness      string       `json:"randomness"` // every byte NewPacket/NewSURB reads, in order
	Message         string       `json:"message"`
	SURB            string       `json:"surb,omitempty"`      // surb-reply: serialized SURB
	SURBKeys        string       `json:"surb_keys,omitempty"` // surb-reply: serialized SURBKeys
	Packet          string       `json:"packet"`
	Steps           []vectorStep `json:"steps"`
	Reply           string       `json:"reply,omitempty"` // surb-reply: DecryptReply output
}

func vectorSpecs() []vector {
	return []vector{
		{Name: "forward 4 hops regular", Kind: "forward", Hops: MaxHops, PlaintextLength: RegularPlaintextLength,
			Message: hex.EncodeToString([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))},
		{Name: "forward 5 hops full regular", Kind: "forward", Hops: MaxHops, PlaintextLength: RegularPlaintextLength,
			Message: hex.EncodeToString(bytes.Repeat([]byte{0xa5}, RegularPlaintextLength))},
		{Name: "forward 1 hop small geometry", Kind: "forward", Hops: 2, PlaintextLength: 16,
			Message: hex.EncodeToString([]byte("tiny"))},
		{Name: "surb-ack 4 hops", Kind: "surb-reply", Hops: MaxHops, PlaintextLength: AckPlaintextLength,
			Message: hex.EncodeToString([]byte("0123456789abcdef\x00\x00\x00\x01\x07"))},
		{Name: "surb reply 3 hops regular", Kind: "surb-reply", Hops: MaxHops, PlaintextLength: RegularPlaintextLength,
			Message: hex.EncodeToString([]byte("reply from the exit gateway"))},
	}
}

func vectorRouteLen(v *vector) int {
	switch v.Name {
	case "forward 5 hops full regular":
		return 5
	case "forward 1 hop small geometry":
		return 1
	case "surb reply 3 hops regular":
		return 3
	}
	return 4
}

// generateVector fills in a spec from deterministic randomness.
func generateVector(t *testing.T, v vector) vector {
	t.Helper()
	n := vectorRouteLen(&v)
	v.Route = make([]vectorHop, n)
	for i := range v.Route {
		r := newDetRand(fmt.Sprintf("%s/hop/%d", v.Name, i))
		var priv, id [32]byte
		r.Read(priv[:])
		r.Read(id[:])
		k, err := NewPrivateKey(priv[:])
		if err != nil {
			t.Fatal(err)
		}
		pk := k.Public()
		v.Route[i] = vectorHop{
			PrivateKey: hex.EncodeToString(priv[:]),
			PublicKey:  hex.EncodeToString(pk[:]),
			ID:         hex.EncodeToString(id[:]),
			DelayUS:    int64(1000*(i+1) + 7*i),
		}
	}
	var rcpt Recipient
	var sid SURBID
	r := newDetRand(v.Name + "/dest")
	r.Read(rcpt[:])
	r.Read(sid[:])
	v.Recipient, v.SURBID = hex.EncodeToString(rcpt[:]), hex.EncodeToString(sid[:])
	rec := &recordingReader{r: newDetRand(v.Name + "/packet")}
	runVector(t, &v, rec)
	v.Randomness = hex.EncodeToString(rec.got)
	return v
}

// runVector builds the packet with rand and walks it through the route,
// filling in Packet, SURB, Steps and Reply.
func runVector(t *testing.T, v *vector, rand interface{ Read([]byte) (int, error) }) {
	t.Helper()
	g, err := NewGeometry(v.Hops, v.PlaintextLength)
	if err != nil {
		t.Fatal(err)
	}
	route := make([]Hop, len(v.Route))
	nodes := make([]*Node, len(v.Route))
	for i, h := range v.Route {
		k, err := NewPrivateKey(mustHex(h.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		if got := k.Public(); hex.EncodeToString(got[:]) != h.PublicKey {
			t.Fatalf("%s: hop %d: public key %x, vector says %s", v.Name, i, got, h.PublicKey)
		}
		if nodes[i], err = NewNode(k, g); err != nil {
			t.Fatal(err)
		}
		route[i] = Hop{ID: NodeID(mustHex(h.ID)), PublicKey: k.Public(), Delay: time.Duration(h.DelayUS) * time.Microsecond}
	}
	dest := &Destination{Recipient: Recipient(mustHex(v.Recipient)), SURBID: SURBID(mustHex(v.SURBID))}
	msg := mustHex(v.Message)
	var pkt []byte
	var keys *SURBKeys
	switch v.Kind {
	case "forward":
		if pkt, err = g.NewPacket(rand, route, dest, msg); err != nil {
			t.Fatal(err)
		}
	case "surb-reply":
		var surb *SURB
		if surb, keys, err = g.NewSURB(rand, route, dest); err != nil {
			t.Fatal(err)
		}
		v.SURB = hex.EncodeToString(surb.Bytes())
		kb, err := keys.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		v.SURBKeys = hex.EncodeToString(kb)
		if pkt, err = g.NewPacketFromSURB(surb, msg); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown kind %q", v.Kind)
	}
	v.Packet = hex.EncodeToString(pkt)
	v.Steps = nil
	for i, n := range nodes {
		res, err := n.Unwrap(pkt, nil)
		if err != nil {
			t.Fatalf("%s: hop %d: %v", v.Name, i, err)
		}
		s := vectorStep{ReplayTag: hex.EncodeToString(res.ReplayTag[:]), DelayUS: res.Delay.Microseconds()}
		if res.Final {
			s.Recipient = hex.EncodeToString(res.Recipient[:])
			s.SURBID = hex.EncodeToString(res.SURBID[:])
			s.IsReply = res.IsReply
			s.Payload = hex.EncodeToString(res.Payload)
			if res.IsReply {
				reply, err := g.DecryptReply(keys, res.Payload)
				if err != nil {
					t.Fatalf("%s: %v", v.Name, err)
				}
				v.Reply = hex.EncodeToString(reply)
			}
		} else {
			sum := sha256.Sum256(res.Packet)
			s.NextHop = hex.EncodeToString(res.NextHop[:])
			s.PacketSHA256 = hex.EncodeToString(sum[:])
			pkt = res.Packet
		}
		v.Steps = append(v.Steps, s)
	}
}

func TestVectors(t *testing.T) {
	if *update {
		f := vectorFile{
			Comment: "nymvpn Sphinx test vectors; regenerate with: go test ./sphinx -run 'TestVectors|TestFuzzSeeds' -update. " +
				"Private keys are X25519 private keys; randomness is every byte the builder reads, in order; " +
				"for surb-reply vectors the packet is NewPacketFromSURB(surb, message).",
		}
		for _, spec := range vectorSpecs() {
			f.Vectors = append(f.Vectors, generateVector(t, spec))
		}
		out, err := json.MarshalIndent(&f, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(vectorsFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatalf("%v (regenerate with -update)", err)
	}
	var f vectorFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, want := range f.Vectors {
		t.Run(want.Name, func(t *testing.T) {
			got := want
			rand := bytes.NewReader(mustHex(want.Randomness))
			runVector(t, &got, rand)
			if rand.Len() != 0 {
				t.Errorf("%d bytes of randomness left over", rand.Len())
			}
			if got.Packet != want.Packet {
				t.Errorf("packet differs")
			}
			if got.SURB != want.SURB || got.SURBKeys != want.SURBKeys {
				t.Errorf("SURB differs")
			}
			if len(got.Steps) != len(want.Steps) {
				t.Fatalf("%d steps, want %d", len(got.Steps), len(want.Steps))
			}
			for i := range got.Steps {
				if got.Steps[i] != want.Steps[i] {
					t.Errorf("hop %d:\n got %+v\nwant %+v", i, got.Steps[i], want.Steps[i])
				}
			}
			if got.Reply != want.Reply {
				t.Errorf("reply %s, want %s", got.Reply, want.Reply)
			}
			if want.Kind == "forward" && want.Steps[len(want.Steps)-1].Payload != want.Message {
				t.Errorf("final payload is not the message")
			}
			if want.Kind == "surb-reply" && want.Reply != want.Message {
				t.Errorf("reply is not the message")
			}
		})
	}
}
