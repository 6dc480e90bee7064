package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
)

// wantError checks that r is an api.ErrorBody with status and code whose
// message contains each of parts.
func wantError(t *testing.T, r response, status int, code string, parts ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var eb api.ErrorBody
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if eb.Error.Code != code {
		t.Fatalf("code %q, want %q; message %q", eb.Error.Code, code, eb.Error.Message)
	}
	for _, p := range parts {
		if !strings.Contains(eb.Error.Message, p) {
			t.Errorf("message %q lacks %q", eb.Error.Message, p)
		}
	}
}

func decodeBody[T any](t *testing.T, r response, status int) T {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return v
}

func TestStatus(t *testing.T) {
	ts := startServer(t, Config{})
	st := decodeBody[api.Status](t, ts.do(t, "GET", "/v1/status", ""), 200)
	want := initialStatus()
	want.Caller = &api.Caller{UID: os.Getuid(), CanWrite: true}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("got %+v\nwant %+v", st, want)
	}
	// The caller of a read-only policy is told so.
	ro := startServer(t, Config{Authorizer: &Policy{OperatorUID: -1, Group: ""}})
	st = decodeBody[api.Status](t, ro.do(t, "GET", "/v1/status", ""), 200)
	if os.Getuid() != 0 && (st.Caller == nil || st.Caller.CanWrite) {
		t.Fatalf("caller %+v, want read-only", st.Caller)
	}
}

func TestConnect(t *testing.T) {
	ts := startServer(t, Config{})
	r := ts.do(t, "POST", "/v1/connect", `{"mode":"FAST","entry":"de","exit":"Exit-CH-1"}`)
	st := decodeBody[api.State](t, r, http.StatusAccepted)
	if st.Kind != api.Connecting {
		t.Fatalf("state %+v", st)
	}
	// An empty body connects with the saved settings.
	decodeBody[api.State](t, ts.do(t, "POST", "/v1/connect", ""), http.StatusAccepted)
	ts.backend.mu.Lock()
	got := ts.backend.connects
	creds := ts.backend.creds
	ts.backend.mu.Unlock()
	want := []api.ConnectRequest{{Mode: "fast", Entry: "DE", Exit: "exit-ch-1"}, {}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("backend got %+v, want %+v", got, want)
	}
	if creds[0].UID != os.Getuid() || creds[0].PID != os.Getpid() {
		t.Errorf("backend saw caller %+v, want uid %d pid %d", creds[0], os.Getuid(), os.Getpid())
	}
	if s := ts.hub.Status(); s.Target != "connected" || s.State.Kind != api.Connecting {
		t.Errorf("hub %+v", s)
	}
}

func TestStrictDecoding(t *testing.T) {
	ts := startServer(t, Config{})
	cases := []struct {
		name, method, path, body string
		headers                  []string
		code                     string
		msg                      string
	}{
		{"unknown field", "POST", "/v1/connect", `{"mode":"fast","turbo":true}`, nil, api.CodeBadRequest, `unknown field "turbo"`},
		{"wrong type", "POST", "/v1/connect", `{"mode":1}`, nil, api.CodeBadRequest, `field "mode"`},
		{"syntax", "POST", "/v1/connect", `{"mode":`, nil, api.CodeBadRequest, "truncated"},
		{"two values", "POST", "/v1/connect", `{}{}`, nil, api.CodeBadRequest, "more than one"},
		{"not an object", "POST", "/v1/connect", `["fast"]`, nil, api.CodeBadRequest, "not a JSON object"},
		{"null", "POST", "/v1/connect", `null`, nil, api.CodeBadRequest, "not a JSON object"},
		{"too large", "POST", "/v1/connect", `{"mode":"` + strings.Repeat("f", MaxBodySize) + `"}`, nil, api.CodeBadRequest, "larger than 65536"},
		{"content type", "POST", "/v1/connect", `{}`, []string{"Content-Type: text/plain"}, api.CodeBadRequest, "application/json"},
		{"bad mode", "POST", "/v1/connect", `{"mode":"warp"}`, nil, api.CodeInvalidSetting, "mode:"},
		{"bad entry", "POST", "/v1/connect", `{"entry":"not an id"}`, nil, api.CodeInvalidSetting, "entry:"},
		{"disconnect body", "POST", "/v1/disconnect", `{"now":true}`, nil, api.CodeBadRequest, `unknown field "now"`},
		{"patch empty", "PATCH", "/v1/settings", ``, nil, api.CodeBadRequest, "empty"},
		{"patch unknown", "PATCH", "/v1/settings", `{"killswitch":true}`, nil, api.CodeBadRequest, `unknown field "killswitch"`},
		{"patch bad dns", "PATCH", "/v1/settings", `{"dns":["1.1.1.1","x"]}`, nil, api.CodeBadRequest, "request body"},
		{"patch loopback dns", "PATCH", "/v1/settings", `{"dns":["127.0.0.1"]}`, nil, api.CodeInvalidSetting, "dns:"},
		{"patch bad url", "PATCH", "/v1/settings", `{"directory_url":"http://x/"}`, nil, api.CodeInvalidSetting, "directory_url:"},
		{"query on status", "GET", "/v1/status?verbose=1", ``, nil, api.CodeBadRequest, `unknown query parameter "verbose"`},
		{"bad role", "GET", "/v1/gateways?role=mix", ``, nil, api.CodeBadRequest, "role"},
		{"bad country", "GET", "/v1/gateways?country=DEU", ``, nil, api.CodeBadRequest, "country"},
		{"unknown param", "GET", "/v1/gateways?city=Berlin", ``, nil, api.CodeBadRequest, "takes role, country"},
		{"repeated param", "GET", "/v1/gateways?role=entry&role=exit", ``, nil, api.CodeBadRequest, "2 times"},
		{"malformed query", "GET", "/v1/gateways?role=%zz", ``, nil, api.CodeBadRequest, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, ts.do(t, c.method, c.path, c.body, c.headers...), http.StatusBadRequest, c.code, c.msg)
		})
	}
	ts.backend.mu.Lock()
	defer ts.backend.mu.Unlock()
	if len(ts.backend.connects) != 0 || len(ts.backend.patches) != 0 {
		t.Errorf("refused requests reached the backend: %+v %+v", ts.backend.connects, ts.backend.patches)
	}
}

