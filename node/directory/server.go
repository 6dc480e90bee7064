package directory

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server defaults.
const (
	DefaultEpochLength   = time.Hour
	DefaultTTL           = 10 * time.Minute
	DefaultDescriptorTTL = 3 * time.Minute
)

// Registration errors of Server.Add and POST /v1/nodes.
var (
	// ErrIdentityConflict: the id is registered with another identity key.
	ErrIdentityConflict = errors.New("directory: node id is registered with a different identity key")
	// ErrUnknownIdentity: the identity key is not allowed to announce.
	ErrUnknownIdentity = errors.New("directory: identity key not allowed to announce")
	// ErrReplayed: the descriptor is older than one already accepted.
	ErrReplayed = errors.New("directory: descriptor older than the last one accepted")
	// ErrFull: the directory holds as many nodes, or bytes, as a document can.
	ErrFull = errors.New("directory: full")
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Key signs the topology (required).
	Key ed25519.PrivateKey
	// EpochLength is the length of an epoch; default DefaultEpochLength.
	// Mix layers are assigned and Sphinx keys published per epoch: the
	// served topology lists each node's keys for the current and the next
	// epoch only, and the layers of the current epoch (see AssignLayers).
	EpochLength time.Duration
	// TTL is how long a signed document is valid; default DefaultTTL. The
	// document is re-signed once half of it has passed, so a served document
	// is always valid for at least TTL/2.
	TTL time.Duration
	// Allowed lists the identity keys allowed to announce.
	Allowed []ed25519.PublicKey
	// Open accepts announcements from any identity key, listed or not
	// (local network). With Open false and Allowed empty, nodes can only be
	// registered in process with Add.
	Open bool
	// DescriptorTTL drops announced nodes not re-announced within it;
	// default DefaultDescriptorTTL. Nodes registered with Add never expire.
	DescriptorTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default discards.
	Logger *slog.Logger
}

// Server is a directory: a registry of nodes and the HTTP API that serves the
// signed topology and accepts signed descriptors. Safe for concurrent use.
type Server struct {
	cfg     ServerConfig
	pub     ed25519.PublicKey
	allowed map[string]bool
	log     *slog.Logger

	mu         sync.Mutex
	nodes      map[string]*entry
	bytes      int       // sum of entry.size
	nextExpiry time.Time // earliest expiry of an announced node; zero if none
	dirty      bool      // nodes changed since doc was signed
	doc        []byte    // current signed document
	etag       string
	topo       *Topology // what doc holds
}

type entry struct {
	node    Node
	static  bool      // registered with Add: never expires
	expires time.Time // announced: dropped after this
	lastTS  time.Time // timestamp of the last accepted descriptor
	size    int       // encoded size in the document
}

// docOverhead is room for the topology fields around the nodes.
const docOverhead = 4 << 10

