package atlassim

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
)

// Fault makes matching requests misbehave before anything else happens
// (before authentication, so digest challenges and token fetches can be hit
// too). Faults are checked in the order injected; the first active match
// applies and uses up one of its Times.
type Fault struct {
	// Match is a substring of the request path; "" matches every request.
	Match string
	// Status, when non-zero, answers with this status and, unless Body is
	// set, Atlas's error body for it (429 RATE_LIMITED, 500
	// UNEXPECTED_ERROR, 503 SERVICE_UNAVAILABLE, …).
	Status int
	// RetryAfter, when > 0, is sent as Retry-After (whole seconds, rounded
	// up). A 429 without it gets Retry-After: 1.
	RetryAfter time.Duration
	// Body, when set, is sent verbatim (Status defaults to 200) with
	// ContentType (default application/json): malformed answers.
	Body        string
	ContentType string
	// Times is how many requests the fault hits; 0 means until ClearFaults.
	Times int
	// Latency delays the request (then the fault's answer, or the normal
	// one when Status, Body and Drop are unset).
	Latency time.Duration
	// Drop closes the connection without answering.
	Drop bool
}

// Inject adds a fault.
func (s *Sim) Inject(f Fault) { s.locked(func() { s.faults = append(s.faults, &f) }) }

// ClearFaults removes every fault.
func (s *Sim) ClearFaults() { s.locked(func() { s.faults = nil }) }

// applyFault applies the first matching fault, if any, using it up; true
// when it answered (or dropped the connection).
func (s *Sim) applyFault(w *statusWriter, r *http.Request) bool {
	var f *Fault
	s.locked(func() {
		for i, c := range s.faults {
			if strings.Contains(r.URL.Path, c.Match) {
				cp := *c
				f = &cp
				if c.Times--; c.Times == 0 {
					s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
				}
				return
			}
		}
	})
	if f == nil {
		return false
	}
	if f.Latency > 0 && backoff.Sleep(r.Context(), f.Latency) != nil {
		return true
	}
	switch {
	case f.Drop:
		w.status = 0
		panic(http.ErrAbortHandler) // net/http closes the connection without answering
	case f.Body != "":
		setRetryAfter(w, f.RetryAfter)
		w.Header().Set("Content-Type", cmp.Or(f.ContentType, "application/json"))
		w.WriteHeader(cmp.Or(f.Status, http.StatusOK))
		_, _ = w.Write([]byte(f.Body))
	case f.Status == http.StatusTooManyRequests:
		setRetryAfter(w, cmp.Or(f.RetryAfter, time.Second))
		writeError(w, f.Status, "RATE_LIMITED", "You have exceeded the rate limit. Please try again later.")
	case f.Status != 0:
		setRetryAfter(w, f.RetryAfter)
		code, detail := strings.ToUpper(strings.ReplaceAll(http.StatusText(f.Status), " ", "_")), http.StatusText(f.Status)+"."
		switch f.Status {
		case http.StatusInternalServerError:
			code, detail = "UNEXPECTED_ERROR", "Unexpected error."
		case http.StatusServiceUnavailable:
			detail = "Service is temporarily unavailable. Please try again later."
		}
		writeError(w, f.Status, code, detail)
	default:
		return false
	}
	return true
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
	}
}

// bucket is a token-bucket rate limiter on the simulator's clock.
type bucket struct {
	rate, burst, tokens float64 // tokens per second, at most, now
	last                time.Time
}

// SetRateLimit limits API calls (not the token endpoint) to perSecond with
// bursts of burst, answering 429 RATE_LIMITED_TOKEN_BUCKET with Retry-After
// when exceeded; perSecond <= 0 removes the limit. The limit applies before
// authentication, so digest challenges use it up too.
func (s *Sim) SetRateLimit(perSecond float64, burst int) {
	s.locked(func() {
		s.bucket = nil
		if perSecond > 0 {
			b := float64(max(burst, 1))
			s.bucket = &bucket{rate: perSecond, burst: b, tokens: b, last: s.now()}
		}
	})
}

// rateLimited answers 429 and returns true when the bucket is empty.
func (s *Sim) rateLimited(w http.ResponseWriter) bool {
	s.mu.Lock()
	b := s.bucket
	if b == nil {
		s.mu.Unlock()
		return false
	}
	now := s.now()
	b.tokens = math.Min(b.burst, b.tokens+max(now.Sub(b.last).Seconds(), 0)*b.rate)
	b.last = now
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	}
	remaining, wait, rate := int(b.tokens), time.Duration((1-b.tokens)/b.rate*float64(time.Second)), b.rate
	s.mu.Unlock()
	w.Header().Set("RateLimit-Limit", strconv.Itoa(int(b.burst)))
	if ok {
		w.Header().Set("RateLimit-Remaining", strconv.Itoa(remaining))
		return false
	}
	w.Header().Set("RateLimit-Remaining", "0")
	setRetryAfter(w, max(wait, time.Second))
	writeError(w, http.StatusTooManyRequests, "RATE_LIMITED_TOKEN_BUCKET",
		fmt.Sprintf("You have exceeded the rate limit of %g requests per second. Please try again later.", rate))
	return true
}