func TestDisconnect(t *testing.T) {
	ts := startServer(t, Config{})
	for _, body := range []string{"", "{}", " { } \n"} {
		st := decodeBody[api.State](t, ts.do(t, "POST", "/v1/disconnect", body), http.StatusAccepted)
		if st.Kind != api.Disconnected {
			t.Fatalf("state %+v", st)
		}
	}
}

func TestGateways(t *testing.T) {
	ts := startServer(t, Config{})
	gws := decodeBody[[]api.Gateway](t, ts.do(t, "GET", "/v1/gateways?role=ENTRY&country=de", ""), 200)
	if len(gws) != 2 || gws[0].ID != "entry-de-1" {
		t.Fatalf("gateways %+v", gws)
	}
	if ts.backend.gwQuery != [2]string{"entry", "DE"} {
		t.Fatalf("backend asked for %v", ts.backend.gwQuery)
	}
	ts.backend.mu.Lock()
	ts.backend.gateways = nil
	ts.backend.mu.Unlock()
	r := ts.do(t, "GET", "/v1/gateways", "")
	if r.status != 200 || strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("no gateways: %d %s", r.status, r.body)
	}
}

func TestSettings(t *testing.T) {
	ts := startServer(t, Config{})
	s := decodeBody[api.Settings](t, ts.do(t, "GET", "/v1/settings", ""), 200)
	if !reflect.DeepEqual(s, api.DefaultSettings()) {
		t.Fatalf("settings %+v", s)
	}
	s = decodeBody[api.Settings](t, ts.do(t, "PATCH", "/v1/settings", `{"exit":"ch","dns":["9.9.9.9"],"auto_connect":true}`), 200)
	want := api.DefaultSettings()
	want.Exit, want.DNS, want.AutoConnect = "CH", []netip.Addr{netip.MustParseAddr("9.9.9.9")}, true
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("after patch %+v, want %+v", s, want)
	}
	if got := decodeBody[api.Settings](t, ts.do(t, "GET", "/v1/settings", ""), 200); !reflect.DeepEqual(got, want) {
		t.Fatalf("GET after patch %+v", got)
	}
}

