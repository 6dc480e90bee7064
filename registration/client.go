package registration

import (
	"bytes"
	"context"
	"crypto/mlkem"
	"encoding/json"
	"fmt"
	"net"

	"github.com/nymvpn/nymvpn/transport"
)

// Gateway is what the client knows of a gateway from the directory.
type Gateway struct {
	NoiseKey     transport.Key // static key of the registration endpoint
	WireGuardKey transport.Key // the gateway's WireGuard public key
}

// Params is what the client asks for.
type Params struct {
	Role         string
	WireGuardKey transport.Key // the client's WireGuard private key
	Ticket       []byte
}

// Result is a successful registration.
type Result struct {
	Grant
	// PresharedKey is the WireGuard preshared key both sides derived from
	// the ML-KEM exchange.
	PresharedKey [32]byte
}

// Register runs one registration over c, which it closes before returning.
func Register(ctx context.Context, c net.Conn, gw Gateway, p Params) (*Result, error) {
	defer c.Close()
	conn, err := transport.Client(ctx, c, transport.Config{Pattern: transport.NK, Prologue: Prologue, RemoteStatic: gw.NoiseKey})
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, fmt.Errorf("registration: ML-KEM key: %w", err)
	}
	key, err := proofKey(p.WireGuardKey, gw.WireGuardKey)
	if err != nil {
		return nil, err
	}
	pub := p.WireGuardKey.Public()
	req := Request{
		Version:      Version,
		Role:         p.Role,
		WireGuardKey: pub,
		KEMKey:       dk.EncapsulationKey().Bytes(),
		Proof:        proof(key, conn.HandshakeHash(), p.Role, pub),
		Ticket:       p.Ticket,
	}
	msg, err := json.Marshal(&req)
	if err != nil {
		return nil, fmt.Errorf("registration: encode request: %w", err)
	}
	if err := conn.WriteMessage(msg); err != nil {
		return nil, fmt.Errorf("registration: send request: %w", err)
	}
	reply, err := conn.ReadMessage(make([]byte, 0, 4096))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("registration: waiting for the gateway: %w", ctx.Err())
		}
		return nil, fmt.Errorf("registration: read response: %w", err)
	}
	resp, err := DecodeResponse(reply)
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	ss, err := dk.Decapsulate(resp.KEMCiphertext)
	if err != nil {
		return nil, fmt.Errorf("registration: ML-KEM decapsulation: %w", err)
	}
	psk, err := presharedKey(ss, conn.HandshakeHash())
	if err != nil {
		return nil, err
	}
	return &Result{Grant: *resp.Grant, PresharedKey: psk}, nil
}

// DecodeResponse parses and checks a gateway's response.
func DecodeResponse(b []byte) (*Response, error) {
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("%w: response of %d bytes", ErrMalformed, len(b))
	}
	var resp Response
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&resp); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == "" {
			return nil, fmt.Errorf("%w: error without code", ErrMalformed)
		}
		return &resp, nil
	}
	if resp.Grant == nil {
		return nil, fmt.Errorf("%w: neither grant nor error", ErrMalformed)
	}
	if err := resp.Grant.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(resp.KEMCiphertext) != mlkem.CiphertextSize768 {
		return nil, fmt.Errorf("%w: ML-KEM ciphertext is %d bytes, want %d", ErrMalformed, len(resp.KEMCiphertext), mlkem.CiphertextSize768)
	}
	return &resp, nil
}

// DecodeRequest parses and validates a client's request (not its proof).
func DecodeRequest(b []byte) (*Request, error) {
	if len(b) > MaxMessage {
		return nil, Errorf(CodeMalformed, "request of %d bytes exceeds %d", len(b), MaxMessage)
	}
	var req Request
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		return nil, Errorf(CodeMalformed, "cannot decode request: %v", err)
	}
	if d.More() {
		return nil, Errorf(CodeMalformed, "trailing data after request")
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return &req, nil
}
