// Package control is nymvpnd's control API server: HTTP/1.1 with JSON bodies
// over a Unix socket (a named pipe on Windows), on the routes listed in
// daemon/api.
//
// The pieces: a Hub holds the published api.Status and streams its changes;
// the daemon implements Backend to act on requests; Listen opens the socket;
// a Server serves it.
//
// # Who may do what
//
// Each accepted connection is identified once from the kernel: SO_PEERCRED
// on Linux, LOCAL_PEERCRED on macOS, the pipe client's process token on
// Windows (see PeerCred). Everyone who can open the socket (mode 0666; on
// Windows every authenticated user) may read; connect, disconnect, PATCH
// /v1/settings and the account's changes (POST and DELETE /v1/account, POST
// /v1/account/import) need the Authorizer's consent (by default a Policy:
// root, the nymvpn group or the operator) and are otherwise refused with 403
// forbidden and a message saying how to get the right.
//
// # Browser protection
//
// A web page cannot reach a Unix socket, but a local proxy or port forward
// could expose the API to one, and DNS rebinding would then let any site
// talk to it. So every request that carries an Origin, Referer or Sec-Fetch-*
// header (browsers add them; the CLI and app never do), or a Host other than
// "nymvpnd" or "localhost" (with any port) or none, is refused with 403
// origin_refused before anything else is looked at. Request bodies must
// also be application/json (or untyped), which no cross-site form can send.
//
// # Requests and errors
//
// Bodies are decoded strictly: at most MaxBodySize bytes, exactly one JSON
// object, no unknown fields; query parameters other than the documented ones
// are refused. Every error is an api.ErrorBody: 400 bad_request or
// invalid_setting, 403 forbidden or origin_refused, 404 not_found, 405
// method_not_allowed (with an Allow header), errors of the Backend, and 500
// internal for anything unexpected (details only in the daemon's log).
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/daemon/api"
	"github.com/nymvpn/nymvpn/daemon/settings"
)

// Limits of the server.
const (
	MaxBodySize        = 64 << 10 // bytes of a request body
	DefaultEventBuffer = 64       // events a slow /v1/events client may lag behind
	readHeaderTimeout  = 10 * time.Second
	readBodyTimeout    = 10 * time.Second
	writeTimeout       = 10 * time.Second // per response, and per event line
	idleTimeout        = 2 * time.Minute
	maxHeaderBytes     = 16 << 10
)

// Config configures a Server.
type Config struct {
	// Backend acts on requests (required).
	Backend Backend
	// Hub is the published state (required).
	Hub *Hub
	// Authorizer decides who may write; nil means &Policy{Group:
	// DefaultGroup}.
	Authorizer Authorizer
	// Logger gets the server's log; nil means slog.Default().
	Logger *slog.Logger
	// EventBuffer is each event stream's Hub buffer; 0 means
	// DefaultEventBuffer.
	EventBuffer int
}

// Server serves the control API.
type Server struct {
	backend Backend
	hub     *Hub
	authz   Authorizer
	log     *slog.Logger
	buffer  int
	routes  map[string]map[string]route

	http      *http.Server
	done      chan struct{} // closed by Shutdown and Close: ends event streams
	closeOnce sync.Once
}

// route is one method of one path.
type route struct {
	write  bool     // needs the Authorizer's consent
	params []string // allowed query parameters
	handle func(w http.ResponseWriter, r *http.Request, cred PeerCred)
}