// NewServer returns a directory server for cfg.
func NewServer(cfg ServerConfig) (*Server, error) {
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("directory server: key is %d bytes, want an ed25519 private key of %d", len(cfg.Key), ed25519.PrivateKeySize)
	}
	if cfg.EpochLength == 0 {
		cfg.EpochLength = DefaultEpochLength
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.DescriptorTTL == 0 {
		cfg.DescriptorTTL = DefaultDescriptorTTL
	}
	if cfg.EpochLength < time.Second || cfg.TTL < 2*time.Second || cfg.DescriptorTTL < time.Second {
		return nil, fmt.Errorf("directory server: epoch length %v, TTL %v, descriptor TTL %v: want at least 1s, 2s, 1s", cfg.EpochLength, cfg.TTL, cfg.DescriptorTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		pub:     cfg.Key.Public().(ed25519.PublicKey),
		allowed: make(map[string]bool, len(cfg.Allowed)),
		log:     cfg.Logger,
		nodes:   make(map[string]*entry),
		dirty:   true,
	}
	for i, k := range cfg.Allowed {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("directory server: allowed key %d is %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
		s.allowed[string(k)] = true
	}
	if !cfg.Open && len(cfg.Allowed) == 0 {
		s.log.Info("directory: no identity allowed to announce; only in-process registration")
	}
	return s, nil
}

// PublicKey returns the directory's public key, the one clients pin.
func (s *Server) PublicKey() ed25519.PublicKey { return s.pub }

// URL returns the directory URL for baseURL (e.g. "http://127.0.0.1:8080")
// with this server's key pinned.
func (s *Server) URL(baseURL string) string { return FormatURL(baseURL, s.pub) }

// Add registers or updates n in process. It never expires; see Remove.
func (s *Server) Add(n Node) error {
	if err := n.Validate(); err != nil {
		return fmt.Errorf("add node: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.putLocked(n.clone(), s.cfg.Now(), true, time.Time{}); err != nil {
		return fmt.Errorf("add node %q: %w", n.ID, err)
	}
	return nil
}

// Remove drops the node with the given id, if any.
func (s *Server) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.nodes[id]; ok {
		s.deleteLocked(id, e)
		s.log.Info("directory: node removed", "id", id)
	}
}

// Topology returns a copy of the topology currently served.
func (s *Server) Topology() *Topology {
	t, _, _, err := s.current()
	if err != nil {
		// Cannot happen: every node was validated and the size bounded.
		s.log.Error("directory: signing topology", "err", err)
		return &Topology{}
	}
	return t.clone()
}

// putLocked stores n. announced descriptors carry ts; static entries come from Add.
func (s *Server) putLocked(n Node, now time.Time, static bool, ts time.Time) error {
	s.pruneLocked(now)
	old, exists := s.nodes[n.ID]
	if exists && !bytes.Equal(old.node.IdentityKey, n.IdentityKey) {
		return fmt.Errorf("%w: %q is held by %s, not %s", ErrIdentityConflict, n.ID,
			base64.StdEncoding.EncodeToString(old.node.IdentityKey), base64.StdEncoding.EncodeToString(n.IdentityKey))
	}
	if exists && !static && ts.Before(old.lastTS) {
		return fmt.Errorf("%w: %q signed at %s, last accepted %s", ErrReplayed, n.ID,
			ts.UTC().Format(time.RFC3339Nano), old.lastTS.UTC().Format(time.RFC3339Nano))
	}
	size := n.encodedSize()
	if !exists && len(s.nodes) >= MaxNodes {
		return fmt.Errorf("%w: %d nodes", ErrFull, len(s.nodes))
	}
	grow := size
	if exists {
		grow -= old.size
	}
	if s.bytes+grow > MaxDocumentSize-docOverhead {
		return fmt.Errorf("%w: %d bytes of nodes", ErrFull, s.bytes)
	}
	e := &entry{node: n, static: static, size: size, lastTS: ts}
	if exists {
		e.static = static || old.static
		if ts.IsZero() {
			e.lastTS = old.lastTS
		}
	}
	if !e.static {
		e.expires = now.Add(s.cfg.DescriptorTTL)
		if s.nextExpiry.IsZero() || e.expires.Before(s.nextExpiry) {
			s.nextExpiry = e.expires
		}
	}
	s.nodes[n.ID] = e
	s.bytes += grow
	if !exists || !nodeEqual(&old.node, &n) {
		s.dirty = true
		if exists {
			s.log.Debug("directory: node updated", "id", n.ID)
		} else {
			s.log.Info("directory: node joined", "id", n.ID, "roles", n.Roles, "country", n.Country, "announced", !static)
		}
	}
	return nil
}

func nodeEqual(a, b *Node) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func (s *Server) deleteLocked(id string, e *entry) {
	delete(s.nodes, id)
	s.bytes -= e.size
	s.dirty = true
}

// pruneLocked drops announced nodes whose descriptor expired.
func (s *Server) pruneLocked(now time.Time) {
	if s.nextExpiry.IsZero() || now.Before(s.nextExpiry) {
		return
	}
	s.nextExpiry = time.Time{}
	for id, e := range s.nodes {
		if e.static {
			continue
		}
		if !now.Before(e.expires) {
			s.deleteLocked(id, e)
			s.log.Info("directory: node expired, not re-announced", "id", id, "expired", e.expires)
			continue
		}
		if s.nextExpiry.IsZero() || e.expires.Before(s.nextExpiry) {
			s.nextExpiry = e.expires
		}
	}
}

// current returns the served topology and document, re-signing when nodes
// changed, the epoch moved on, half the TTL has passed or the clock went back.
func (s *Server) current() (*Topology, []byte, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	s.pruneLocked(now)
	if !s.dirty && s.topo != nil {
		epoch, _ := EpochAt(now, s.cfg.EpochLength)
		half := s.topo.Issued.Add(s.cfg.TTL / 2)
		if epoch == s.topo.Epoch && now.Before(half) && !now.Before(s.topo.Issued) {
			return s.topo, s.doc, s.etag, nil
		}
	}
	epoch, start := EpochAt(now, s.cfg.EpochLength)
	issued := now.UTC().Truncate(time.Millisecond)
	t := &Topology{
		Epoch:       epoch,
		EpochStart:  start,
		EpochLength: Duration(s.cfg.EpochLength),
		Issued:      issued,
		Expires:     issued.Add(s.cfg.TTL),
		Nodes:       make([]Node, 0, len(s.nodes)),
	}
	for _, e := range s.nodes {
		n := e.node.clone()
		n.SphinxKeys = publishedKeys(n.SphinxKeys, epoch)
		t.Nodes = append(t.Nodes, n)
	}
	t.sortNodes()
	AssignLayers(t.Nodes, epoch)
	doc, err := SignTopology(t, s.cfg.Key)
	if err != nil {
		return nil, nil, "", err
	}
	sum := sha256.Sum256(doc)
	s.topo, s.doc, s.etag, s.dirty = t, doc, `"`+hex.EncodeToString(sum[:16])+`"`, false
	s.log.Debug("directory: topology signed", "epoch", epoch, "nodes", len(t.Nodes), "bytes", len(doc))
	return t, doc, s.etag, nil
}

// announce handles a signed descriptor.
func (s *Server) announce(b []byte) (*entry, error) {
	now := s.cfg.Now()
	d, err := verifyDescriptor(b, now)
	if err != nil {
		return nil, err
	}
	if !s.cfg.Open && !s.allowed[string(d.Node.IdentityKey)] {
		return nil, fmt.Errorf("%w: node %q with identity key %s; add it to the directory's allowed keys", ErrUnknownIdentity,
			d.Node.ID, base64.StdEncoding.EncodeToString(d.Node.IdentityKey))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.putLocked(d.Node, now, false, d.Timestamp); err != nil {
		return nil, err
	}
	e := *s.nodes[d.Node.ID]
	return &e, nil
}

// Serve serves Handler on ln with conservative timeouts until ctx is done,
// then shuts down gracefully (5 s at most) and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("directory: serving", "addr", ln.Addr().String(), "url", s.URL("http://"+ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("directory: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	<-errc
	return nil
}

// Handler returns the HTTP API:
//
//	GET  /v1/topology  the signed topology document (ETag, Cache-Control)
//	POST /v1/nodes     a signed descriptor; 200 {"id","expires"} or a JSON error
//	GET  /healthz      {"status":"ok","epoch":…,"nodes":…}
//
// Errors are JSON {"code": …, "message": …}. Set server timeouts on the
// http.Server that serves it.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/topology", s.handleTopology)
	mux.HandleFunc("/v1/nodes", s.handleNodes)
	mux.HandleFunc("/healthz", s.handleHealth)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+truncate(r.URL.Path, 100))
	})
	return mux
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" not allowed here")
	return false
}

