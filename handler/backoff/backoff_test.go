package backoff_test

import (
	"context"
	"errors"
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
