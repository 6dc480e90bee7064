package issuer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/node/directory"
)

// ErrNoQuorum: fewer than the threshold of issuers answered with consistent keys.
var ErrNoQuorum = errors.New("issuer: not enough issuers with consistent keys")

// APIError is an error answer of an issuer.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("issuer answered HTTP %d (%s): %s", e.Status, e.Code, e.Message)
}

// Endpoint is one issuer as a client knows it: from the directory, with its
// checked key share.
type Endpoint struct {
	ID    string
	URL   string
	Index uint32
	Share *credential.IssuerVerificationKey
}

// Group is the issuer set a client or gateway works with: threshold, size, the
// aggregated verification key and the issuers whose shares agree with it.
type Group struct {
	Threshold, Size int
	Key             *credential.VerificationKey
	Issuers         []Endpoint // sorted by index
}

// DefaultHTTPTimeout bounds one call when no client is given.
const DefaultHTTPTimeout = 30 * time.Second

var defaultHTTP = &http.Client{Timeout: DefaultHTTPTimeout}

func httpClient(hc *http.Client) *http.Client {
	if hc == nil {
		return defaultHTTP
	}
	return hc
}

// FetchKey asks the issuer n (from the directory) for its key and checks the
// answer's signature against n's identity key.
func FetchKey(ctx context.Context, hc *http.Client, n directory.Node) (*KeyInfo, *credential.IssuerVerificationKey, error) {
	var ki KeyInfo
	if err := call(ctx, hc, http.MethodGet, n.IssuerURL+"/v1/key", nil, &ki); err != nil {
		return nil, nil, fmt.Errorf("issuer %s: %w", n.ID, err)
	}
	if !ki.Verify(n.IdentityKey) {
		return nil, nil, fmt.Errorf("issuer %s: key not signed by the identity key the directory lists", n.ID)
	}
	var share credential.IssuerVerificationKey
	if err := share.UnmarshalBinary(ki.Key); err != nil {
		return nil, nil, fmt.Errorf("issuer %s: key share: %w", n.ID, err)
	}
	if share.Index != ki.Index {
		return nil, nil, fmt.Errorf("issuer %s: key share of index %d announced as %d", n.ID, share.Index, ki.Index)
	}
	return &ki, &share, nil
}

