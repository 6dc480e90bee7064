package daemon

import (
	"testing"
	"time"
)

func TestSleptFor(t *testing.T) {
	for _, c := range []struct {
		wall, mono, want time.Duration
	}{
		{5 * time.Second, 5 * time.Second, 0},                   // awake
		{time.Hour + 5*time.Second, 5 * time.Second, time.Hour}, // a one-hour suspend
		{8 * time.Second, 5 * time.Second, 0},                   // an NTP step is not a sleep
		{-time.Hour, 5 * time.Second, 0},                        // the clock set back
	} {
		if got := sleptFor(c.wall, c.mono); got != c.want {
			t.Errorf("sleptFor(wall %v, mono %v) = %v, want %v", c.wall, c.mono, got, c.want)
		}
	}
	// Real readings of an awake machine show no sleep.
	a := time.Now()
	b := time.Now()
	if d := sleptFor(b.Round(0).Sub(a.Round(0)), b.Sub(a)); d != 0 {
		t.Errorf("awake machine slept %v", d)
	}
}
