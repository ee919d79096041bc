// Package backoff holds the waiting the clients share between attempts: a
// sleep that ends with its context, the equal-jitter spread of a delay, and
// the one reading of a server's Retry-After.
package backoff

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
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

// maxRetryAfter caps what a server may ask us to wait.
const maxRetryAfter = 24 * time.Hour

// RetryAfter reads an HTTP Retry-After value, delay-seconds or an HTTP date
// (compared with now). It returns zero when the value is absent, malformed or
// in the past, and at most 24h.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(min(max(secs, 0), int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}