// Discover finds the issuers in topo, fetches their keys in parallel and
// returns the group: the largest set of issuers that agree on threshold, size
// and group key, at least threshold of them, whose shares aggregate to that
// key. Issuers that are down or disagree are left out (logged by the caller
// through the returned error only when no quorum is left).
func Discover(ctx context.Context, hc *http.Client, topo *directory.Topology) (*Group, error) {
	nodes := topo.WithRole(directory.RoleIssuer)
	type answer struct {
		node  directory.Node
		info  *KeyInfo
		share *credential.IssuerVerificationKey
		err   error
	}
	answers := make([]answer, len(nodes))
	var wg sync.WaitGroup
	for k, n := range nodes {
		if n.IssuerURL == "" {
			answers[k] = answer{node: n, err: fmt.Errorf("issuer %s has no issuer_url", n.ID)}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			info, share, err := FetchKey(cctx, hc, n)
			answers[k] = answer{node: n, info: info, share: share, err: err}
		}()
	}
	wg.Wait()
	// Group the answers by what they claim about the group.
	type claim struct {
		t, n  int
		group string
	}
	sets := map[claim][]answer{}
	var errs []error
	for _, a := range answers {
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		c := claim{a.info.Threshold, a.info.Issuers, string(a.info.GroupKey)}
		sets[c] = append(sets[c], a)
	}
	var best *Group
	for c, as := range sets {
		if len(as) < c.t || c.t < 1 {
			continue
		}
		slices.SortFunc(as, func(x, y answer) int { return int(x.share.Index) - int(y.share.Index) })
		var gk credential.VerificationKey
		if err := gk.UnmarshalBinary([]byte(c.group)); err != nil {
			errs = append(errs, fmt.Errorf("issuer %s: group key: %w", as[0].node.ID, err))
			continue
		}
		g := &Group{Threshold: c.t, Size: c.n, Key: &gk}
		// Each share must lie on the polynomial of the group key: aggregate it
		// with t−1 others and compare.
		for k, a := range as {
			others := make([]*credential.IssuerVerificationKey, 0, c.t)
			others = append(others, a.share)
			for j := 0; len(others) < c.t && j < len(as); j++ {
				if j != k && as[j].share.Index != a.share.Index {
					others = append(others, as[j].share)
				}
			}
			if len(others) < c.t {
				continue
			}
			agg, err := credential.AggregateVerificationKeys(others)
			if err != nil || !agg.Equal(&gk) {
				errs = append(errs, fmt.Errorf("issuer %s: key share does not fit the group key", a.node.ID))
				continue
			}
			if slices.ContainsFunc(g.Issuers, func(e Endpoint) bool { return e.Index == a.share.Index }) {
				continue
			}
			g.Issuers = append(g.Issuers, Endpoint{ID: a.node.ID, URL: a.node.IssuerURL, Index: a.share.Index, Share: a.share})
		}
		if len(g.Issuers) >= c.t && (best == nil || len(g.Issuers) > len(best.Issuers)) {
			best = g
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w (%d issuers listed): %w", ErrNoQuorum, len(nodes), errors.Join(errs...))
	}
	return best, nil
}

// Sign sends one sign request to ep, signed by the account key.
func Sign(ctx context.Context, hc *http.Client, ep Endpoint, account ed25519.PrivateKey, id RequestID, request []byte, now time.Time) (*credential.PartialTicketbook, int64, error) {
	req := SignRequest{RequestID: id, Account: account.Public().(ed25519.PublicKey), Timestamp: now.Unix(), Request: request}
	req.Signature = ed25519.Sign(account, SignMessage(ep.Index, id, req.Timestamp, request))
	var resp SignResponse
	if err := call(ctx, hc, http.MethodPost, ep.URL+"/v1/sign", &req, &resp); err != nil {
		return nil, 0, fmt.Errorf("issuer %s: %w", ep.ID, err)
	}
	var part credential.PartialTicketbook
	if err := part.UnmarshalBinary(resp.Partial); err != nil {
		return nil, 0, fmt.Errorf("issuer %s: partial ticketbook: %w", ep.ID, err)
	}
	if part.Index != ep.Index {
		return nil, 0, fmt.Errorf("issuer %s: answered as issuer %d, its key is %d", ep.ID, part.Index, ep.Index)
	}
	return &part, resp.Allowance, nil
}

// Report sends spent tickets to the issuer at url, signed by the gateway's
// identity key.
func Report(ctx context.Context, hc *http.Client, url, gateway string, identity ed25519.PrivateKey, spends [][]byte, now time.Time) (*SpentResponse, error) {
	rep := SpentReport{Gateway: gateway, Timestamp: now.Unix(), Spends: spends}
	rep.Signature = ed25519.Sign(identity, ReportMessage(gateway, rep.Timestamp, spends))
	var resp SpentResponse
	if err := call(ctx, hc, http.MethodPost, url+"/v1/spent", &rep, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// GrantAllowance gives an account tickets at the issuer at url (admin API).
func GrantAllowance(ctx context.Context, hc *http.Client, url, token string, account ed25519.PublicKey, tickets int64) (*Account, error) {
	var a Account
	err := callAuth(ctx, hc, http.MethodPost, url+"/v1/admin/accounts", token, &AllowanceRequest{Account: account, Tickets: tickets}, &a)
	return &a, err
}

// DoubleSpendsAt lists the double spends the issuer at url detected.
func DoubleSpendsAt(ctx context.Context, hc *http.Client, url string) ([]DoubleSpend, error) {
	var ds []DoubleSpend
	err := call(ctx, hc, http.MethodGet, url+"/v1/double-spends", nil, &ds)
	return ds, err
}

func call(ctx context.Context, hc *http.Client, method, url string, in, out any) error {
	return callAuth(ctx, hc, method, url, "", in, out)
}

func callAuth(ctx context.Context, hc *http.Client, method, url, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	}
	resp, err := httpClient(hc).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorBody
		if json.Unmarshal(raw, &e) != nil || e.Code == "" {
			e = ErrorBody{Code: CodeInternal, Message: strings.TrimSpace(string(raw[:min(len(raw), 200)]))}
		}
		return &APIError{Status: resp.StatusCode, Code: e.Code, Message: e.Message}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	return nil
}
