package ipr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzForward parses forward fragments as the exit does; what parses must
// encode back to the same bytes.
func FuzzForward(f *testing.F) {
	b, _ := AppendForward(nil, testFragment())
	f.Add(b)
	f.Add(b[:ForwardHeaderLength])
	f.Add([]byte{Version})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseForward(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			return
		}
		re, err := AppendForward(nil, &fr)
		if err != nil {
			t.Fatalf("parsed fragment does not encode: %v", err)
		}
		if !bytes.Equal(re, b) {
			t.Fatal("forward fragment does not round-trip")
		}
	})
}

// FuzzReply parses reply fragments as the client does.
func FuzzReply(f *testing.F) {
	b, _ := AppendReply(nil, &ReplyFragment{MsgID: 1, Count: 2, Index: 1, SURBsLeft: 7, Data: []byte("x")})
	f.Add(b)
	f.Add([]byte{Version, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseReply(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			return
		}
		re, err := AppendReply(nil, &fr)
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("reply fragment does not round-trip: %v", err)
		}
	})
}

// FuzzItems parses messages (bundles of items) as both ends do.
func FuzzItems(f *testing.F) {
	var msg []byte
	msg = AppendItem(msg, KindIP, bytes.Repeat([]byte{0x45}, 40))
	msg = AppendOpen(msg, &Open{Flags: OpenResetSURBs, Want4: netip.MustParseAddr("10.0.0.9"), Ticket: []byte("t")})
	msg = AppendU64(msg, KindPing, 1)
	f.Add(msg)
	f.Add(AppendWelcome(nil, &Welcome{IPv4: netip.MustParseAddr("10.0.0.2"), IPv6: netip.MustParseAddr("fc00::2"),
		Router4: netip.MustParseAddr("10.0.0.1"), Router6: netip.MustParseAddr("fc00::1"), MTU: 1500}))
	f.Add(AppendError(AppendNeedSURBs(nil, 3), ErrRefused, "no"))
	f.Add(AppendItem(nil, KindSURB, make([]byte, 420)))
	f.Add([]byte{1, 0xff, 0xff})
	f.Add(AppendAllowance(AppendNeedTicket(AppendTicket(nil, bytes.Repeat([]byte{1}, 476)), 5), Allowance{Left: 9, TopUpAt: 3}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		for rest := msg; len(rest) > 0; {
			k, body, r, err := NextItem(rest)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatal(err)
				}
				return
			}
			if len(r) >= len(rest) {
				t.Fatal("no progress")
			}
			rest = r
			switch k {
			case KindOpen:
				if o, err := ParseOpen(body); err == nil {
					re := AppendOpen(nil, &o)
					if !bytes.Equal(re[ItemHeaderLength:], body) {
						t.Fatalf("open does not round-trip: %x vs %x", re[ItemHeaderLength:], body)
					}
				}
			case KindWelcome:
				if w, err := ParseWelcome(body); err == nil {
					if re := AppendWelcome(nil, &w); !bytes.Equal(re[ItemHeaderLength:], body) {
						t.Fatal("welcome does not round-trip")
					}
				}
			case KindPing, KindPong:
				ParseU64(body)
			case KindNeedSURBs:
				ParseNeedSURBs(body)
			case KindError:
				if c, text, err := ParseError(body); err == nil {
					if re := AppendError(nil, c, text); !bytes.Equal(re[ItemHeaderLength:], body) {
						t.Fatal("error does not round-trip")
					}
				}
			case KindTicket:
				if tk, err := ParseTicket(body); err == nil {
					if re := AppendTicket(nil, tk); !bytes.Equal(re[ItemHeaderLength:], body) {
						t.Fatal("ticket does not round-trip")
					}
				}
			case KindNeedTicket:
				if left, err := ParseNeedTicket(body); err == nil {
					if re := AppendNeedTicket(nil, left); !bytes.Equal(re[ItemHeaderLength:], body) {
						t.Fatal("need-ticket does not round-trip")
					}
				}
			case KindAllowance:
				if a, err := ParseAllowance(body); err == nil {
					if re := AppendAllowance(nil, a); !bytes.Equal(re[ItemHeaderLength:], body) {
						t.Fatal("allowance does not round-trip")
					}
				}
			}
		}
	})
}

