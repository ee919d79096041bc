package atlassim

import (
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

	hits int
}

// Inject adds a fault.
func (s *Sim) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.hits = 0
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every fault.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns a copy of the first matching active fault, using it up.
func (s *Sim) takeFault(path string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Match != "" && !strings.Contains(path, f.Match) {
			continue
		}
		f.hits++
		if f.Times > 0 && f.hits >= f.Times {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
		}
		return *f, true
	}
	return Fault{}, false
}

// applyFault applies the matching fault, if any; true when it answered.
func (s *Sim) applyFault(w *statusWriter, r *http.Request) bool {
	f, ok := s.takeFault(r.URL.Path)
	if !ok {
		return false
	}
	if f.Latency > 0 {
		if backoff.Sleep(r.Context(), f.Latency) != nil {
			return true
		}
	}
	switch {
	case f.Drop:
		s.drop(w)
		return true
	case f.Body != "":
		ct := f.ContentType
		if ct == "" {
			ct = "application/json"
		}
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		setRetryAfter(w, f.RetryAfter)
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(f.Body))
		return true
	case f.Status != 0:
		ra := f.RetryAfter
		if f.Status == http.StatusTooManyRequests && ra <= 0 {
			ra = defaultRetryAfter429
		}
		setRetryAfter(w, ra)
		code, detail := faultError(f.Status)
		writeError(w, f.Status, code, detail)
		return true
	}
	return false
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(d.Seconds())), 10))
	}
}

func faultError(status int) (code, detail string) {
	switch status {
	case http.StatusTooManyRequests:
		return "RATE_LIMITED", "You have exceeded the rate limit. Please try again later."
	case http.StatusInternalServerError:
		return "UNEXPECTED_ERROR", "Unexpected error."
	case http.StatusBadGateway:
		return "BAD_GATEWAY", "Bad gateway."
	case http.StatusServiceUnavailable:
		return "SERVICE_UNAVAILABLE", "Service is temporarily unavailable. Please try again later."
	case http.StatusGatewayTimeout:
		return "GATEWAY_TIMEOUT", "Gateway timeout."
	case http.StatusUnauthorized:
		return "USER_UNAUTHORIZED", "You are not authorized for this resource."
	case http.StatusForbidden:
		return "FORBIDDEN", "Forbidden."
	case http.StatusNotFound:
		return "RESOURCE_NOT_FOUND", "Cannot find resource."
	}
	return strings.ToUpper(strings.ReplaceAll(http.StatusText(status), " ", "_")), http.StatusText(status) + "."
}

// drop closes the connection without an answer.
func (s *Sim) drop(w *statusWriter) {
	w.status = 0
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2 or a test recorder: abort the handler instead.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// bucket is a token-bucket rate limiter on the simulator's clock.
type bucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

// SetRateLimit limits API calls (not the token endpoint) to perSecond with
// bursts of burst, answering 429 RATE_LIMITED_TOKEN_BUCKET with Retry-After
// when exceeded; perSecond <= 0 removes the limit. The limit applies before
// authentication, so digest challenges use it up too.
func (s *Sim) SetRateLimit(perSecond float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perSecond <= 0 {
		s.bucket = nil
		return
	}
	burst = max(burst, 1)
	s.bucket = &bucket{rate: perSecond, burst: float64(burst), tokens: float64(burst), last: s.now()}
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
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(b.burst, b.tokens+el*b.rate)
	}
	b.last = now
	limit := int(b.burst)
	if b.tokens >= 1 {
		b.tokens--
		remaining := int(b.tokens)
		s.mu.Unlock()
		w.Header().Set("RateLimit-Limit", strconv.Itoa(limit))
		w.Header().Set("RateLimit-Remaining", strconv.Itoa(remaining))
		return false
	}
	wait := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
	s.mu.Unlock()
	w.Header().Set("RateLimit-Limit", strconv.Itoa(limit))
	w.Header().Set("RateLimit-Remaining", "0")
	setRetryAfter(w, max(wait, time.Second))
	writeError(w, http.StatusTooManyRequests, "RATE_LIMITED_TOKEN_BUCKET",
		fmt.Sprintf("You have exceeded the rate limit of %g requests per second. Please try again later.", b.rate))
	return true
}
