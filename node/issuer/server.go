package issuer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/node/directory"
	"github.com/nymvpn/nymvpn/node/metrics"
)

// DatabaseFileName is the issuer's bbolt database in its data directory.
const DatabaseFileName = "issuer.db"

// AdminTokenFileName holds the bearer token of the admin API (0600).
const AdminTokenFileName = "admin.token"

// Config configures an issuer.
type Config struct {
	// ID is the issuer's node id, for logs.
	ID string
	// DataDir holds the key file, the database and the admin token.
	DataDir string
	// Identity signs the published key (the identity key the directory lists).
	Identity ed25519.PrivateKey
	// Topology returns the directory's current view; spent-ticket reports are
	// accepted only from gateways it lists, signed by their identity keys.
	Topology func() *directory.Topology
	Now      func() time.Time
	Logger   *slog.Logger
}

// Issuer is a running issuer: an http.Handler and its database.
type Issuer struct {
	cfg   Config
	key   *Key
	store *store
	info  KeyInfo
	token []byte
	log   *slog.Logger
	mux   *http.ServeMux

	signed, signRefused, reports, spendsAccepted, spendsInvalid, doubleSpends atomic.Int64
}

// New loads the issuer's key from cfg.DataDir and opens its database.
func New(cfg Config) (*Issuer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Identity) != ed25519.PrivateKeySize {
		return nil, errors.New("issuer: identity key required")
	}
	key, err := LoadKey(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	token, err := loadOrCreateToken(filepath.Join(cfg.DataDir, AdminTokenFileName))
	if err != nil {
		return nil, err
	}
	st, err := openStore(filepath.Join(cfg.DataDir, DatabaseFileName))
	if err != nil {
		return nil, err
	}
	i := &Issuer{cfg: cfg, key: key, store: st, token: token, log: cfg.Logger.With("issuer", key.Share.Index)}
	i.info = KeyInfo{Index: key.Share.Index, Threshold: key.Threshold, Issuers: key.Issuers}
	i.info.Key, _ = key.Share.MarshalBinary()
	i.info.GroupKey, _ = key.Group.MarshalBinary()
	i.info.Sign(cfg.Identity)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/key", i.handleKey)
	mux.HandleFunc("POST /v1/sign", i.handleSign)
	mux.HandleFunc("GET /v1/accounts/{key}", i.handleAccount)
	mux.HandleFunc("POST /v1/admin/accounts", i.handleAdminAccount)
	mux.HandleFunc("POST /v1/spent", i.handleSpent)
	mux.HandleFunc("GET /v1/double-spends", i.handleDoubleSpends)
	mux.Handle("GET /metrics", metrics.Handler(i.Families))
	i.mux = mux
	return i, nil
}

// Handler serves the API.
func (i *Issuer) Handler() http.Handler { return i.mux }

// Key is the issuer's key material (public parts only are published).
func (i *Issuer) Key() *Key { return i.key }

// Close closes the database.
func (i *Issuer) Close() error { return i.store.close() }

// AddAllowance gives an account tickets (creating it): the in-process form of
// POST /v1/admin/accounts.
func (i *Issuer) AddAllowance(acct ed25519.PublicKey, tickets int64) (Account, error) {
	if len(acct) != ed25519.PublicKeySize {
		return Account{}, fmt.Errorf("issuer: account key of %d bytes", len(acct))
	}
	a, err := i.store.addAllowance(acct, tickets, i.cfg.Now())
	if err == nil {
		i.log.Info("allowance added", "account", fingerprint(acct), "tickets", tickets, "allowance", a.Allowance)
	}
	return a, err
}

// Account returns an account's standing.
func (i *Issuer) Account(acct ed25519.PublicKey) (Account, bool, error) { return i.store.account(acct) }

// DoubleSpends lists the double spends detected so far.
func (i *Issuer) DoubleSpends() ([]DoubleSpend, error) { return i.store.doubleSpends() }

