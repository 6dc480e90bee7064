package directory

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testKey returns a deterministic ed25519 key.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func key32(b byte) Key32 {
	var k Key32
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func gateway(id, country string, key ed25519.PrivateKey) Node {
	return Node{
		ID:               id,
		Roles:            []Role{RoleEntry, RoleExit},
		Country:          country,
		IdentityKey:      key.Public().(ed25519.PublicKey),
		NoiseKey:         key32(1),
		WireGuardKey:     key32(2),
		RegistrationAddr: "127.0.0.1:4000",
		WireGuardAddr:    "127.0.0.1:51820",
	}
}

func mixnode(id string, key ed25519.PrivateKey) Node {
	return Node{
		ID:          id,
		Roles:       []Role{RoleMixnode},
		Country:     "NL",
		IdentityKey: key.Public().(ed25519.PublicKey),
		NoiseKey:    key32(4),
		MixAddr:     "[::1]:1789",
		Layer:       2,
		SphinxKeys:  []SphinxKey{{Epoch: 7, PublicKey: key32(3)}},
	}
}

func testTopology() *Topology {
	epoch, start := EpochAt(t0, time.Hour)
	return &Topology{
		Epoch:       epoch,
		EpochStart:  start,
		EpochLength: Duration(time.Hour),
		Issued:      t0,
		Expires:     t0.Add(10 * time.Minute),
		Nodes: []Node{
			mixnode("mix-1", testKey(11)),
			gateway("gw-de-1", "DE", testKey(12)),
			gateway("gw-ch-1", "CH", testKey(13)),
		},
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestKey32(t *testing.T) {
	k := key32(9)
	p, err := ParseKey32(k.String())
	if err != nil || p != k {
		t.Fatalf("ParseKey32(String) = %v, %v", p, err)
	}
	for _, s := range []string{
		base64.RawStdEncoding.EncodeToString(k[:]),
		base64.URLEncoding.EncodeToString(k[:]),
		base64.RawURLEncoding.EncodeToString(k[:]),
	} {
		if p, err := ParseKey32(s); err != nil || p != k {
			t.Errorf("ParseKey32(%q) = %v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "!!", base64.StdEncoding.EncodeToString(make([]byte, 31))} {
		if _, err := ParseKey32(s); err == nil {
			t.Errorf("ParseKey32(%q) succeeded", s)
		}
	}
	b, err := json.Marshal(struct{ K Key32 }{k})
	if err != nil || string(b) != `{"K":"`+k.String()+`"}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var v struct{ K Key32 }
	if err := json.Unmarshal(b, &v); err != nil || v.K != k {
		t.Fatalf("unmarshal = %v, %v", v.K, err)
	}
}

func TestDurationJSON(t *testing.T) {
	for in, want := range map[string]time.Duration{
		`3600`: time.Hour, `1.5`: 1500 * time.Millisecond, `"1h"`: time.Hour, `"90s"`: 90 * time.Second,
	} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("unmarshal %s = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{`"x"`, `true`, `1e300`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("unmarshal %s succeeded: %v", in, d)
		}
	}
	if b, _ := json.Marshal(Duration(time.Hour)); string(b) != "3600" {
		t.Errorf("marshal 1h = %s", b)
	}
	if b, _ := json.Marshal(Duration(1500 * time.Millisecond)); string(b) != "1.5" {
		t.Errorf("marshal 1.5s = %s", b)
	}
}

func TestEpochAt(t *testing.T) {
	g := Genesis()
	if g.Format(time.RFC3339) != "2024-01-01T00:00:00Z" {
		t.Fatalf("genesis %v", g)
	}
	cases := []struct {
		now   time.Time
		epoch uint64
		start time.Time
	}{
		{g.Add(-time.Hour), 0, g},
		{g, 0, g},
		{g.Add(59 * time.Minute), 0, g},
		{g.Add(time.Hour), 1, g.Add(time.Hour)},
		{g.Add(25*time.Hour + time.Second), 25, g.Add(25 * time.Hour)},
	}
	for _, c := range cases {
		e, s := EpochAt(c.now, time.Hour)
		if e != c.epoch || !s.Equal(c.start) {
			t.Errorf("EpochAt(%v) = %d, %v; want %d, %v", c.now, e, s, c.epoch, c.start)
		}
	}
}

func TestNodeValidate(t *testing.T) {
	k := testKey(1)
	good := []Node{gateway("gw-de-1", "DE", k), mixnode("m1", k),
		{ID: "issuer-1", Roles: []Role{RoleIssuer}, Country: "US", IdentityKey: k.Public().(ed25519.PublicKey), IssuerURL: "https://issuer.example:8443/v1"}}
	for _, n := range good {
		if err := n.Validate(); err != nil {
			t.Errorf("Validate(%s): %v", n.ID, err)
		}
	}
	bad := map[string]func(n *Node){
		"empty id":         func(n *Node) { n.ID = "" },
		"upper id":         func(n *Node) { n.ID = "GW" },
		"leading dash":     func(n *Node) { n.ID = "-gw" },
		"long id":          func(n *Node) { n.ID = strings.Repeat("a", 65) },
		"no roles":         func(n *Node) { n.Roles = nil },
		"unknown role":     func(n *Node) { n.Roles = []Role{"wizard"} },
		"dup role":         func(n *Node) { n.Roles = []Role{RoleEntry, RoleEntry} },
		"lower country":    func(n *Node) { n.Country = "de" },
		"long country":     func(n *Node) { n.Country = "DEU" },
		"no identity":      func(n *Node) { n.IdentityKey = nil },
		"no noise key":     func(n *Node) { n.NoiseKey = Key32{} },
		"no wg key":        func(n *Node) { n.WireGuardKey = Key32{} },
		"no reg addr":      func(n *Node) { n.RegistrationAddr = "" },
		"no wg addr":       func(n *Node) { n.WireGuardAddr = "" },
		"addr no port":     func(n *Node) { n.WireGuardAddr = "127.0.0.1" },
		"addr port 0":      func(n *Node) { n.RegistrationAddr = "127.0.0.1:0" },
		"addr bad port":    func(n *Node) { n.RegistrationAddr = "127.0.0.1:http" },
		"addr no host":     func(n *Node) { n.RegistrationAddr = ":80" },
		"mix addr":         func(n *Node) { n.MixAddr = "x" },
		"client addr only": func(n *Node) { n.MixClientAddr = "127.0.0.1:1790" },
		"mix no noise key": func(n *Node) { n.Roles = []Role{RoleMixnode}; n.NoiseKey = Key32{}; n.MixAddr = "127.0.0.1:1789" },
		"mix no mix addr":  func(n *Node) { n.Roles = []Role{RoleMixnode} },
		"layer":            func(n *Node) { n.Layer = 4 },
		"zero sphinx key":  func(n *Node) { n.SphinxKeys = []SphinxKey{{Epoch: 1}} },
		"issuer url":       func(n *Node) { n.IssuerURL = "ftp://x" },
		"dup sphinx epoch": func(n *Node) { n.SphinxKeys = []SphinxKey{{1, key32(1)}, {1, key32(2)}} },
	}
	for name, mut := range bad {
		n := gateway("gw-de-1", "DE", k)
		mut(&n)
		if err := n.Validate(); err == nil {
			t.Errorf("%s: Validate succeeded", name)
		} else if !strings.Contains(err.Error(), "node") {
			t.Errorf("%s: error %q does not name the node", name, err)
		}
	}
}

func TestNodeJSON(t *testing.T) {
	n := mixnode("m1", testKey(1))
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "wireguard_key") || strings.Contains(string(b), "registration_addr") {
		t.Errorf("empty optional fields written: %s", b)
	}
	var back Node
	if err := json.Unmarshal(b, &back); err != nil || !nodeEqual(&n, &back) {
		t.Fatalf("round trip: %s → %+v, %v", b, back, err)
	}
}

func TestTopologyQueries(t *testing.T) {
	top := testTopology()
	if n, ok := top.Node("gw-de-1"); !ok || n.Country != "DE" {
		t.Errorf("Node(gw-de-1) = %v, %v", n, ok)
	}
	if _, ok := top.Node("nope"); ok {
		t.Error("Node(nope) found")
	}
	if got := top.WithRole(RoleMixnode); len(got) != 1 || got[0].ID != "mix-1" {
		t.Errorf("WithRole(mixnode) = %v", got)
	}
	if got := top.Gateways(RoleExit, ""); len(got) != 2 {
		t.Errorf("Gateways(exit, any) = %d nodes", len(got))
	}
	if got := top.Gateways(RoleEntry, "ch"); len(got) != 1 || got[0].ID != "gw-ch-1" {
		t.Errorf("Gateways(entry, ch) = %v", got)
	}
	if got := top.Gateways(RoleEntry, "FR"); len(got) != 0 {
		t.Errorf("Gateways(entry, FR) = %v", got)
	}
	if got := top.Countries(RoleExit); strings.Join(got, ",") != "CH,DE" {
		t.Errorf("Countries(exit) = %v", got)
	}
}

func TestSignVerifyTopology(t *testing.T) {
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	top := testTopology()
	doc, err := SignTopology(top, key)
	if err != nil {
		t.Fatal(err)
	}
	if top.Nodes[0].ID != "mix-1" {
		t.Error("SignTopology modified its argument")
	}
	got, err := VerifyTopology(doc, pub, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, n := range got.Nodes {
		ids = append(ids, n.ID)
	}
	if strings.Join(ids, ",") != "gw-ch-1,gw-de-1,mix-1" {
		t.Errorf("nodes not sorted by id: %v", ids)
	}
	if got.Epoch != top.Epoch || !got.Issued.Equal(top.Issued) || time.Duration(got.EpochLength) != time.Hour {
		t.Errorf("round trip: %+v", got)
	}
	if n, _ := got.Node("mix-1"); n.Layer != 2 || len(n.SphinxKeys) != 1 || n.SphinxKeys[0].PublicKey != key32(3) {
		t.Errorf("layer/sphinx keys not passed through: %+v", n)
	}
	// Deterministic: same input, same bytes.
	doc2, _ := SignTopology(testTopology(), key)
	if !bytes.Equal(doc, doc2) {
		t.Error("signing is not deterministic")
	}
}

func TestVerifyTopologyErrors(t *testing.T) {
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	other := testKey(2).Public().(ed25519.PublicKey)
	doc, err := SignTopology(testTopology(), key)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(doc, &env); err != nil {
		t.Fatal(err)
	}
	rebuild := func(mut func(map[string]json.RawMessage)) []byte {
		m := map[string]json.RawMessage{}
		for k, v := range env {
			m[k] = v
		}
		mut(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tampered := bytes.Replace(doc, []byte(`"DE"`), []byte(`"FR"`), 1)
	if bytes.Equal(tampered, doc) {
		t.Fatal("tamper failed")
	}
	otherSigned, _ := SignTopology(testTopology(), testKey(2))
	now := t0.Add(time.Minute)
	cases := []struct {
		name string
		doc  []byte
		key  ed25519.PublicKey
		now  time.Time
		want error
		msg  string
	}{
		{"bare topology", env["topology"], pub, now, ErrUnsigned, "bare topology"},
		{"no signature", rebuild(func(m map[string]json.RawMessage) { delete(m, "signature") }), pub, now, ErrUnsigned, "no signature"},
		{"empty signature", rebuild(func(m map[string]json.RawMessage) { m["signature"] = json.RawMessage(`""`) }), pub, now, ErrUnsigned, "no signature"},
		{"signature not base64", rebuild(func(m map[string]json.RawMessage) { m["signature"] = json.RawMessage(`"%%%"`) }), pub, now, ErrBadSignature, "base64"},
		{"tampered", tampered, pub, now, ErrBadSignature, "does not verify"},
		{"wrong pinned key", doc, other, now, ErrKeyMismatch, "pinned"},
		{"signed by other key", otherSigned, pub, now, ErrBadSignature, "signed by"},
		{"expired", doc, pub, t0.Add(11 * time.Minute), ErrStale, "expired at 2025-06-01T12:10:00Z, 1m0s ago"},
		{"issued in future", doc, pub, t0.Add(-time.Hour), ErrStale, "in the future"},
		{"not JSON", []byte("<html>"), pub, now, ErrMalformed, "not a JSON object"},
		{"empty", nil, pub, now, ErrMalformed, "not a JSON object"},
		{"no topology", []byte(`{"signature":"AAAA"}`), pub, now, ErrMalformed, `no "topology"`},
		{"topology not object", rebuild(func(m map[string]json.RawMessage) { m["topology"] = json.RawMessage(`[1]`) }), pub, now, ErrMalformed, `no "topology"`},
		{"too large", append(doc, make([]byte, MaxDocumentSize)...), pub, now, ErrMalformed, "exceeds"},
	}
	for _, c := range cases {
		_, err := VerifyTopology(c.doc, c.key, c.now)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: message %q lacks %q", c.name, err, c.msg)
		}
	}
	// The mismatch is also a bad signature.
	if _, err := VerifyTopology(doc, other, now); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong key: %v is not ErrBadSignature", err)
	}
	if _, err := VerifyTopology(doc, pub[:5], now); err == nil {
		t.Error("short pinned key accepted")
	}
}

// A signed topology whose contents are invalid is malformed, not trusted.
func TestVerifyTopologyInvalidContent(t *testing.T) {
	key := testKey(1)
	for name, mut := range map[string]func(*Topology){
		"duplicate node": func(tp *Topology) { tp.Nodes = append(tp.Nodes, tp.Nodes[0]) },
		"bad node":       func(tp *Topology) { tp.Nodes[0].Country = "xx" },
		"no epoch len":   func(tp *Topology) { tp.EpochLength = 0 },
		"expires first":  func(tp *Topology) { tp.Expires = tp.Issued },
	} {
		tp := testTopology()
		mut(tp)
		raw, err := json.Marshal(tp)
		if err != nil {
			t.Fatal(err)
		}
		doc := seal("topology", raw, TopologyDomain, key)
		if _, err := VerifyTopology(doc, key.Public().(ed25519.PublicKey), t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
		if _, err := SignTopology(tp, key); err == nil {
			t.Errorf("%s: SignTopology accepted it", name)
		}
	}
	// Unknown roles from a newer directory are tolerated.
	tp := testTopology()
	tp.Nodes[0].Roles = append(tp.Nodes[0].Roles, "oracle")
	raw, _ := json.Marshal(tp)
	doc := seal("topology", raw, TopologyDomain, key)
	got, err := VerifyTopology(doc, key.Public().(ed25519.PublicKey), t0)
	if err != nil {
		t.Fatalf("unknown role: %v", err)
	}
	if len(got.WithRole("oracle")) != 1 || len(got.WithRole(RoleMixnode)) != 1 {
		t.Error("unknown role lost")
	}
}

// A descriptor signature never verifies as a topology signature.
func TestDomainSeparation(t *testing.T) {
	key := testKey(1)
	raw, _ := json.Marshal(testTopology())
	doc := seal("topology", raw, DescriptorDomain, key)
	if _, err := VerifyTopology(doc, key.Public().(ed25519.PublicKey), t0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("cross-domain signature: %v", err)
	}
}

func TestURL(t *testing.T) {
	pub := testKey(1).Public().(ed25519.PublicKey)
	for _, base := range []string{"http://127.0.0.1:8080", "https://dir.example.net/nym", "http://[::1]:80"} {
		u := FormatURL(base, pub)
		if !strings.Contains(u, "/?key=") || strings.Contains(u, "=\n") || strings.HasSuffix(u, "=") {
			t.Errorf("FormatURL(%s) = %s", base, u)
		}
		gb, gk, err := ParseURL(u)
		if err != nil || gb != base || !gk.Equal(pub) {
			t.Errorf("ParseURL(%s) = %s, %x, %v", u, gb, gk, err)
		}
		if FormatURL(base+"/", pub) != u || FormatURL(base+"/?key=old", pub) != u {
			t.Errorf("FormatURL does not normalise %s", base)
		}
	}
	// Padded and standard base64 are tolerated.
	for _, k := range []string{base64.URLEncoding.EncodeToString(pub), base64.StdEncoding.EncodeToString(pub)} {
		if _, gk, err := ParseURL("http://h:1/?key=" + k); err != nil || !gk.Equal(pub) {
			t.Errorf("ParseURL key %s: %v", k, err)
		}
	}
	enc := base64.RawURLEncoding.EncodeToString(pub)
	for s, msg := range map[string]string{
		"":                                     "empty",
		"http://127.0.0.1:8080/":               "no ?key=",
		"ftp://h/?key=" + enc:                  "scheme",
		"http:///?key=" + enc:                  "no host",
		"http://h/?key=%%%":                    "query",
		"http://h/?key=!!!":                    "not base64url",
		"http://h/?key=AAAA":                   "3 bytes",
		"http://h/?key=" + enc + "&key=" + enc: "more than one",
		"http://u:p@h/?key=" + enc:             "user info",
		"127.0.0.1:8080":                       "scheme",
	} {
		_, _, err := ParseURL(s)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseURL(%q) = %v, want error with %q", s, err, msg)
		}
	}
}

func TestDescriptor(t *testing.T) {
	key := testKey(5)
	n := gateway("gw-de-1", "DE", key)
	b, err := SignDescriptor(&n, key, t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyDescriptor(b, t0.Add(4*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !nodeEqual(got, &n) {
		t.Errorf("round trip: %+v", got)
	}
	// Identity key filled in from the private key.
	n2 := n
	n2.IdentityKey = nil
	if b2, err := SignDescriptor(&n2, key, t0); err != nil || !bytes.Equal(b2, b) {
		t.Errorf("sign without identity key: %v", err)
	}
	if n2.IdentityKey != nil {
		t.Error("SignDescriptor modified its argument")
	}
	// Private key must match the node's identity.
	if _, err := SignDescriptor(&n, testKey(6), t0); err == nil || !strings.Contains(err.Error(), "identity key") {
		t.Errorf("foreign key: %v", err)
	}
	bad := n
	bad.Country = ""
	if _, err := SignDescriptor(&bad, key, t0); err == nil {
		t.Error("invalid node signed")
	}

	var env map[string]json.RawMessage
	_ = json.Unmarshal(b, &env)
	cases := []struct {
		name string
		b    []byte
		now  time.Time
		want error
	}{
		{"old", b, t0.Add(6 * time.Minute), ErrStale},
		{"future", b, t0.Add(-6 * time.Minute), ErrStale},
		{"tampered", bytes.Replace(b, []byte("51820"), []byte("51821"), 1), t0, ErrBadSignature},
		{"bare", env["descriptor"], t0, ErrUnsigned},
		{"not JSON", []byte("x"), t0, ErrMalformed},
		{"topology doc", mustSign(t, key), t0, ErrMalformed},
		{"too big", bytes.Repeat([]byte(" "), MaxDescriptorSize+1), t0, ErrMalformed},
	}
	for _, c := range cases {
		if _, err := VerifyDescriptor(c.b, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// Signed with another key than the one inside.
	raw := env["descriptor"]
	forged := seal("descriptor", raw, DescriptorDomain, testKey(7))
	if _, err := VerifyDescriptor(forged, t0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged: %v", err)
	}
	if _, err := VerifyDescriptor(b, t0.Add(6*time.Minute)); err == nil || !strings.Contains(err.Error(), "clock") {
		t.Errorf("stale message: %v", err)
	}
}

func mustSign(t *testing.T, key ed25519.PrivateKey) []byte {
	t.Helper()
	doc, err := SignTopology(testTopology(), key)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}
