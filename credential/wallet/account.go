// Package wallet is the client's side of zk-nym tickets, for the daemon and the
// proxy: an account made from (or restored with) a BIP39 recovery phrase,
// ticketbooks fetched from the issuers in parallel (any t of n suffice), stored
// 0600 in a 0700 directory with crash-safe writes and the spent mark written
// before a ticket leaves, refilled before they run out, and a Ticket function
// that matches modes/fast's Config.Ticket.
//
// Keys from the phrase: the BIP39 seed (PBKDF2, empty passphrase) goes through
// HKDF-SHA256 into an ed25519 account key, which signs the requests to the
// issuers (they keep the account's allowance under its public key), and into
// the credential user secret, whose public key the issuers see at issuance and
// two spends of one ticket would reveal. Neither leaves the machine; the phrase
// is kept in DIR/account (0600), as NymVPN keeps its own.
package wallet

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/nymvpn/nymvpn/credential"
	"github.com/tyler-smith/go-bip39"
)

// ErrNoAccount: the wallet has no account (create or import one).
var ErrNoAccount = errors.New("wallet: no account; create one or import a recovery phrase")

// ErrBadPhrase: the recovery phrase is not a valid BIP39 English phrase.
var ErrBadPhrase = errors.New("wallet: not a valid recovery phrase")

// ErrNotNow, wrapped by a Config.Dial error, says the issuers cannot be
// tried now (a kill switch holds them back): a fetch that fails only for
// it is not an answer from the issuers, so LastRefillError keeps the last
// real one (say, no allowance) rather than hiding it.
var ErrNotNow = errors.New("the issuers cannot be reached now")

// Account holds the keys derived from a recovery phrase.
type Account struct {
	phrase string
	key    ed25519.PrivateKey
	user   *credential.UserSecret
}

// NewPhrase makes a fresh 24-word recovery phrase (256 bits of entropy).
func NewPhrase() (string, error) {
	ent, err := bip39.NewEntropy(256)
	if err != nil {
		return "", fmt.Errorf("wallet: entropy: %w", err)
	}
	return bip39.NewMnemonic(ent)
}

// AccountFromPhrase checks a phrase (word list and checksum; case and spaces
// are normalised) and derives its keys.
func AccountFromPhrase(phrase string) (*Account, error) {
	phrase = strings.Join(strings.Fields(strings.ToLower(phrase)), " ")
	if _, err := bip39.EntropyFromMnemonic(phrase); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPhrase, err)
	}
	seed := bip39.NewSeed(phrase, "")
	ak, err := hkdf.Key(sha256.New, seed, nil, "nymvpn account key v1", ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("wallet: derive account key: %w", err)
	}
	cs, err := hkdf.Key(sha256.New, seed, nil, "nymvpn credential secret v1", 64)
	if err != nil {
		return nil, fmt.Errorf("wallet: derive credential secret: %w", err)
	}
	user, err := credential.UserSecretFromSeed(cs)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	return &Account{phrase: phrase, key: ed25519.NewKeyFromSeed(ak), user: user}, nil
}

// ID is the account's public key: what issuers keep the allowance under.
func (a *Account) ID() ed25519.PublicKey { return a.key.Public().(ed25519.PublicKey) }

// Phrase is the recovery phrase (secret).
func (a *Account) Phrase() string { return a.phrase }

// SigningKey is the account key (secret): it signs requests to issuers.
func (a *Account) SigningKey() ed25519.PrivateKey { return a.key }

// CredentialKey is the credential public key the issuers see at issuance.
func (a *Account) CredentialKey() credential.PublicKey { return a.user.PublicKey() }
