package backoff_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
)

// Sleep and Jitter are proven through the clients' retry tests (waits within
// [d/2, d], retries that end with their deadline).

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":             0,
		"7":            7 * time.Second,
		" 7 ":          7 * time.Second,
		"0":            0,
		"-3":           0,
		"1.5":          0,
		"soon":         0,
		"999999999999": 24 * time.Hour,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
		now.Add(72 * time.Hour).Format(http.TimeFormat):   24 * time.Hour,
	} {
		if got := backoff.RetryAfter(in, now); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