// Maintain prunes old records every interval until ctx ends: answers to
// requests older than 15 days (no book lives longer) and spends of tickets
// expired for more than a week.
func (i *Issuer) Maintain(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := i.cfg.Now()
		last := credential.WeekOf(now)
		if last > 0 {
			last--
		}
		if n, err := i.store.prune(now, 15*24*time.Hour, uint16(last)); err != nil {
			i.log.Warn("pruning the database", "err", err)
		} else if n > 0 {
			i.log.Info("pruned old records", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (i *Issuer) handleKey(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, &i.info)
}

func (i *Issuer) handleSign(w http.ResponseWriter, r *http.Request) {
	var req SignRequest
	if !readJSON(w, r, &req) {
		return
	}
	resp, status, e := i.sign(&req)
	if e != nil {
		i.signRefused.Add(1)
		i.log.Info("sign request refused", "code", e.Code, "reason", e.Message)
		writeError(w, status, e.Code, e.Message)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// sign checks and answers one request.
func (i *Issuer) sign(req *SignRequest) (*SignResponse, int, *ErrorBody) {
	bad := func(status int, code, f string, a ...any) (*SignResponse, int, *ErrorBody) {
		return nil, status, &ErrorBody{Code: code, Message: fmt.Sprintf(f, a...)}
	}
	now := i.cfg.Now()
	if len(req.Account) != ed25519.PublicKeySize {
		return bad(http.StatusBadRequest, CodeMalformed, "account key of %d bytes, want %d", len(req.Account), ed25519.PublicKeySize)
	}
	if !ed25519.Verify(req.Account, SignMessage(i.key.Share.Index, req.RequestID, req.Timestamp, req.Request), req.Signature) {
		return bad(http.StatusUnauthorized, CodeBadSignature, "the account key's signature does not verify (signed for another issuer?)")
	}
	if skew := now.Sub(time.Unix(req.Timestamp, 0)); skew > MaxClockSkew || skew < -MaxClockSkew {
		return bad(http.StatusBadRequest, CodeStale, "request timestamp is %v from this issuer's clock (allowed ±%v)", skew.Round(time.Second), MaxClockSkew)
	}
	hash := sha256.Sum256(req.Request)
	// A request id seen before is answered from the records, charging nothing.
	if partial, ok, err := i.store.answered(req.RequestID, hash); err != nil {
		if errors.Is(err, errConflict) {
			return bad(http.StatusConflict, CodeConflict, "request id %x was used for another request", req.RequestID[:4])
		}
		return bad(http.StatusInternalServerError, CodeInternal, "database error")
	} else if ok {
		a, _, _ := i.store.account(req.Account)
		return &SignResponse{Partial: partial, Allowance: a.Allowance}, http.StatusOK, nil
	}
	var tr credential.TicketbookRequest
	if err := tr.UnmarshalBinary(req.Request); err != nil {
		return bad(http.StatusBadRequest, CodeMalformed, "ticketbook request: %v", err)
	}
	if tr.Count() > MaxTicketsPerRequest {
		return bad(http.StatusBadRequest, CodeMalformed, "%d tickets in one request, at most %d", tr.Count(), MaxTicketsPerRequest)
	}
	// Only the current expiry bucket, so expiries do not split the anonymity
	// set; the clock skew allowance covers a request made at a week's edge.
	if tr.Expiry != credential.ExpiryFor(now) && tr.Expiry != credential.ExpiryFor(now.Add(-MaxClockSkew)) && tr.Expiry != credential.ExpiryFor(now.Add(MaxClockSkew)) {
		return bad(http.StatusBadRequest, CodeWrongExpiry, "expiry week %d; this issuer signs week %d only", tr.Expiry, credential.ExpiryFor(now))
	}
	if err := i.store.checkAllowance(req.Account, int64(tr.Count())); err != nil {
		return i.allowanceError(err)
	}
	part, err := credential.BlindSign(i.key.Secret, &tr)
	if err != nil {
		return bad(http.StatusBadRequest, CodeBadRequest, "%v", err)
	}
	pb, _ := part.MarshalBinary()
	out, left, err := i.store.charge(req.RequestID, hash, req.Account, tr.PublicKey[:], int64(tr.Count()), pb, now)
	if err != nil {
		return i.allowanceError(err)
	}
	i.signed.Add(int64(tr.Count()))
	i.log.Info("ticketbook signed", "account", fingerprint(req.Account), "type", tr.Type, "tickets", tr.Count(), "allowance", left)
	return &SignResponse{Partial: out, Allowance: left}, http.StatusOK, nil
}

func (i *Issuer) allowanceError(err error) (*SignResponse, int, *ErrorBody) {
	switch {
	case errors.Is(err, errNoAccount):
		return nil, http.StatusForbidden, &ErrorBody{Code: CodeUnknownAcct, Message: "this issuer has no such account"}
	case errors.Is(err, errNoAllowance):
		return nil, http.StatusPaymentRequired, &ErrorBody{Code: CodeNoAllowance, Message: err.Error()}
	case errors.Is(err, errConflict):
		return nil, http.StatusConflict, &ErrorBody{Code: CodeConflict, Message: "request id was used for another request"}
	}
	i.log.Error("ledger", "err", err)
	return nil, http.StatusInternalServerError, &ErrorBody{Code: CodeInternal, Message: "database error"}
}

func (i *Issuer) handleAccount(w http.ResponseWriter, r *http.Request) {
	acct, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(r.PathValue("key"), "="))
	if err != nil || len(acct) != ed25519.PublicKeySize {
		writeError(w, http.StatusBadRequest, CodeMalformed, "account key: want 32 bytes of base64url")
		return
	}
	a, found, err := i.store.account(acct)
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeInternal, "database error")
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, CodeUnknownAcct, "this issuer has no such account")
		return
	}
	writeJSON(w, http.StatusOK, &a)
}

