// Package notify delivers alert notices to sinks: the structured log, a
// webhook (generic JSON, Microsoft Teams or Slack) and an Event Grid topic
// (CloudEvents). Retry wraps a sink with bounded backoff; a failed Send says
// how many notices it delivered (PartialError), so the caller can keep the
// rest pending (by notice ID and sink name) and send them again later.
//
// No sink ever puts a secret in an error or a log line: webhook URLs
// (capabilities), topic keys and tokens stay out of messages.
package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// Sink delivers notices somewhere.
type Sink interface {
	// Name identifies the sink in results and pending state ("log", "webhook", "eventgrid"), stable across restarts.
	Name() string
	// Send delivers the notices in order; when some went through before a failure the error is (or wraps)
	// a *PartialError counting them. Send with no notices does nothing.
	Send(ctx context.Context, notices []alert.Notice) error
}

// SendError is a failed delivery attempt. Its message never contains the
// destination's secret parts (webhook URL, keys, tokens).
type SendError struct {
	Sink       string
	StatusCode int           // the HTTP status received; 0 without a response
	RetryAfter time.Duration // the server's Retry-After, if any
	msg        string
	err        error
}

func (e *SendError) Error() string { return e.Sink + ": " + e.msg }

// Unwrap returns the cause. Causes from HTTP clients may carry URLs: log
// Error(), not the unwrapped chain.
func (e *SendError) Unwrap() error { return e.err }

// failed returns e, marked transient when a resend may succeed (no answer, 408, 429, 5xx); other
// failures (4xx, invalid payloads, refused redirects) need a configuration change.
func failed(e *SendError) error {
	if c := e.StatusCode; c == 0 && e.err != nil || c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500 {
		return transient.Mark(e)
	}
	return e
}

// PartialError says that a Send delivered its first Delivered notices (a
// sink sends in order) before it failed.
type PartialError struct {
	Delivered int
	Err       error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%v (%d notices delivered before the failure)", e.Err, e.Delivered)
}

func (e *PartialError) Unwrap() error { return e.Err }

// Undelivered returns the notices that a Send which returned err did not
// deliver: none when err is nil, all of them unless err carries a
// *PartialError.
func Undelivered(err error, notices []alert.Notice) []alert.Notice {
	var pe *PartialError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return notices[min(pe.Delivered, len(notices)):]
	}
	return notices
}

// partial makes err say that the first n notices were delivered.
func partial(err error, n int) error {
	var pe *PartialError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if n == 0 {
		return err
	}
	return &PartialError{Delivered: n, Err: err}
}

// transportCause describes an HTTP client error without the request URL.
func transportCause(err error) string {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &oe):
		return oe.Error()
	case errors.As(err, new(*net.DNSError)):
		return "DNS lookup failed"
	}
	return "transport error"
}
