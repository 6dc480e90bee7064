// Package issuer is the credential issuer of nym-node (--role issuer): it holds one
// share of the threshold signing key (made by a trusted dealer, see Keygen),
// blind-signs ticketbook requests over HTTP for accounts with allowance left
// (idempotent per request id), publishes its verification key signed with its
// identity key, and takes the spent tickets gateways report, so that it detects a
// ticket spent twice — at one gateway or at two — and identifies the spender's
// account.
//
// The package also holds the clients' side of that API: Discover finds the
// issuers in the directory, checks their keys and aggregates the group's
// verification key; Sign asks one issuer for its partial signatures; Report
// sends spent tickets.
//
// HTTP API (JSON; binary fields in standard base64):
//
//	GET  /v1/key              KeyInfo: index, threshold, key share, group key, signed
//	POST /v1/sign             SignRequest → SignResponse (the partial ticketbook)
//	GET  /v1/accounts/{key}   Account: allowance left and tickets issued
//	POST /v1/admin/accounts   AllowanceRequest, with "Authorization: Bearer <admin token>"
//	POST /v1/spent            SpentReport (signed by a gateway of the directory) → SpentResponse
//	GET  /v1/double-spends    []DoubleSpend
//	GET  /metrics             Prometheus text
//
// Errors are JSON {"code": …, "message": …} with a stable code.
package issuer

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// Limits of the API.
const (
	// MaxTicketsPerRequest bounds one ticketbook request.
	MaxTicketsPerRequest = 100
	// MaxSpendsPerReport bounds one spent-ticket report.
	MaxSpendsPerReport = 256
	// MaxClockSkew bounds the timestamp of a signed request or report.
	MaxClockSkew = 5 * time.Minute
	maxBody      = 1 << 20
)

// Error codes of the API.
const (
	CodeMalformed     = "malformed"
	CodeBadSignature  = "bad_signature"
	CodeStale         = "stale"
	CodeUnknownAcct   = "unknown_account"
	CodeNoAllowance   = "no_allowance"
	CodeBadRequest    = "bad_request_proof"
	CodeWrongExpiry   = "wrong_expiry"
	CodeConflict      = "request_id_conflict"
	CodeUnauthorized  = "unauthorized"
	CodeUnknownSender = "unknown_gateway"
	CodeNotFound      = "not_found"
	CodeInternal      = "internal"
)

// KeyInfo is what GET /v1/key answers: this issuer's share of the verification
// key, the group's key and threshold, signed with the issuer's identity key
// (the one the directory lists), so a client that trusts the directory can
// trust the key it fetched from the issuer.
type KeyInfo struct {
	Index     uint32 `json:"index"`
	Threshold int    `json:"threshold"`
	Issuers   int    `json:"issuers"`
	// Key is the encoded credential.IssuerVerificationKey.
	Key []byte `json:"key"`
	// GroupKey is the encoded credential.VerificationKey of the whole group.
	GroupKey  []byte `json:"group_key"`
	Signature []byte `json:"signature"`
}

// message is what the identity key signs.
func (k *KeyInfo) message() []byte {
	m := []byte("nymvpn issuer key v1\x00")
	m = binary.BigEndian.AppendUint32(m, k.Index)
	m = binary.BigEndian.AppendUint32(m, uint32(k.Threshold))
	m = binary.BigEndian.AppendUint32(m, uint32(k.Issuers))
	m = appendField(m, k.Key)
	return appendField(m, k.GroupKey)
}

// Sign signs k with the issuer's identity key.
func (k *KeyInfo) Sign(identity ed25519.PrivateKey) {
	k.Signature = ed25519.Sign(identity, k.message())
}

// Verify checks k's signature against the identity key the directory lists.
func (k *KeyInfo) Verify(identity ed25519.PublicKey) bool {
	return len(identity) == ed25519.PublicKeySize && ed25519.Verify(identity, k.message(), k.Signature)
}

// RequestID makes a repeated request idempotent: the issuer answers a request id
// it has seen, with the same body, from its records and charges nothing again.
type RequestID [16]byte