func (i *Issuer) handleAdminAccount(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), i.token) != 1 {
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "admin token required (Authorization: Bearer <DATA_DIR/admin.token>)")
		return
	}
	var req AllowanceRequest
	if !readJSON(w, r, &req) {
		return
	}
	a, err := i.AddAllowance(req.Account, req.Tickets)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeMalformed, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, &a)
}

func (i *Issuer) handleSpent(w http.ResponseWriter, r *http.Request) {
	var rep SpentReport
	if !readJSON(w, r, &rep) {
		return
	}
	resp, status, e := i.spent(&rep)
	if e != nil {
		i.log.Info("spent report refused", "gateway", rep.Gateway, "code", e.Code, "reason", e.Message)
		writeError(w, status, e.Code, e.Message)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// spent checks a gateway's report and records its spends, looking for double
// spends.
func (i *Issuer) spent(rep *SpentReport) (*SpentResponse, int, *ErrorBody) {
	now := i.cfg.Now()
	if len(rep.Spends) == 0 || len(rep.Spends) > MaxSpendsPerReport {
		return nil, http.StatusBadRequest, &ErrorBody{CodeMalformed, fmt.Sprintf("%d spends in a report, want 1..%d", len(rep.Spends), MaxSpendsPerReport)}
	}
	var gw *directory.Node
	if i.cfg.Topology != nil {
		if t := i.cfg.Topology(); t != nil {
			if n, ok := t.Node(rep.Gateway); ok && n.IsGateway() {
				gw = n
			}
		}
	}
	if gw == nil {
		return nil, http.StatusForbidden, &ErrorBody{CodeUnknownSender, fmt.Sprintf("%q is not a gateway of the directory", rep.Gateway)}
	}
	if !ed25519.Verify(gw.IdentityKey, ReportMessage(rep.Gateway, rep.Timestamp, rep.Spends), rep.Signature) {
		return nil, http.StatusUnauthorized, &ErrorBody{CodeBadSignature, "report not signed by the gateway's identity key"}
	}
	if skew := now.Sub(time.Unix(rep.Timestamp, 0)); skew > MaxClockSkew || skew < -MaxClockSkew {
		return nil, http.StatusBadRequest, &ErrorBody{CodeStale, fmt.Sprintf("report timestamp is %v from this issuer's clock", skew.Round(time.Second))}
	}
	i.reports.Add(1)
	var out SpentResponse
	for _, sp := range rep.Spends {
		v, err := credential.VerifySignature(i.key.Group, sp)
		if err != nil || v.PayInfo.GatewayKey != [32]byte(gw.NoiseKey) {
			out.Invalid++
			i.spendsInvalid.Add(1)
			continue
		}
		outcome, first, err := i.store.recordSpend(v.Serial[:], sp, rep.Gateway, uint16(v.Expiry), now)
		if err != nil {
			i.log.Error("recording a spend", "err", err)
			return nil, http.StatusInternalServerError, &ErrorBody{CodeInternal, "database error"}
		}
		switch outcome {
		case spendNew:
			out.Accepted++
			i.spendsAccepted.Add(1)
		case spendDuplicate:
			out.Duplicates++
		case spendConflict:
			if i.doubleSpend(v, first, sp, rep.Gateway, now) {
				out.DoubleSpends++
			} else {
				out.Duplicates++
			}
		}
	}
	return &out, http.StatusOK, nil
}

// doubleSpend identifies the spender of a serial seen twice and records it.
func (i *Issuer) doubleSpend(v *credential.VerifiedSpend, first *spendRecord, second []byte, gateway string, now time.Time) bool {
	pk, err := credential.IdentifyDoubleSpender(i.key.Group, first.Spend, second)
	if err != nil {
		// The same payment info twice (a replayed spend): refused by the
		// gateway's serial store, and it reveals nothing.
		i.log.Debug("second spend of a serial does not identify anyone", "err", err)
		return false
	}
	d := &DoubleSpend{Serial: v.Serial[:], PublicKey: pk[:], Account: i.store.accountOf(pk[:]), Gateways: [2]string{first.Gateway, gateway}, Detected: now.UTC()}
	added, err := i.store.recordDoubleSpend(d)
	if err != nil {
		i.log.Error("recording a double spend", "err", err)
		return false
	}
	if added {
		i.doubleSpends.Add(1)
		acct := "unknown (signed by another issuer)"
		if d.Account != nil {
			acct = base64.StdEncoding.EncodeToString(d.Account)
		}
		i.log.Warn("double spend detected", "serial", fmt.Sprintf("%x", v.Serial[:8]), "account", acct,
			"public_key", base64.StdEncoding.EncodeToString(pk[:]), "first_gateway", first.Gateway, "second_gateway", gateway)
	}
	return added
}

func (i *Issuer) handleDoubleSpends(w http.ResponseWriter, r *http.Request) {
	ds, err := i.store.doubleSpends()
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeInternal, "database error")
		return
	}
	if ds == nil {
		ds = []DoubleSpend{}
	}
	writeJSON(w, http.StatusOK, ds)
}