// New returns a Server; call Serve to start it.
func New(cfg Config) (*Server, error) {
	if cfg.Backend == nil {
		return nil, errors.New("control: Config.Backend is nil")
	}
	if cfg.Hub == nil {
		return nil, errors.New("control: Config.Hub is nil")
	}
	s := &Server{
		backend: cfg.Backend,
		hub:     cfg.Hub,
		authz:   cfg.Authorizer,
		log:     cfg.Logger,
		buffer:  cfg.EventBuffer,
		done:    make(chan struct{}),
	}
	if s.authz == nil {
		s.authz = &Policy{Group: DefaultGroup}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.buffer <= 0 {
		s.buffer = DefaultEventBuffer
	}
	s.routes = map[string]map[string]route{
		"/v1/status":     {http.MethodGet: {handle: s.getStatus}},
		"/v1/events":     {http.MethodGet: {handle: s.getEvents}},
		"/v1/connect":    {http.MethodPost: {write: true, handle: s.postConnect}},
		"/v1/disconnect": {http.MethodPost: {write: true, handle: s.postDisconnect}},
		"/v1/gateways":   {http.MethodGet: {params: []string{"role", "country"}, handle: s.getGateways}},
		"/v1/settings": {
			http.MethodGet:   {handle: s.getSettings},
			http.MethodPatch: {write: true, handle: s.patchSettings},
		},
	}
	maps.Copy(s.routes, s.accountRoutes())
	s.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       s.connContext,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Serve serves connections from ln until Shutdown or Close, then returns
// nil; it closes ln.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("control: serve: %w", err)
}

// Shutdown stops accepting connections, ends event streams and waits for
// other requests in flight to finish, or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.done) })
	if err := s.http.Shutdown(ctx); err != nil {
		return fmt.Errorf("control: shutdown: %w", err)
	}
	return nil
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	if err := s.http.Close(); err != nil {
		return fmt.Errorf("control: close: %w", err)
	}
	return nil
}

// connContext identifies the caller of a new connection. A caller whose
// credentials cannot be read fully keeps what was read (on failure
// anonymous, who may only read).
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	cred, err := peerCred(c)
	if err != nil {
		s.log.Warn("control: cannot fully identify a caller", append(credAttrs(cred), "err", err)...)
	}
	return withPeerCred(ctx, cred)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	cred, _ := PeerCredFromContext(r.Context())
	if msg := browserCheck(r); msg != "" {
		s.log.Warn("control: refused a browser-like request", append(credAttrs(cred), "method", r.Method, "path", r.URL.Path, "why", msg)...)
		s.fail(w, r, &api.APIError{Status: http.StatusForbidden, Code: api.CodeOriginRefused, Message: msg})
		return
	}
	methods, ok := s.routes[r.URL.Path]
	if !ok {
		s.fail(w, r, &api.APIError{Status: http.StatusNotFound, Code: api.CodeNotFound,
			Message: fmt.Sprintf("no such path %q; the API's paths are /v1/status, /v1/events, /v1/connect, /v1/disconnect, /v1/gateways, /v1/settings, /v1/account, /v1/account/import and /v1/tickets", clip(r.URL.Path))})
		return
	}
	rt, ok := methods[r.Method]
	if !ok {
		allow := make([]string, 0, len(methods))
		for m := range methods {
			allow = append(allow, m)
		}
		slices.Sort(allow)
		h.Set("Allow", strings.Join(allow, ", "))
		s.fail(w, r, &api.APIError{Status: http.StatusMethodNotAllowed, Code: api.CodeMethodNotAllowed,
			Message: fmt.Sprintf("%s is not allowed on %s; use %s", clip(r.Method), r.URL.Path, strings.Join(allow, " or "))})
		return
	}
	if rt.write {
		if err := s.authz.AuthorizeWrite(cred); err != nil {
			s.log.Info("control: refused a write from a read-only caller", append(credAttrs(cred), "method", r.Method, "path", r.URL.Path)...)
			s.fail(w, r, &api.APIError{Status: http.StatusForbidden, Code: api.CodeForbidden, Message: err.Error()})
			return
		}
	}
	if err := checkQuery(r.URL.RawQuery, rt.params); err != nil {
		s.fail(w, r, err)
		return
	}
	rt.handle(w, r, cred)
}

