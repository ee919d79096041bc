// Package backoff holds the waiting the clients share between attempts: a
// sleep that ends with its context, and the equal-jitter spread of a delay.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Sleep waits for d, or until ctx is done; it then returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Jitter spreads a delay d over [d/2, d] ("equal jitter": half fixed, half
// random), so that clients retrying together do not stay in step.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
