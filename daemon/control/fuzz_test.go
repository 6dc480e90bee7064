package control

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/settings"
)

func fuzzServer(t testing.TB) (*Server, *fakeBackend) {
	hub := NewHub(initialStatus())
	b := &fakeBackend{hub: hub}
	s, err := New(Config{Backend: b, Hub: hub, Authorizer: &Policy{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s, b
}

// serve runs one request through the handler as root and checks the
// invariants every answer keeps: a known status, JSON, and an ErrorBody
// with a code for every error.
func serve(t *testing.T, s *Server, method, target string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/", bytes.NewReader(body))
	req.Method = method
	if u, err := req.URL.Parse(target); err == nil {
		req.URL = u
	}
	req.Host = "nymvpnd"
	req.Header.Set("Content-Type", "application/json")
	ctx := withPeerCred(context.Background(), PeerCred{UID: 0})
	if req.URL.Path == "/v1/events" {
		// A stream runs until its client goes away: this one is gone
		// after the first event.
		c, cancel := context.WithCancel(ctx)
		cancel()
		ctx = c
	}
	req = req.WithContext(ctx)
	w := httptest.NewRecorder()
	s.serveHTTP(w, req)
	switch w.Code {
	case 200, 202, 400, 403, 404, 405:
	default:
		t.Fatalf("%s %s %q: status %d: %s", method, target, body, w.Code, w.Body)
	}
	if w.Code >= 400 {
		var eb api.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("%s %s %q: error body %q: %v", method, target, body, w.Body, err)
		}
	} else if !json.Valid(w.Body.Bytes()) {
		t.Fatalf("%s %s %q: invalid JSON %q", method, target, body, w.Body)
	}
	return w
}

// FuzzConnectRequest drives POST /v1/connect: whatever the body, the answer
// is well formed, and what reaches the Backend is normalized and valid.
func FuzzConnectRequest(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"mode":"fast","entry":"de","exit":"exit-ch-1"}`, `{"mode":"MIXNET"}`,
		`{"entry":"auto"}`, `{"mode":1}`, `{"x":1}`, `{} {}`, `null`, `{"entry":"` + strings.Repeat("a", 70) + `"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, b := fuzzServer(t)
		w := serve(t, s, "POST", "/v1/connect", body)
		if w.Code != http.StatusAccepted {
			return
		}
		req := b.connects[0]
		if req.Mode != "" {
			if m, err := settings.NormalizeMode(req.Mode); err != nil || m != req.Mode {
				t.Fatalf("backend got mode %q", req.Mode)
			}
		}
		for _, c := range []string{req.Entry, req.Exit} {
			if c != "" {
				if n, err := settings.NormalizeChoice("entry", c); err != nil || n != c {
					t.Fatalf("backend got choice %q", c)
				}
			}
		}
	})
}

// FuzzSettingsPatch drives PATCH /v1/settings: the settings the hub ends up
// with are always valid.
func FuzzSettingsPatch(f *testing.F) {
	for _, s := range []string{`{}`, `{"mode":"mixnet"}`, `{"dns":["1.1.1.1","2606:4700::1111"]}`, `{"dns":[]}`,
		`{"dns":null}`, `{"ipv6":false,"auto_connect":true}`, `{"entry":"CH","exit":"de"}`,
		`{"directory_url":"http://127.0.0.1:8080/?key=11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}`, `{"dns":["x"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, b := fuzzServer(t)
		w := serve(t, s, "PATCH", "/v1/settings", body)
		if err := settings.Validate(b.hub.Status().Settings); err != nil {
			t.Fatalf("hub holds invalid settings after %q: %v", body, err)
		}
		if w.Code == 200 && len(b.patches) != 1 {
			t.Fatalf("200 without a backend call")
		}
	})
}

// FuzzRequest drives the whole handler with an arbitrary request: the
// first line of the input is "METHOD TARGET", the rest the body.
func FuzzRequest(f *testing.F) {
	for _, s := range []string{
		"GET /v1/status\n", "GET /v1/events?x=1\n", "GET /v1/events\n", "POST /v1/disconnect\n{}", "GET /v1/gateways?role=exit&country=ch\n",
		"PATCH /v1/settings\n{\"exit\":\"auto\"}", "DELETE /v1/settings\n", "GET /v1/gateways?role=%zz\n", "PUT /\n",
		"GET /v1/settings?a=1&a=2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		line, body, _ := bytes.Cut(data, []byte("\n"))
		method, target, _ := strings.Cut(string(line), " ")
		if !validMethod(method) || !strings.HasPrefix(target, "/") {
			return
		}
		s, _ := fuzzServer(t)
		serve(t, s, method, target, body)
	})
}

// validMethod reports whether m is an HTTP token (what net/http accepts).
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}
