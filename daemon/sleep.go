package daemon

import (
	"context"
	"time"
)

// sleepCheckInterval is how often the sleep detector looks at the clocks.
const sleepCheckInterval = 5 * time.Second

// minSleep is the smallest wall-clock jump taken for a sleep: smaller ones
// are NTP steps and scheduling noise.
const minSleep = 10 * time.Second

// sleptFor reports how long the machine slept between two readings of
// time.Now, from how far each clock moved: Go's monotonic clock stops while
// the machine is suspended and the wall clock does not, so the wall clock
// gains the time asleep.
func sleptFor(wall, mono time.Duration) time.Duration {
	if gap := wall - mono; gap >= minSleep {
		return gap
	}
	return 0
}

// watchSleep calls onWake after the machine woke from a sleep, until ctx
// ends.
func watchSleep(ctx context.Context, onWake func(slept time.Duration)) {
	t := time.NewTicker(sleepCheckInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := time.Now()
			if d := sleptFor(now.Round(0).Sub(last.Round(0)), now.Sub(last)); d > 0 {
				onWake(d)
			}
			last = now
		}
	}
}