func TestRoutingErrors(t *testing.T) {
	ts := startServer(t, Config{})
	wantError(t, ts.do(t, "GET", "/v2/status", ""), 404, api.CodeNotFound, "/v1/status")
	wantError(t, ts.do(t, "GET", "/v1/status/", ""), 404, api.CodeNotFound)
	wantError(t, ts.do(t, "GET", "/", ""), 404, api.CodeNotFound)
	r := ts.do(t, "DELETE", "/v1/settings", "")
	wantError(t, r, 405, api.CodeMethodNotAllowed, "GET or PATCH")
	if a := r.header.Get("Allow"); a != "GET, PATCH" {
		t.Errorf("Allow %q", a)
	}
	wantError(t, ts.do(t, "GET", "/v1/connect", ""), 405, api.CodeMethodNotAllowed, "POST")
	wantError(t, ts.do(t, "POST", "/v1/status", "{}"), 405, api.CodeMethodNotAllowed)
	if r := ts.do(t, "HEAD", "/v1/status", ""); r.status != 405 {
		t.Errorf("HEAD: %d", r.status)
	}
	wantError(t, ts.do(t, "OPTIONS", "/v1/connect", ""), 405, api.CodeMethodNotAllowed)
}

func TestOriginRefused(t *testing.T) {
	ts := startServer(t, Config{})
	for _, h := range []string{
		"Origin: https://evil.example",
		"Origin: null",
		"Referer: https://evil.example/page",
		"Sec-Fetch-Mode: cors",
		"Sec-Fetch-Site: cross-site",
		"Host: evil.example",
		"Host: 127.0.0.1",
		"Host: nymvpnd.evil.example",
	} {
		t.Run(h, func(t *testing.T) {
			for _, rq := range [][2]string{{"GET", "/v1/status"}, {"POST", "/v1/connect"}, {"GET", "/nowhere"}} {
				wantError(t, ts.do(t, rq[0], rq[1], "", h), 403, api.CodeOriginRefused, "web pages")
			}
		})
	}
	for _, h := range []string{"Host: localhost", "Host: nymvpnd:80", "Host: LOCALHOST:8080", "Host: "} {
		if r := ts.do(t, "GET", "/v1/status", "", h); r.status != 200 {
			t.Errorf("%s: %d %s", h, r.status, r.body)
		}
	}
	if len(ts.backend.connects) != 0 {
		t.Error("a browser request reached the backend")
	}
}

func TestBackendErrors(t *testing.T) {
	ts := startServer(t, Config{})
	ts.backend.setErr(&api.APIError{Status: 503, Code: api.CodeUnavailable, Message: "the directory cannot be reached"})
	wantError(t, ts.do(t, "GET", "/v1/gateways", ""), 503, api.CodeUnavailable, "cannot be reached")
	ts.backend.setErr(fmt.Errorf("wrapped: %w", &api.APIError{Code: api.CodeNoDirectory, Message: "no directory URL is set"}))
	wantError(t, ts.do(t, "POST", "/v1/connect", ""), 409, api.CodeNoDirectory, "no directory")
	ts.backend.setErr(&api.APIError{Code: api.CodeNotSupported, Message: "mixnet mode is not built yet"})
	wantError(t, ts.do(t, "POST", "/v1/connect", `{"mode":"mixnet"}`), 501, api.CodeNotSupported)
	ts.backend.setErr(errors.New("open /dev/net/tun: secret detail"))
	r := ts.do(t, "POST", "/v1/disconnect", "")
	wantError(t, r, 500, api.CodeInternal, "log")
	if strings.Contains(string(r.body), "secret") {
		t.Errorf("internal detail leaked: %s", r.body)
	}
}

// eventStream opens GET /v1/events.
type eventStream struct {
	t      *testing.T
	resp   *http.Response
	rd     *bufio.Reader
	cancel context.CancelFunc
}

func (ts *testServer) events(t *testing.T) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://nymvpnd/v1/events", nil)
	resp, err := httpClient(ts.path).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		cancel()
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	es := &eventStream{t: t, resp: resp, rd: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(es.close)
	return es
}

func (es *eventStream) close() { es.cancel(); es.resp.Body.Close() }

