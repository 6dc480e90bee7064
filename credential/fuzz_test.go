package credential

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fuzzFixture holds one valid encoding of everything, built deterministically.
type fuzzFixture struct {
	sys                          *system
	spend, request, partial, vk  []byte
	book, issuerSK, issuerVK, pi []byte
	pending                      []byte
	pay                          PayInfo
}

var fixture = sync.OnceValue(func() *fuzzFixture {
	rng := testRNG(42)
	vk, sks, ivks, err := GenerateThresholdKeys(rng, 2, 3)
	if err != nil {
		panic(err)
	}
	user, err := NewUserSecret(rng)
	if err != nil {
		panic(err)
	}
	s := &system{vk: vk, sks: sks, ivks: ivks, user: user}
	f := &fuzzFixture{sys: s}
	req, pend, err := NewTicketbookRequest(rng, s.user, FastEntry, ExpiryFor(testNow), 2)
	if err != nil {
		panic(err)
	}
	p0, _ := BlindSign(s.sks[0], req)
	p1, _ := BlindSign(s.sks[1], req)
	sh0, _ := pend.Unblind(s.ivks[0], p0)
	sh1, _ := pend.Unblind(s.ivks[1], p1)
	book, err := Aggregate(rng, s.vk, []*SignatureShares{sh0, sh1})
	if err != nil {
		panic(err)
	}
	f.pay, _ = NewPayInfo(rng, gatewayKey(9), testNow)
	f.spend, _ = book.Spend(rng, 0, f.pay)
	f.request, _ = req.MarshalBinary()
	f.partial, _ = p0.MarshalBinary()
	f.vk, _ = s.vk.MarshalBinary()
	f.book, _ = book.MarshalBinary()
	f.issuerSK, _ = s.sks[0].MarshalBinary()
	f.issuerVK, _ = s.ivks[0].MarshalBinary()
	f.pi, _ = f.pay.MarshalBinary()
	f.pending, _ = pend.MarshalBinary()
	return f
})

type decoder interface {
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// fuzzDecoder checks that a decoder never panics, fails only with ErrMalformed,
// ErrNotInSubgroup or ErrWrongType, and that whatever it accepts re-encodes to the
// same bytes (so every accepted encoding is canonical).
func fuzzDecoder(t *testing.T, data []byte, fresh func() decoder) decoder {
	v := fresh()
	err := v.UnmarshalBinary(data)
	if err != nil {
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotInSubgroup) && !errors.Is(err, ErrWrongType) {
			t.Fatalf("unexpected error class: %v", err)
		}
		return nil
	}
	out, err := v.MarshalBinary()
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("accepted a non-canonical encoding (%v)", err)
	}
	return v
}

func FuzzUnmarshalSpend(f *testing.F) {
	fx := fixture()
	f.Add(fx.spend)
	f.Fuzz(func(t *testing.T, data []byte) {
		if fuzzDecoder(t, data, func() decoder { return new(Spend) }) == nil {
			return
		}
		// A decodable spend other than the real one must not verify.
		_, err := Verify(fx.sys.vk, data, FastEntry, fx.pay, testNow)
		if (err == nil) != bytes.Equal(data, fx.spend) {
			t.Fatalf("verify: %v", err)
		}
	})
}

func FuzzUnmarshalTicketbookRequest(f *testing.F) {
	fx := fixture()
	f.Add(fx.request)
	f.Fuzz(func(t *testing.T, data []byte) {
		v := fuzzDecoder(t, data, func() decoder { return new(TicketbookRequest) })
		// Proof checks are costly under coverage instrumentation; run them on
		// decodable inputs of the seed's size only.
		if v == nil || len(data) != len(fx.request) {
			return
		}
		_, err := BlindSign(fx.sys.sks[0], v.(*TicketbookRequest))
		if (err == nil) != bytes.Equal(data, fx.request) {
			t.Fatalf("blind sign: %v", err)
		}
	})
}

func FuzzUnmarshalPartialTicketbook(f *testing.F) {
	f.Add(fixture().partial)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, func() decoder { return new(PartialTicketbook) })
	})
}

func FuzzUnmarshalTicketbook(f *testing.F) {
	f.Add(fixture().book)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, func() decoder { return new(Ticketbook) })
	})
}

func FuzzUnmarshalVerificationKey(f *testing.F) {
	f.Add(fixture().vk)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, func() decoder { return new(VerificationKey) })
	})
}

func FuzzUnmarshalIssuerVerificationKey(f *testing.F) {
	f.Add(fixture().issuerVK)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, func() decoder { return new(IssuerVerificationKey) })
	})
}

func FuzzUnmarshalIssuerSecretKey(f *testing.F) {
	f.Add(fixture().issuerSK)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, func() decoder { return new(IssuerSecretKey) })
	})
}

func FuzzUnmarshalPayInfo(f *testing.F) {
	f.Add(fixture().pi)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, func() decoder { return new(PayInfo) })
	})
}

func FuzzUnmarshalPendingTicketbook(f *testing.F) {
	f.Add(fixture().pending)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzDecoder(t, data, func() decoder { return new(PendingTicketbook) })
	})
}

// TestWriteFuzzSeeds regenerates the committed seed corpora under testdata/fuzz
// when CREDENTIAL_WRITE_SEEDS=1; otherwise it checks that they exist.
func TestWriteFuzzSeeds(t *testing.T) {
	fx := fixture()
	trunc := func(b []byte) []byte { return b[:len(b)/2] }
	flip := func(b []byte, i int) []byte { c := bytes.Clone(b); c[i%len(c)] ^= 0x40; return c }
	seeds := map[string][][]byte{
		"FuzzUnmarshalSpend":                 {fx.spend, trunc(fx.spend), flip(fx.spend, offSerial), flip(fx.spend, offC), {}},
		"FuzzUnmarshalTicketbookRequest":     {fx.request, trunc(fx.request), flip(fx.request, 200), {1}},
		"FuzzUnmarshalPartialTicketbook":     {fx.partial, trunc(fx.partial), flip(fx.partial, 50)},
		"FuzzUnmarshalTicketbook":            {fx.book, trunc(fx.book), flip(fx.book, 600)},
		"FuzzUnmarshalVerificationKey":       {fx.vk, trunc(fx.vk), flip(fx.vk, 10)},
		"FuzzUnmarshalIssuerVerificationKey": {fx.issuerVK, flip(fx.issuerVK, 3)},
		"FuzzUnmarshalIssuerSecretKey":       {fx.issuerSK, bytes.Repeat([]byte{0xff}, IssuerSecretKeySize)},
		"FuzzUnmarshalPayInfo":               {fx.pi, trunc(fx.pi)},
		"FuzzUnmarshalPendingTicketbook":     {fx.pending, trunc(fx.pending), flip(fx.pending, 40), flip(fx.pending, len(fx.pending)-5)},
	}
	write := os.Getenv("CREDENTIAL_WRITE_SEEDS") == "1"
	for name, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", name)
		if !write {
			if ents, err := os.ReadDir(dir); err != nil || len(ents) == 0 {
				t.Errorf("no committed seed corpus in %s", dir)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range list {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", string(b))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
