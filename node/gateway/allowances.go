package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nymvpn/nymvpn/registration"
	"go.etcd.io/bbolt"
)

// Paid allowances outlive a restart: what each client key has left, per
// role, is kept in the ticket database next to the spent serials.
//
// When it is written: at once when a ticket is credited (before the grant
// is answered, so a client that holds a grant has its allowance on disk),
// and every AllowanceFlushInterval from the meter loop for the traffic
// charged since (one transaction, one fsync, for all changed records), and
// when the gateway closes. A crash loses at most the last interval's usage,
// in the client's favour: the record then says it has more left than it
// had. Records idle for AllowanceRetention are pruned.
//
// How it is used: a registration of a key the gateway does not hold in
// memory (a restart, or an expired idle peer) starts from its stored
// allowance for the role; with allowance left it is admitted without a
// ticket, as a known key is, and with a ticket the ticket adds to it.

const (
	// AllowanceFlushInterval is how often changed allowances are written.
	AllowanceFlushInterval = 5 * time.Second
	// AllowanceRetention is how long an unchanged allowance is kept: a
	// week, the shortest a ticket lives, after which its buyer could not
	// have spent a new ticket on it anyway.
	AllowanceRetention = 7 * 24 * time.Hour
)

// bAllowances: client key (32) ‖ role → allowanceRecord.
var bAllowances = []byte("allowances")

// allowanceKey names one client key's allowance in one role.
type allowanceKey struct {
	key  [32]byte
	role string
}

func (k allowanceKey) bytes() []byte { return append(k.key[:], k.role...) }

// allowanceRecord is what a key has left in a role (below zero: owed by the
// next ticket) and the level at which the gateway asks for a top-up.
type allowanceRecord struct {
	Left, TopUpAt int64
	// Updated is when it was written (set by the store).
	Updated time.Time
}

const allowanceRecordVersion = 1

func (r allowanceRecord) marshal() []byte {
	b := []byte{allowanceRecordVersion}
	b = binary.BigEndian.AppendUint64(b, uint64(r.Left))
	b = binary.BigEndian.AppendUint64(b, uint64(r.TopUpAt))
	return binary.BigEndian.AppendUint64(b, uint64(r.Updated.Unix()))
}

func parseAllowanceRecord(b []byte) (allowanceRecord, error) {
	if len(b) != 25 || b[0] != allowanceRecordVersion {
		return allowanceRecord{}, errors.New("gateway: malformed allowance record")
	}
	return allowanceRecord{
		Left:    int64(binary.BigEndian.Uint64(b[1:])),
		TopUpAt: int64(binary.BigEndian.Uint64(b[9:])),
		Updated: time.Unix(int64(binary.BigEndian.Uint64(b[17:])), 0),
	}, nil
}

// allowanceStore keeps allowances in the ticket database.
type allowanceStore struct {
	db  *bbolt.DB
	now func() time.Time
	// flush serializes writes, so an older snapshot never overwrites a
	// newer one.
	flush sync.Mutex
}

func openAllowanceStore(db *bbolt.DB, now func() time.Time) (*allowanceStore, error) {
	err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bAllowances)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: allowance bucket: %w", err)
	}
	return &allowanceStore{db: db, now: now}, nil
}

// load returns the stored allowance of k.
func (s *allowanceStore) load(k allowanceKey) (allowanceRecord, bool, error) {
	var rec allowanceRecord
	found := false
	err := s.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bAllowances).Get(k.bytes())
		if v == nil {
			return nil
		}
		var err error
		rec, err = parseAllowanceRecord(v)
		found = err == nil
		return err
	})
	if err != nil {
		return allowanceRecord{}, false, fmt.Errorf("gateway: load allowance: %w", err)
	}
	return rec, found, nil
}

// store writes recs in one transaction, stamped with the store's clock.
func (s *allowanceStore) store(recs map[allowanceKey]allowanceRecord) error {
	if len(recs) == 0 {
		return nil
	}
	now := s.now()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bAllowances)
		for k, r := range recs {
			r.Updated = now
			if err := b.Put(k.bytes(), r.marshal()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gateway: store allowances: %w", err)
	}
	return nil
}

// prune deletes records not written for AllowanceRetention.
func (s *allowanceStore) prune() (int, error) {
	cutoff := s.now().Add(-AllowanceRetention)
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bAllowances).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			r, err := parseAllowanceRecord(v)
			if err == nil && !r.Updated.Before(cutoff) {
				continue
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// count is the number of stored allowances.
func (s *allowanceStore) count() int {
	n := 0
	s.db.View(func(tx *bbolt.Tx) error { n = tx.Bucket(bAllowances).Stats().KeyN; return nil })
	return n
}

// storedAllowance returns what key had left in role when the gateway last
// wrote it (or changed it since, not written yet), for a key it does not
// hold in memory; ok is false without a record.
func (g *Gateway) storedAllowance(key [32]byte, role string) (allowanceRecord, bool) {
	if g.allowances == nil {
		return allowanceRecord{}, false
	}
	k := allowanceKey{key: key, role: role}
	if role != registration.RoleMixnet {
		if r, ok := g.peers.pending(k); ok {
			return r, true
		}
	}
	r, ok, err := g.allowances.load(k)
	if err != nil {
		g.log.Warn("reading a stored allowance", "err", err)
		return allowanceRecord{}, false
	}
	return r, ok
}

// flushAllowances writes every allowance changed since the last write.
// Records that could not be written are kept for the next try.
func (g *Gateway) flushAllowances() error {
	s := g.allowances
	if s == nil {
		return nil
	}
	s.flush.Lock()
	defer s.flush.Unlock()
	recs := g.peers.takeDirty()
	var mix map[allowanceKey]allowanceRecord
	if g.mix != nil {
		mix = g.mix.takeDirty()
		for k, r := range mix {
			recs[k] = r
		}
	}
	if err := s.store(recs); err != nil {
		for k := range mix {
			delete(recs, k)
		}
		g.peers.requeue(recs)
		if g.mix != nil {
			g.mix.requeue(mix)
		}
		return err
	}
	return nil
}