// next reads one event, failing the test after 5 seconds.
func (es *eventStream) next() (api.Event, error) {
	es.t.Helper()
	type result struct {
		e   api.Event
		err error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := es.rd.ReadBytes('\n')
		if err != nil {
			ch <- result{err: err}
			return
		}
		var e api.Event
		dec := json.NewDecoder(strings.NewReader(string(line)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&e)
		ch <- result{e, err}
	}()
	select {
	case r := <-ch:
		return r.e, r.err
	case <-time.After(5 * time.Second):
		es.t.Fatal("no event within 5s")
		return api.Event{}, nil
	}
}

func (es *eventStream) mustNext() api.Event {
	es.t.Helper()
	e, err := es.next()
	if err != nil {
		es.t.Fatal(err)
	}
	return e
}

func TestEvents(t *testing.T) {
	ts := startServer(t, Config{})
	es := ts.events(t)
	first := es.mustNext()
	if first.Seq != 1 || first.Status == nil || first.Status.Caller == nil || !first.Status.Caller.CanWrite {
		t.Fatalf("first event %+v", first)
	}
	if first.Status.State.Kind != api.Disconnected {
		t.Fatalf("first state %+v", first.Status.State)
	}
	// A connect through the API shows up as target, then state.
	ts.do(t, "POST", "/v1/connect", "")
	stages := []string{"starting the entry tunnel", "waiting for the exit handshake"}
	for _, s := range stages {
		ts.hub.SetState(api.State{Kind: api.Connecting, Mode: "fast", Stage: s, Attempt: 1})
	}
	ts.hub.SetTraffic(&api.Traffic{TxBytes: 10, RxBytes: 20})
	ts.hub.SetTraffic(nil)
	var got []api.Event
	for range 6 {
		got = append(got, es.mustNext())
	}
	for i, e := range got {
		if e.Seq != uint64(i+2) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	if got[0].Target != "connected" || got[1].State == nil || got[1].State.Stage != "registering with the entry gateway" ||
		got[2].State.Stage != stages[0] || got[3].State.Stage != stages[1] ||
		got[4].Traffic == nil || got[4].Traffic.RxBytes != 20 || got[5].Traffic == nil || *got[5].Traffic != (api.Traffic{}) {
		b, _ := json.Marshal(got)
		t.Fatalf("events %s", b)
	}
	// Folding the events gives the hub's status.
	st := *first.Status
	for _, e := range got {
		st.Apply(e)
	}
	want := ts.hub.Status()
	st.Caller = nil
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("folded %+v\nhub    %+v", st, want)
	}
	// Shutting the daemon down ends the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := es.next(); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("after shutdown: %v, want EOF", err)
	}
}

func TestEventsClientGoesAway(t *testing.T) {
	ts := startServer(t, Config{})
	es := ts.events(t)
	es.mustNext()
	if n := ts.hub.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers", n)
	}
	es.close()
	deadline := time.Now().Add(5 * time.Second)
	for ts.hub.Subscribers() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream of a client that went away is still subscribed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEventsSlowSubscriber checks that a client that stops reading is
// dropped without slowing the publisher, and that its stream ends cleanly
// with no gap in what it got.
func TestEventsSlowSubscriber(t *testing.T) {
	ts := startServer(t, Config{EventBuffer: 4})
	slow := ts.events(t)
	slow.mustNext()
	fast := ts.events(t)
	fast.mustNext()
	// The fast reader drains in the background.
	fastDone := make(chan int)
	go func() {
		n := 0
		for {
			line, err := fast.rd.ReadBytes('\n')
			if err != nil || strings.Contains(string(line), `"rx_bytes":-1`) {
				fastDone <- n
				return
			}
			n++
		}
	}()
	const n = 20000 // ~1.5 MB of events: more than the socket buffers hold
	start := time.Now()
	for i := range n {
		ts.hub.SetTraffic(&api.Traffic{TxBytes: int64(i + 1), RxBytes: int64(i + 1)})
		if i%500 == 0 {
			time.Sleep(time.Millisecond) // let the fast reader keep up
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("publishing took %v: a slow subscriber blocked the publisher", d)
	}
	// The slow client, reading now, gets consecutive events, then EOF.
	seq := uint64(1)
	for {
		e, err := slow.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("slow stream: %v", err)
			}
			break
		}
		if e.Seq != seq+1 {
			t.Fatalf("slow stream: seq %d after %d", e.Seq, seq)
		}
		seq = e.Seq
	}
	if seq >= n+1 {
		t.Fatalf("slow client got all %d events; it should have been dropped", seq)
	}
	ts.hub.SetTraffic(&api.Traffic{RxBytes: -1}) // end marker for the fast reader
	select {
	case got := <-fastDone:
		// The fast reader may be dropped too on a loaded machine; it must
		// at least have kept up for a while.
		if got == 0 {
			t.Error("fast reader got nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fast reader stuck")
	}
}

func TestServeReturnsNilAfterClose(t *testing.T) {
	ts := startServer(t, Config{})
	es := ts.events(t)
	es.mustNext()
	if err := ts.srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ts.served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
		ts.served <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if _, err := os.Stat(ts.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestNewRequiresBackendAndHub(t *testing.T) {
	if _, err := New(Config{Hub: NewHub(api.Status{})}); err == nil {
		t.Error("New accepted a nil Backend")
	}
	if _, err := New(Config{Backend: &fakeBackend{}}); err == nil {
		t.Error("New accepted a nil Hub")
	}
}
