package issuer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/nymvpn/nymvpn/node/directory"
)

// fuzzIssuer is one issuer shared by the fuzz targets.
var fuzzIssuer = sync.OnceValue(func() *Issuer {
	dir, err := os.MkdirTemp("", "issuer-fuzz-")
	if err != nil {
		panic(err)
	}
	dirs, err := Keygen(rand.Reader, dir, 2, 3)
	if err != nil {
		panic(err)
	}
	_, id, _ := ed25519.GenerateKey(nil)
	iss, err := New(Config{DataDir: dirs[0], Identity: id, Logger: logger(),
		Topology: func() *directory.Topology { return &directory.Topology{} }})
	if err != nil {
		panic(err)
	}
	return iss
})

func fuzzPost(t *testing.T, path string, body []byte) {
	iss := fuzzIssuer()
	w := httptest.NewRecorder()
	iss.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	if w.Code == http.StatusOK {
		t.Fatalf("%s accepted fuzz input %q", path, body)
	}
	if w.Code >= 500 {
		t.Fatalf("%s: server error %d for %q: %s", path, w.Code, body, w.Body)
	}
}

// FuzzSignRequest: the sign endpoint never fails internally, and never signs
// without a valid account signature (no account exists here).
func FuzzSignRequest(f *testing.F) {
	f.Add([]byte(`{"request_id":"00112233445566778899aabbccddeeff","account":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","timestamp":1,"request":"AQ==","signature":"AA=="}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) { fuzzPost(t, "/v1/sign", body) })
}

// FuzzSpentReport: reports from no known gateway are refused, whatever they hold.
func FuzzSpentReport(f *testing.F) {
	f.Add([]byte(`{"gateway":"gw-1","timestamp":1,"spends":["AQ=="],"signature":"AA=="}`))
	f.Fuzz(func(t *testing.T, body []byte) { fuzzPost(t, "/v1/spent", body) })
}

// FuzzRequestID: the text form round-trips.
func FuzzRequestID(f *testing.F) {
	f.Add([]byte("00112233445566778899aabbccddeeff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var id RequestID
		if id.UnmarshalText(b) != nil {
			return
		}
		out, _ := id.MarshalText()
		if !bytes.EqualFold(out, b) {
			t.Fatalf("%q → %q", b, out)
		}
	})
}