// SignRequest is POST /v1/sign: an account asks for partial signatures on a
// ticketbook request. Signature is the account key's ed25519 signature over
// SignMessage(issuer index, request id, timestamp, request).
type SignRequest struct {
	RequestID RequestID         `json:"request_id"`
	Account   ed25519.PublicKey `json:"account"`
	Timestamp int64             `json:"timestamp"`
	// Request is the encoded credential.TicketbookRequest.
	Request   []byte `json:"request"`
	Signature []byte `json:"signature"`
}

// MarshalText encodes a request id in hex.
func (id RequestID) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(id[:])), nil }

// UnmarshalText decodes a request id of 32 hex digits.
func (id *RequestID) UnmarshalText(b []byte) error {
	var out RequestID
	if len(b) != 2*len(out) {
		return fmt.Errorf("request id: %d hex digits, want %d", len(b), 2*len(out))
	}
	if _, err := hex.Decode(out[:], b); err != nil {
		return fmt.Errorf("request id: %w", err)
	}
	*id = out
	return nil
}

// SignMessage is what the account key signs: it binds the request to one issuer,
// one request id and one time.
func SignMessage(issuerIndex uint32, id RequestID, timestamp int64, request []byte) []byte {
	h := sha256.Sum256(request)
	m := []byte("nymvpn issuer sign v1\x00")
	m = binary.BigEndian.AppendUint32(m, issuerIndex)
	m = append(m, id[:]...)
	m = binary.BigEndian.AppendUint64(m, uint64(timestamp))
	return append(m, h[:]...)
}

// SignResponse carries the encoded credential.PartialTicketbook and the
// allowance the account has left at this issuer.
type SignResponse struct {
	Partial   []byte `json:"partial"`
	Allowance int64  `json:"allowance"`
}

// Account is an account's standing at one issuer.
type Account struct {
	// Allowance is the number of tickets the issuer will still sign.
	Allowance int64 `json:"allowance"`
	// Issued counts tickets signed so far.
	Issued  int64     `json:"issued"`
	Created time.Time `json:"created"`
}

// AllowanceRequest is POST /v1/admin/accounts: give an account more tickets
// (creating it if needed).
type AllowanceRequest struct {
	Account ed25519.PublicKey `json:"account"`
	Tickets int64             `json:"tickets"`
}

// SpentReport is POST /v1/spent: spent tickets a gateway accepted (or refused as
// seen before), signed by the gateway's identity key over ReportMessage.
type SpentReport struct {
	Gateway   string   `json:"gateway"`
	Timestamp int64    `json:"timestamp"`
	Spends    [][]byte `json:"spends"`
	Signature []byte   `json:"signature"`
}

// ReportMessage is what a gateway signs.
func ReportMessage(gateway string, timestamp int64, spends [][]byte) []byte {
	h := sha256.New()
	for _, s := range spends {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		h.Write(s)
	}
	m := []byte("nymvpn spent report v1\x00")
	m = appendField(m, []byte(gateway))
	m = binary.BigEndian.AppendUint64(m, uint64(timestamp))
	return h.Sum(m)
}

// SpentResponse says what became of a report.
type SpentResponse struct {
	// Accepted counts spends recorded now; Duplicates spends already recorded
	// (a retried report); Invalid spends that do not verify; DoubleSpends
	// double spends found now.
	Accepted, Duplicates, Invalid, DoubleSpends int
}

// DoubleSpend is one ticket seen spent twice with different payment info, and
// whom it points to.
type DoubleSpend struct {
	// Serial is the ticket's serial number.
	Serial []byte `json:"serial"`
	// PublicKey is the spender's credential public key, recovered from the two
	// double-spending tags; Account the account that bought tickets with it,
	// if this issuer signed for it.
	PublicKey []byte            `json:"public_key"`
	Account   ed25519.PublicKey `json:"account,omitempty"`
	// Gateways are the ids of the gateways that reported the two spends.
	Gateways [2]string `json:"gateways"`
	Detected time.Time `json:"detected"`
}

// ErrorBody is the JSON of an error answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func appendField(m, f []byte) []byte {
	m = binary.BigEndian.AppendUint32(m, uint32(len(f)))
	return append(m, f...)
}
