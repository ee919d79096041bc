package backoff_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
)

func TestSleepEndsWithItsContext(t *testing.T) {
	if err := backoff.Sleep(t.Context(), time.Millisecond); err != nil {
		t.Fatalf("short sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := backoff.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled sleep = %v", err)
	}
}

func TestJitterStaysWithinHalfAndWhole(t *testing.T) {
	for _, d := range []time.Duration{1, time.Millisecond, 3 * time.Second} {
		for range 200 {
			if j := backoff.Jitter(d); j < d/2 || j > d {
				t.Fatalf("Jitter(%v) = %v, outside [%v, %v]", d, j, d/2, d)
			}
		}
	}
	if backoff.Jitter(0) != 0 || backoff.Jitter(-time.Second) != 0 {
		t.Fatal("non-positive delays must give 0")
	}
}

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
