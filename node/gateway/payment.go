package gateway

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/nymvpn/nymvpn/registration"
	"go.etcd.io/bbolt"
)

// Payment defaults.
const (
	// DefaultMaxSkew bounds a ticket's timestamp around the gateway's clock.
	DefaultMaxSkew = 30 * time.Second
	// DefaultMeterInterval is how often per-peer traffic is counted.
	DefaultMeterInterval = time.Second
	// TopUpFraction: a gateway asks for the next ticket when a peer's
	// allowance falls below this fraction of one ticket's bandwidth.
	TopUpFraction = 4
)

// PaymentConfig makes a gateway without FreePass take zk-nym tickets.
type PaymentConfig struct {
	// Key returns the issuers' aggregated verification key, or nil while it is
	// not known yet (registrations are then refused as payment_unavailable).
	Key func() *credential.VerificationKey
	// Database is the bbolt file of spent serials, recent payment info and
	// the spends not yet reported (created 0600).
	Database string
	// Bandwidth overrides the bytes one ticket buys, per type (small test
	// networks); missing types buy the type's bandwidth.
	Bandwidth map[credential.TicketType]int64
	// MaxSkew bounds the ticket's timestamp (default DefaultMaxSkew).
	MaxSkew time.Duration
	// MeterInterval is how often peers' traffic is counted (default
	// DefaultMeterInterval); a peer may overrun its allowance by one
	// interval's traffic before it is cut off.
	MeterInterval time.Duration
	// Reporting, if set, sends spent tickets to the issuers.
	Reporting *ReportConfig
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// ReportConfig says where a gateway reports spent tickets.
type ReportConfig struct {
	// Issuers returns the issuers' base URLs (from the directory).
	Issuers func() []string
	// Identity signs the reports; the issuers check it against the
	// directory's entry of this gateway.
	Identity ed25519.PrivateKey
	// Interval between report rounds (default 10 s); failed issuers are
	// retried with back-off up to 5 minutes.
	Interval time.Duration
}

// Buckets of the gateway's ticket database.
var (
	bSerials = []byte("serials")  // serial (48) → expiry week (2) ‖ pay info (56)
	bPayInfo = []byte("pay_info") // timestamp (8) ‖ nonce (16) → nothing
	bOutbox  = []byte("outbox")   // sequence (8) → spend, to report
	bAcked   = []byte("acked")    // issuer URL → last reported sequence (8)
)

// payments is a gateway's ticket side.
type payments struct {
	cfg      PaymentConfig
	db       *bbolt.DB
	noiseKey [32]byte
	log      *slog.Logger
	kick     chan struct{}
}

func openPayments(cfg PaymentConfig, noiseKey [32]byte, log *slog.Logger) (*payments, error) {
	if cfg.Key == nil || cfg.Database == "" {
		return nil, errors.New("gateway: payments need the issuers' key and a database path")
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.MeterInterval <= 0 {
		cfg.MeterInterval = DefaultMeterInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	db, err := bbolt.Open(cfg.Database, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("gateway: ticket database %s (is another gateway running on it?): %w", cfg.Database, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bSerials, bPayInfo, bOutbox, bAcked} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("gateway: ticket database: %w", err)
	}
	return &payments{cfg: cfg, db: db, noiseKey: noiseKey, log: log, kick: make(chan struct{}, 1)}, nil
}

func (p *payments) close() error { return p.db.Close() }

// bandwidth is what one ticket of typ buys here.
func (p *payments) bandwidth(typ credential.TicketType) int64 {
	if b, ok := p.cfg.Bandwidth[typ]; ok && b > 0 {
		return b
	}
	return int64(typ.Bandwidth())
}

// topUpAt is the allowance below which the gateway asks for the next ticket.
func (p *payments) topUpAt(typ credential.TicketType) int64 { return p.bandwidth(typ) / TopUpFraction }

// ticketType is the type a registration role pays with (and
// registration.RoleMixnetExit, the exit's IP packet router, which is not
// one).
func ticketType(role string) credential.TicketType {
	switch role {
	case registration.RoleEntry:
		return credential.FastEntry
	case registration.RoleExit:
		return credential.FastExit
	case registration.RoleMixnet:
		return credential.MixnetEntry
	case registration.RoleMixnetExit:
		return credential.MixnetExit
	}
	return 0
}

// redeem checks a ticket for role and records its serial: the bandwidth it
// buys, or a *registration.Error saying why it is refused. Checks run cheapest
// first: decoding, type, expiry, binding to this gateway, timestamp, then the
// proof and signature, then the serial and payment-info stores in one
// transaction. A valid spend of a serial seen before (a double spend) is
// refused and still queued for the issuers, which identify the spender.
func (p *payments) redeem(ticket []byte, role string) (int64, error) {
	want := ticketType(role)
	now := p.cfg.Now()
	vk := p.cfg.Key()
	if vk == nil {
		return 0, registration.Errorf(registration.CodePaymentUnavailable, "this gateway has not got the issuers' verification key yet; try again shortly")
	}
	sp, err := credential.ParseSpend(ticket)
	if err != nil {
		return 0, registration.Errorf(registration.CodeTicketInvalid, "malformed ticket: %v", err)
	}
	if sp.Type != want {
		return 0, registration.Errorf(registration.CodeTicketWrongType, "a %v ticket cannot pay for the %s role (want %v)", sp.Type, role, want)
	}
	if sp.Expiry.Expired(now) {
		return 0, registration.Errorf(registration.CodeTicketExpired, "ticket expired at %s", sp.Expiry.End().UTC().Format(time.RFC3339))
	}
	if sp.PayInfo.GatewayKey != p.noiseKey {
		return 0, registration.Errorf(registration.CodeTicketWrongGateway, "ticket is bound to gateway key %x…, this gateway is %x…", sp.PayInfo.GatewayKey[:4], p.noiseKey[:4])
	}
	if skew := now.Sub(time.Unix(sp.PayInfo.Timestamp, 0)); skew > p.cfg.MaxSkew || skew < -p.cfg.MaxSkew {
		return 0, registration.Errorf(registration.CodeTicketStale, "ticket timestamp is %v from the gateway's clock (allowed ±%v); check your clock", skew.Round(time.Second), p.cfg.MaxSkew)
	}
	v, err := credential.VerifyBound(vk, ticket, want, p.noiseKey, now, p.cfg.MaxSkew)
	if err != nil {
		return 0, registration.Errorf(registration.CodeTicketInvalid, "ticket does not verify under the issuers' key (forged, or issued by another issuer set)")
	}
	var refusal error
	err = p.db.Update(func(tx *bbolt.Tx) error {
		serials, pays := tx.Bucket(bSerials), tx.Bucket(bPayInfo)
		pi, _ := v.PayInfo.MarshalBinary()
		if prev := serials.Get(v.Serial[:]); prev != nil {
			refusal = registration.Errorf(registration.CodeTicketSpent, "this ticket was spent before")
			if len(prev) == 2+credential.PayInfoSize && string(prev[2:]) != string(pi) {
				// A double spend: the issuers can name the spender.
				return p.enqueueLocked(tx, ticket)
			}
			return nil
		}
		payKey := pi[32:] // timestamp ‖ nonce
		if pays.Get(payKey) != nil {
			refusal = registration.Errorf(registration.CodeTicketReplayed, "this payment info (timestamp and nonce) was used before")
			return nil
		}
		rec := binary.BigEndian.AppendUint16(nil, uint16(v.Expiry))
		if err := serials.Put(v.Serial[:], append(rec, pi...)); err != nil {
			return err
		}
		if err := pays.Put(payKey, nil); err != nil {
			return err
		}
		return p.enqueueLocked(tx, ticket)
	})
	if err != nil {
		return 0, fmt.Errorf("gateway: ticket database: %w", err)
	}
	if refusal != nil {
		p.notify()
		return 0, refusal
	}
	p.notify()
	return p.bandwidth(want), nil
}

func (p *payments) enqueueLocked(tx *bbolt.Tx, spend []byte) error {
	if p.cfg.Reporting == nil {
		return nil
	}
	b := tx.Bucket(bOutbox)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), spend)
}

func (p *payments) notify() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// prune forgets serials of expired tickets (they are refused as expired
// anyway) and payment info older than twice the allowed skew (refused as stale).
func (p *payments) prune() (int, error) {
	now := p.cfg.Now()
	week := credential.WeekOf(now)
	n := 0
	err := p.db.Update(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bSerials).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) >= 2 && credential.Week(binary.BigEndian.Uint16(v)).Expired(now) && credential.Week(binary.BigEndian.Uint16(v)) < week {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		c = tx.Bucket(bPayInfo).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) >= 8 && now.Sub(time.Unix(int64(binary.BigEndian.Uint64(k)), 0)) > 2*p.cfg.MaxSkew {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}

// spentCount is the number of serials on record.
func (p *payments) spentCount() int {
	n := 0
	p.db.View(func(tx *bbolt.Tx) error { n = tx.Bucket(bSerials).Stats().KeyN; return nil })
	return n
}