// browserCheck returns why r looks like it comes from a web browser, or "".
func browserCheck(r *http.Request) string {
	const tail = "; the control API serves only the nymvpn CLI and app, never web pages"
	for _, h := range []string{"Origin", "Referer"} {
		if _, ok := r.Header[h]; ok {
			return "request refused: it carries an " + h + " header" + tail
		}
	}
	for k := range r.Header {
		if strings.HasPrefix(k, "Sec-Fetch-") {
			return "request refused: it carries a " + clip(k) + " header" + tail
		}
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	switch strings.ToLower(host) {
	case "", "nymvpnd", "localhost":
		return ""
	}
	return fmt.Sprintf("request refused: Host %q is not nymvpnd or localhost%s", clip(r.Host), tail)
}

// checkQuery refuses malformed, repeated and unknown query parameters.
func checkQuery(raw string, allowed []string) error {
	if raw == "" {
		return nil
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return badRequest("malformed query string: %v", err)
	}
	for k, v := range q {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			if len(allowed) == 0 {
				return badRequest("unknown query parameter %q: this path takes none", clip(k))
			}
			return badRequest("unknown query parameter %q: this path takes %s", clip(k), strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return badRequest("query parameter %q given %d times", k, len(v))
		}
	}
	return nil
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request, cred PeerCred) {
	st := s.hub.Status()
	st.Caller = s.caller(cred)
	s.reply(w, r, http.StatusOK, st)
}

func (s *Server) caller(cred PeerCred) *api.Caller {
	return &api.Caller{UID: cred.UID, SID: cred.SID, CanWrite: s.authz.AuthorizeWrite(cred) == nil}
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, _ PeerCred) {
	s.reply(w, r, http.StatusOK, s.hub.Status().Settings)
}

func (s *Server) getGateways(w http.ResponseWriter, r *http.Request, _ PeerCred) {
	q := r.URL.Query()
	role := strings.ToLower(q.Get("role"))
	if role != "" && role != "entry" && role != "exit" {
		s.fail(w, r, badRequest("role %q: want entry or exit", clip(q.Get("role"))))
		return
	}
	country := q.Get("country")
	if country != "" {
		c, err := settings.NormalizeChoice("country", country)
		if err != nil || len(c) != 2 || c == "auto" {
			s.fail(w, r, badRequest("country %q: want a two-letter country code such as DE", clip(country)))
			return
		}
		country = c
	}
	gws, err := s.backend.Gateways(r.Context(), role, country)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if gws == nil {
		gws = []api.Gateway{}
	}
	s.reply(w, r, http.StatusOK, gws)
}

func (s *Server) postConnect(w http.ResponseWriter, r *http.Request, cred PeerCred) {
	var req api.ConnectRequest
	if err := s.decode(w, r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := normalizeConnect(req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("control: connect", append(credAttrs(cred), "mode", req.Mode, "entry", req.Entry, "exit", req.Exit)...)
	st, err := s.backend.Connect(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, r, http.StatusAccepted, st)
}

// normalizeConnect validates the set fields of req as the settings they
// will become.
func normalizeConnect(req api.ConnectRequest) (api.ConnectRequest, error) {
	var err error
	if req.Mode != "" {
		if req.Mode, err = settings.NormalizeMode(req.Mode); err != nil {
			return req, err
		}
	}
	if req.Entry != "" {
		if req.Entry, err = settings.NormalizeChoice("entry", req.Entry); err != nil {
			return req, err
		}
	}
	if req.Exit != "" {
		if req.Exit, err = settings.NormalizeChoice("exit", req.Exit); err != nil {
			return req, err
		}
	}
	return req, nil
}

func (s *Server) postDisconnect(w http.ResponseWriter, r *http.Request, cred PeerCred) {
	var req struct{}
	if err := s.decode(w, r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("control: disconnect", credAttrs(cred)...)
	st, err := s.backend.Disconnect(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, r, http.StatusAccepted, st)
}

func (s *Server) patchSettings(w http.ResponseWriter, r *http.Request, cred PeerCred) {
	var p api.SettingsPatch
	if err := s.decode(w, r, &p, false); err != nil {
		s.fail(w, r, err)
		return
	}
	// Refuse invalid values before the Backend sees them; the Backend
	// applies the patch to its own settings again.
	if _, err := settings.Apply(s.hub.Status().Settings, p); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("control: change settings", append(credAttrs(cred), "fields", patchFields(p))...)
	set, err := s.backend.UpdateSettings(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.reply(w, r, http.StatusOK, set)
}

// patchFields names the fields p sets, for the log (values may be long).
func patchFields(p api.SettingsPatch) []string {
	var f []string
	for name, set := range map[string]bool{
		"mode": p.Mode != nil, "entry": p.Entry != nil, "exit": p.Exit != nil, "dns": p.DNS != nil,
		"ipv6": p.IPv6 != nil, "auto_connect": p.AutoConnect != nil, "directory_url": p.DirectoryURL != nil,
	} {
		if set {
			f = append(f, name)
		}
	}
	slices.Sort(f)
	return f
}

// decode reads r's body into v strictly. An empty body leaves v alone if
// emptyOK, and is an error otherwise.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, emptyOK bool) error {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(readBodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return badRequest("request body is larger than %d bytes", MaxBodySize)
		}
		return badRequest("reading the request body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if emptyOK {
			return nil
		}
		return badRequest("request body is empty: want a JSON object")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return badRequest("Content-Type %q: the body must be application/json", clip(ct))
		}
	}
	if err := settings.DecodeStrict(body, v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

// getEvents streams the Hub: the full Status (with the caller), then every
// change, one JSON line each, flushed at once. It ends when the client goes
// away, the server shuts down, the client falls too far behind (the Hub
// drops it) or a line cannot be written within writeTimeout.
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request, cred PeerCred) {
	first, events, cancel := s.hub.Subscribe(s.buffer)
	defer cancel()
	first.Caller = s.caller(cred)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(e api.Event) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := enc.Encode(e); err != nil {
			s.log.Debug("control: event stream write failed", append(credAttrs(cred), "err", err)...)
			return false
		}
		if err := rc.Flush(); err != nil {
			s.log.Debug("control: event stream flush failed", append(credAttrs(cred), "err", err)...)
			return false
		}
		return true
	}
	if !send(api.Event{Seq: 1, Status: &first}) {
		return
	}
	for {
		select {
		case e, ok := <-events:
			if !ok {
				s.log.Info("control: dropped a slow event subscriber; it will reconnect", credAttrs(cred)...)
				return
			}
			if !send(e) {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

// reply writes v as JSON with status.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.fail(w, r, fmt.Errorf("encode %T: %w", v, err))
		return
	}
	s.write(w, status, append(b, '\n'))
}

func (s *Server) write(w http.ResponseWriter, status int, body []byte) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(writeTimeout))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// fail answers err as an api.ErrorBody; see Backend for which errors reach
// the caller as they are.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *api.APIError
	var fe *settings.FieldError
	var info api.ErrorInfo
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &ae):
		info = api.ErrorInfo{Code: ae.Code, Message: ae.Message}
		if info.Code == "" {
			info.Code = api.CodeInternal
		}
		status = ae.Status
		if status < 400 || status > 599 {
			status = StatusForCode(info.Code)
		}
		if info.Message == "" {
			info.Message = http.StatusText(status)
		}
	case errors.As(err, &fe):
		status = http.StatusBadRequest
		info = api.ErrorInfo{Code: api.CodeInvalidSetting, Message: fe.Error()}
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		s.log.Debug("control: request abandoned", "method", r.Method, "path", r.URL.Path, "err", err)
		info = api.ErrorInfo{Code: api.CodeInternal, Message: "request cancelled"}
	default:
		s.log.Error("control: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		info = api.ErrorInfo{Code: api.CodeInternal, Message: "internal error in nymvpnd; its log has the details"}
	}
	b, merr := json.Marshal(api.ErrorBody{Error: info})
	if merr != nil {
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	s.write(w, status, append(b, '\n'))
}

// StatusForCode is the HTTP status of an api error code, for APIErrors
// without one.
func StatusForCode(code string) int {
	switch code {
	case api.CodeBadRequest, api.CodeInvalidSetting:
		return http.StatusBadRequest
	case api.CodeForbidden, api.CodeOriginRefused:
		return http.StatusForbidden
	case api.CodeNotFound:
		return http.StatusNotFound
	case api.CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case api.CodeUnavailable:
		return http.StatusServiceUnavailable
	case api.CodeNoDirectory:
		return http.StatusConflict
	case api.CodeNotSupported:
		return http.StatusNotImplemented
	}
	if st, ok := accountStatus(code); ok {
		return st
	}
	return http.StatusInternalServerError
}

func badRequest(format string, args ...any) *api.APIError {
	return &api.APIError{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

// credAttrs are log attributes naming a caller.
func credAttrs(c PeerCred) []any {
	if c.SID != "" {
		return []any{"sid", c.SID, "pid", c.PID}
	}
	return []any{"uid", c.UID, "pid", c.PID}
}

// clip shortens a caller's string for a message or log.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