// Families returns the issuer's metrics.
func (i *Issuer) Families() []metrics.Family {
	accounts, spends, doubles := i.store.counts()
	return []metrics.Family{
		metrics.One("nym_issuer_tickets_signed_total", "Tickets blind-signed.", metrics.Counter, float64(i.signed.Load())),
		metrics.One("nym_issuer_sign_refused_total", "Sign requests refused.", metrics.Counter, float64(i.signRefused.Load())),
		metrics.One("nym_issuer_accounts", "Accounts in the ledger.", metrics.Gauge, float64(accounts)),
		metrics.One("nym_issuer_spent_reports_total", "Spent-ticket reports accepted from gateways.", metrics.Counter, float64(i.reports.Load())),
		metrics.One("nym_issuer_spends_recorded", "Spent tickets on record.", metrics.Gauge, float64(spends)),
		metrics.One("nym_issuer_spends_invalid_total", "Reported spends that did not verify.", metrics.Counter, float64(i.spendsInvalid.Load())),
		metrics.One("nym_issuer_double_spends", "Double spends detected and on record.", metrics.Gauge, float64(doubles)),
	}
}

func loadOrCreateToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("issuer: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("issuer: %s has mode %v; it must be readable by its owner only (chmod 600)", path, st.Mode().Perm())
		}
		tok := bytes.TrimSpace(b)
		if len(tok) < 16 {
			return nil, fmt.Errorf("issuer: %s: token too short", path)
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	tok := []byte(base64.RawURLEncoding.EncodeToString(raw))
	if err := os.WriteFile(path, append(tok, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("issuer: admin token: %w", err)
	}
	return tok, nil
}

// fingerprint names an account in logs without writing its whole key.
func fingerprint(acct []byte) string {
	if len(acct) < 6 {
		return "?"
	}
	return base64.RawURLEncoding.EncodeToString(acct[:6])
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	d := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, CodeMalformed, "cannot decode the request: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, &ErrorBody{Code: code, Message: msg})
}
