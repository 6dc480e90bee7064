package issuer

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// Buckets of the issuer's database.
var (
	bAccounts     = []byte("accounts")      // account key (32) → Account JSON
	bRequests     = []byte("requests")      // request id (16) → requestRecord JSON
	bPublicKeys   = []byte("public_keys")   // credential public key (48) → account key (32)
	bSpends       = []byte("spends")        // serial (48) → spendRecord JSON
	bDoubleSpends = []byte("double_spends") // serial (48) → DoubleSpend JSON
)

var (
	errNoAccount   = errors.New("issuer: unknown account")
	errNoAllowance = errors.New("issuer: no allowance left")
	errConflict    = errors.New("issuer: request id reused with another request")
)

type requestRecord struct {
	Hash    [32]byte          `json:"hash"`
	Account ed25519.PublicKey `json:"account"`
	Partial []byte            `json:"partial"`
	Time    time.Time         `json:"time"`
}

type spendRecord struct {
	Spend   []byte    `json:"spend"`
	Gateway string    `json:"gateway"`
	Expiry  uint16    `json:"expiry"`
	Time    time.Time `json:"time"`
}

// store is the issuer's ledger and spent-ticket record in one bbolt file.
type store struct{ db *bbolt.DB }

func openStore(path string) (*store, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("issuer: open database %s (is another issuer running on it?): %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bAccounts, bRequests, bPublicKeys, bSpends, bDoubleSpends} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("issuer: database %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func getJSON(b *bbolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("issuer: corrupt record %x: %w", key, err)
	}
	return true, nil
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// addAllowance gives acct n more tickets, creating the account.
func (s *store) addAllowance(acct ed25519.PublicKey, n int64, now time.Time) (Account, error) {
	var a Account
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bAccounts)
		found, err := getJSON(b, acct, &a)
		if err != nil {
			return err
		}
		if !found {
			a = Account{Created: now.UTC()}
		}
		a.Allowance += n
		if a.Allowance < 0 {
			a.Allowance = 0
		}
		return putJSON(b, acct, &a)
	})
	return a, err
}

func (s *store) account(acct ed25519.PublicKey) (Account, bool, error) {
	var a Account
	var found bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		found, err = getJSON(tx.Bucket(bAccounts), acct, &a)
		return err
	})
	return a, found, err
}

// answered returns the stored answer to request id, if any: errConflict if the
// id was used for another request.
func (s *store) answered(id RequestID, hash [32]byte) ([]byte, bool, error) {
	var rec requestRecord
	var found bool
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		found, err = getJSON(tx.Bucket(bRequests), id[:], &rec)
		return err
	})
	if err != nil || !found {
		return nil, false, err
	}
	if rec.Hash != hash {
		return nil, true, errConflict
	}
	return rec.Partial, true, nil
}

// checkAllowance reports whether acct may buy count tickets now.
func (s *store) checkAllowance(acct ed25519.PublicKey, count int64) error {
	a, found, err := s.account(acct)
	switch {
	case err != nil:
		return err
	case !found:
		return errNoAccount
	case a.Allowance < count:
		return fmt.Errorf("%w: %d left, %d asked", errNoAllowance, a.Allowance, count)
	}
	return nil
}

// charge records the answer to request id and takes count tickets from acct's
// allowance, atomically. If the id was answered meanwhile (a concurrent retry),
// the stored answer wins and nothing is charged again.
func (s *store) charge(id RequestID, hash [32]byte, acct ed25519.PublicKey, pk []byte, count int64, partial []byte, now time.Time) ([]byte, int64, error) {
	out := partial
	var left int64
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var rec requestRecord
		reqs := tx.Bucket(bRequests)
		found, err := getJSON(reqs, id[:], &rec)
		if err != nil {
			return err
		}
		var a Account
		accts := tx.Bucket(bAccounts)
		aFound, err := getJSON(accts, acct, &a)
		if err != nil {
			return err
		}
		if found {
			if rec.Hash != hash {
				return errConflict
			}
			out, left = rec.Partial, a.Allowance
			return nil
		}
		if !aFound {
			return errNoAccount
		}
		if a.Allowance < count {
			return fmt.Errorf("%w: %d left, %d asked", errNoAllowance, a.Allowance, count)
		}
		a.Allowance -= count
		a.Issued += count
		left = a.Allowance
		if err := putJSON(accts, acct, &a); err != nil {
			return err
		}
		if err := tx.Bucket(bPublicKeys).Put(pk, acct); err != nil {
			return err
		}
		return putJSON(reqs, id[:], &requestRecord{Hash: hash, Account: acct, Partial: partial, Time: now.UTC()})
	})
	return out, left, err
}

// accountOf returns the account that bought tickets with credential key pk.
func (s *store) accountOf(pk []byte) ed25519.PublicKey {
	var out ed25519.PublicKey
	s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bPublicKeys).Get(pk); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out
}

// spendOutcome is what recordSpend found.
type spendOutcome int

const (
	spendNew spendOutcome = iota
	spendDuplicate
	spendConflict // same serial, another spend: a double spend
)

// recordSpend stores the first spend of each serial and returns the stored one
// when another spend of the same serial arrives.
func (s *store) recordSpend(serial []byte, spend []byte, gateway string, expiry uint16, now time.Time) (spendOutcome, *spendRecord, error) {
	outcome := spendNew
	var first spendRecord
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bSpends)
		found, err := getJSON(b, serial, &first)
		if err != nil {
			return err
		}
		if found {
			if bytes.Equal(first.Spend, spend) {
				outcome = spendDuplicate
			} else {
				outcome = spendConflict
			}
			return nil
		}
		return putJSON(b, serial, &spendRecord{Spend: spend, Gateway: gateway, Expiry: expiry, Time: now.UTC()})
	})
	return outcome, &first, err
}

// recordDoubleSpend keeps d (the first detection of a serial wins).
func (s *store) recordDoubleSpend(d *DoubleSpend) (bool, error) {
	added := false
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bDoubleSpends)
		if b.Get(d.Serial) != nil {
			return nil
		}
		added = true
		return putJSON(b, d.Serial, d)
	})
	return added, err
}

func (s *store) doubleSpends() ([]DoubleSpend, error) {
	var out []DoubleSpend
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bDoubleSpends).ForEach(func(k, v []byte) error {
			var d DoubleSpend
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("issuer: corrupt double-spend record %x: %w", k, err)
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// counts returns the number of accounts, recorded spends and double spends.
func (s *store) counts() (accounts, spends, doubles int) {
	s.db.View(func(tx *bbolt.Tx) error {
		accounts = tx.Bucket(bAccounts).Stats().KeyN
		spends = tx.Bucket(bSpends).Stats().KeyN
		doubles = tx.Bucket(bDoubleSpends).Stats().KeyN
		return nil
	})
	return
}

// prune drops answers to requests older than keepRequests and spends of tickets
// expired before the week lastExpired (they cannot be spent again anyway).
func (s *store) prune(now time.Time, keepRequests time.Duration, lastExpired uint16) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		reqs := tx.Bucket(bRequests)
		c := reqs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var rec requestRecord
			if json.Unmarshal(v, &rec) == nil && now.Sub(rec.Time) > keepRequests {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		sp := tx.Bucket(bSpends)
		c = sp.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var rec spendRecord
			if json.Unmarshal(v, &rec) == nil && rec.Expiry < lastExpired {
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