func (s *Server) handleTopology(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	t, doc, etag, err := s.current()
	if err != nil {
		s.log.Error("directory: signing topology", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "cannot sign the topology")
		return
	}
	maxAge := min(30*time.Second, t.Expires.Sub(s.cfg.Now()))
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(max(0, int(maxAge/time.Second))))
	h.Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(doc)
	}
}

func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxDescriptorSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("descriptor larger than %d bytes", MaxDescriptorSize))
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", "reading body: "+err.Error())
		return
	}
	e, err := s.announce(body)
	if err != nil {
		status, code := classify(err)
		lvl := slog.LevelDebug
		if status == http.StatusForbidden || status == http.StatusConflict {
			lvl = slog.LevelWarn
		}
		s.log.Log(r.Context(), lvl, "directory: announcement refused", "remote", r.RemoteAddr, "code", code, "err", err)
		writeError(w, status, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, announceAnswer{ID: e.node.ID, Expires: e.expires.UTC(), TTL: Duration(s.cfg.DescriptorTTL)})
}

// announceAnswer is the body of a successful POST /v1/nodes.
type announceAnswer struct {
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"` // the node is dropped then unless re-announced
	TTL     Duration  `json:"ttl"`     // the directory's descriptor TTL, in seconds
}

// classify maps an announcement error to an HTTP status and stable code.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, ErrUnknownIdentity):
		return http.StatusForbidden, "unknown_identity"
	case errors.Is(err, ErrBadSignature):
		return http.StatusForbidden, "bad_signature"
	case errors.Is(err, ErrUnsigned):
		return http.StatusBadRequest, "unsigned"
	case errors.Is(err, ErrStale):
		return http.StatusBadRequest, "stale"
	case errors.Is(err, ErrMalformed):
		return http.StatusBadRequest, "malformed"
	case errors.Is(err, ErrIdentityConflict):
		return http.StatusConflict, "identity_conflict"
	case errors.Is(err, ErrReplayed):
		return http.StatusConflict, "replayed"
	case errors.Is(err, ErrFull):
		return http.StatusServiceUnavailable, "full"
	}
	return http.StatusInternalServerError, "internal"
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	s.mu.Lock()
	s.pruneLocked(s.cfg.Now())
	n := len(s.nodes)
	s.mu.Unlock()
	epoch, _ := EpochAt(s.cfg.Now(), s.cfg.EpochLength)
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "epoch": epoch, "nodes": n})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"internal","message":"encoding answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
