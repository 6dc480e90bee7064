package directory

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

var writeFuzzSeeds = flag.Bool("write-fuzz-seeds", false, "rewrite testdata/fuzz seed corpora")

// The fuzz targets verify at fuzzNow with the key of testKey(1), so the
// committed seeds include documents that verify.
var fuzzNow = t0.Add(time.Minute)

func topologySeeds(t testing.TB) map[string][]byte {
	key := testKey(1)
	doc, err := SignTopology(testTopology(), key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := SignTopology(testTopology(), testKey(2))
	if err != nil {
		t.Fatal(err)
	}
	empty := testTopology()
	empty.Nodes = nil
	emptyDoc, err := SignTopology(empty, key)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := unseal(doc, "topology")
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"valid":          doc,
		"valid-empty":    emptyDoc,
		"other-key":      other,
		"bare":           sd.raw,
		"tampered":       bytes.Replace(doc, []byte(`"DE"`), []byte(`"FR"`), 1),
		"no-signature":   bytes.Replace(doc, []byte(`"signature"`), []byte(`"signatur"`), 1),
		"not-json":       []byte("<html><body>502 Bad Gateway</body></html>"),
		"empty-object":   []byte("{}"),
		"null-topology":  []byte(`{"topology":null,"signature":"AAAA"}`),
		"string-numbers": []byte(`{"topology":{"epoch":"1","epoch_length":"1h","nodes":[{"id":"a","noise_key":"*"}]},"signature":"` + string(bytes.Repeat([]byte("A"), 86)) + `=="}`),
	}
}

func descriptorSeeds(t testing.TB) map[string][]byte {
	key := testKey(5)
	gw := gateway("gw-de-1", "DE", key)
	valid, err := SignDescriptor(&gw, key, t0)
	if err != nil {
		t.Fatal(err)
	}
	mk := testKey(6)
	mix := mixnode("mix-1", mk)
	validMix, err := SignDescriptor(&mix, mk, t0)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := SignDescriptor(&gw, key, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sd, err := unseal(valid, "descriptor")
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"valid":        valid,
		"valid-mix":    validMix,
		"stale":        stale,
		"bare":         sd.raw,
		"forged":       seal("descriptor", sd.raw, DescriptorDomain, testKey(7)),
		"tampered":     bytes.Replace(valid, []byte("51820"), []byte("51821"), 1),
		"not-json":     []byte("\x00\xff"),
		"empty-object": []byte(`{"descriptor":{},"signature":"x"}`),
		"short-key":    []byte(`{"descriptor":{"node":{"id":"a","identity_key":"AAAA"},"timestamp":"2025-06-01T12:00:00Z"},"signature":"` + string(bytes.Repeat([]byte("A"), 86)) + `=="}`),
	}
}

// TestFuzzSeeds keeps the committed corpora in step with the code: run with
// -write-fuzz-seeds to rewrite them.
func TestFuzzSeeds(t *testing.T) {
	for name, seeds := range map[string]map[string][]byte{
		"FuzzVerifyTopology":   topologySeeds(t),
		"FuzzVerifyDescriptor": descriptorSeeds(t),
	} {
		dir := filepath.Join("testdata", "fuzz", name)
		for seed, b := range seeds {
			path := filepath.Join(dir, seed)
			want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
			if *writeFuzzSeeds {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != want {
				t.Errorf("seed %s is missing or out of date (%v); run go test -run TestFuzzSeeds -write-fuzz-seeds", path, err)
			}
		}
	}
	// The valid seeds do verify, so the fuzzers start from the success path.
	if _, err := VerifyTopology(topologySeeds(t)["valid"], testKey(1).Public().(ed25519.PublicKey), fuzzNow); err != nil {
		t.Errorf("valid topology seed: %v", err)
	}
	if _, err := VerifyDescriptor(descriptorSeeds(t)["valid"], fuzzNow); err != nil {
		t.Errorf("valid descriptor seed: %v", err)
	}
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrUnsigned, ErrBadSignature, ErrStale, ErrMalformed} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzVerifyTopology(f *testing.F) {
	key := testKey(1)
	pub := key.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, doc []byte) {
		top, err := VerifyTopology(doc, pub, fuzzNow)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error without sentinel: %v", err)
			}
			// Also treat the input as the signed topology itself, so the
			// fuzzer reaches the parsing and validation behind the signature.
			top, err = VerifyTopology(seal("topology", doc, TopologyDomain, key), pub, fuzzNow)
			if err != nil {
				if !isSentinel(err) {
					t.Fatalf("error without sentinel (signed input): %v", err)
				}
				return
			}
		}
		if err := top.Validate(); err != nil {
			t.Fatalf("verified topology does not validate: %v", err)
		}
		if fuzzNow.After(top.Expires) {
			t.Fatal("expired topology accepted")
		}
		// Only our own signer can produce an accepted document, and what it
		// signed must come back the same after a re-sign.
		top2 := top.clone()
		for i := range top2.Nodes {
			top2.Nodes[i].Roles = filterKnown(top2.Nodes[i].Roles)
		}
		if doc2, err := SignTopology(top2, key); err == nil {
			if _, err := VerifyTopology(doc2, pub, fuzzNow); err != nil {
				t.Fatalf("re-signed topology does not verify: %v", err)
			}
		}
	})
}

func filterKnown(rs []Role) []Role {
	var out []Role
	for _, r := range rs {
		if r.Known() {
			out = append(out, r)
		}
	}
	return out
}

func FuzzVerifyDescriptor(f *testing.F) {
	key := testKey(5)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := VerifyDescriptor(b, fuzzNow)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error without sentinel: %v", err)
			}
			// Also treat the input as the signed descriptor, signed by the
			// identity it names when that is testKey(5), so the fuzzer
			// reaches the parsing and validation behind the signature.
			sd, err := unseal(b, "descriptor")
			if err != nil {
				return
			}
			n, err = VerifyDescriptor(seal("descriptor", sd.raw, DescriptorDomain, key), fuzzNow)
			if err != nil {
				if !isSentinel(err) {
					t.Fatalf("error without sentinel (signed input): %v", err)
				}
				return
			}
			if !bytes.Equal(n.IdentityKey, key.Public().(ed25519.PublicKey)) {
				t.Fatal("descriptor accepted with a signature by another key")
			}
		}
		if err := n.Validate(); err != nil {
			t.Fatalf("verified node does not validate: %v", err)
		}
		if len(b) > MaxDescriptorSize {
			t.Fatal("oversized descriptor accepted")
		}
	})
}
