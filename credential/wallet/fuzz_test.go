package wallet

import (
	"strings"
	"testing"
)

// FuzzAccountFromPhrase: any string either fails with ErrBadPhrase or yields an
// account whose normalised phrase derives the same keys.
func FuzzAccountFromPhrase(f *testing.F) {
	f.Add("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
	f.Add("zoo zoo zoo")
	f.Add("")
	f.Fuzz(func(t *testing.T, phrase string) {
		a, err := AccountFromPhrase(phrase)
		if err != nil {
			return
		}
		b, err := AccountFromPhrase(strings.ToUpper(a.Phrase()))
		if err != nil || !a.ID().Equal(b.ID()) || a.CredentialKey() != b.CredentialKey() {
			t.Fatalf("phrase %q does not derive stably: %v", phrase, err)
		}
	})
}