// FuzzReassembler drives a Reassembler with a stream of fragments decoded
// from the input: id (2) | index (1) | count (1) | length (1) | data. It
// must never panic, never complete a message twice and never hold more than
// its limit.
func FuzzReassembler(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 'a', 0, 1, 1, 2, 1, 'b', 0, 1, 1, 2, 1, 'b'})
	f.Add([]byte{0xff, 0xff, 0, 1, 0, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := Reassembler{MaxPending: 8}
		now := time.Unix(0, 0)
		completed := map[uint32]bool{}
		for len(in) >= 5 {
			id := uint32(binary.BigEndian.Uint16(in))
			index, count, n := in[2], in[3], int(in[4])
			in = in[5:]
			data := in[:min(n, len(in))]
			in = in[len(data):]
			msg, _, err := r.Add(id, index, count, data, now)
			now = now.Add(time.Second)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatal(err)
				}
				continue
			}
			if msg != nil {
				if completed[id] {
					t.Fatalf("message %d completed twice", id)
				}
				completed[id] = true
			}
			if r.Pending() > 8 {
				t.Fatalf("%d pending", r.Pending())
			}
		}
	})
}

var update = flag.Bool("update", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// fuzzSeeds are the committed seeds of each fuzz target.
func fuzzSeeds() map[string]map[string][]byte {
	fwd, _ := AppendForward(nil, testFragment())
	single := testFragment()
	single.Index, single.Count, single.Data = 0, 1, AppendItem(AppendU64(nil, KindPing, 7), KindIP, bytes.Repeat([]byte{0x45}, 60))
	one, _ := AppendForward(nil, single)
	reply, _ := AppendReply(nil, &ReplyFragment{MsgID: 1, Count: 2, Index: 1, SURBsLeft: 7, Data: []byte("x")})
	welcome := AppendWelcome(nil, &Welcome{IPv4: netip.MustParseAddr("10.0.0.2"), IPv6: netip.MustParseAddr("fc00::2"),
		Router4: netip.MustParseAddr("10.0.0.1"), Router6: netip.MustParseAddr("fc00::1"), MTU: 1500})
	replyWelcome, _ := AppendReply(nil, &ReplyFragment{MsgID: 1, Count: 1, SURBsLeft: 30, Data: welcome})
	return map[string]map[string][]byte{
		"FuzzForward": {
			"fragment":       fwd,
			"single-message": one,
			"header-only":    fwd[:ForwardHeaderLength],
			"torn":           fwd[:ForwardHeaderLength-1],
		},
		"FuzzReply": {
			"fragment": reply,
			"welcome":  replyWelcome,
			"torn":     reply[:ReplyHeaderLength-1],
		},
		"FuzzItems": {
			"ip-open-ping": AppendU64(AppendOpen(AppendItem(nil, KindIP, bytes.Repeat([]byte{0x45}, 40)),
				&Open{Flags: OpenResetSURBs, Want4: netip.MustParseAddr("10.0.0.9"), Ticket: []byte("t")}), KindPing, 1),
			"welcome":        welcome,
			"need-and-error": AppendError(AppendNeedSURBs(nil, 3), ErrRefused, "no"),
			"surb":           AppendItem(nil, KindSURB, make([]byte, 420)),
			"torn":           []byte{1, 0xff, 0xff},
			"close-pong":     AppendU64(AppendItem(nil, KindClose), KindPong, 9),
			"ticket-need-allowance": AppendAllowance(AppendNeedTicket(AppendTicket(nil, bytes.Repeat([]byte{1}, 476)), 5),
				Allowance{Left: 9, TopUpAt: 3}),
			"ticket-refused": AppendError(AppendTicket(nil, []byte{1}), ErrTicketRefused, "ticket_spent: this ticket was spent before"),
			"ticket-empty":   AppendItem(nil, KindTicket),
		},
		"FuzzReassembler": {
			"two-fragments-dup": {0, 1, 0, 2, 1, 'a', 0, 1, 1, 2, 1, 'b', 0, 1, 1, 2, 1, 'b'},
			"count-zero":        {0xff, 0xff, 0, 1, 0, 0, 0, 0, 1, 0},
			"changed-count":     {0, 5, 0, 3, 0, 0, 5, 1, 2, 0},
		},
	}
}

// TestFuzzSeeds writes the committed seed corpora with -update and checks
// that they are there and still parse as their names say.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds() {
		dir := filepath.Join("testdata", "fuzz", target)
		if *update {
			os.RemoveAll(dir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range seeds {
				if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, want := range seeds {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatalf("%v (regenerate with go test ./mixnet/ipr -run TestFuzzSeeds -update)", err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 2 || lines[0] != "go test fuzz v1" {
				t.Fatalf("%s/%s: not a go test fuzz v1 file", target, name)
			}
			got, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
			if err != nil || got != string(want) {
				t.Errorf("%s/%s: committed seed differs from what the code builds (regenerate with -update): %v", target, name, err)
			}
		}
	}
}
