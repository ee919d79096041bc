package atlas

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxErrorBody bounds how much of a non-2xx response body is read.
const maxErrorBody = 64 << 10

// maxDetail bounds the length of Detail kept from an error body, so one
// misbehaving server can't flood logs.
const maxDetail = 512

// Error is a non-2xx answer of the Atlas Admin API (or of its token endpoint),
// or a 2xx answer whose body can't be used. Inspect it with errors.As; use
// IsTransient to decide whether to retry later.
type Error struct {
	// Op names the client call, e.g. "EncryptionAtRest" or
	// "Clusters token" for the token fetch made on behalf of Clusters.
	Op string
	// StatusCode is the HTTP status (200 for an unusable 2xx body, 0 for an
	// argument rejected before any request).
	StatusCode int
	// ErrorCode is Atlas's errorCode (e.g. GROUP_NOT_FOUND, RATE_LIMITED) or,
	// for the token endpoint, the OAuth error (e.g. invalid_client). Empty when
	// the body carried none.
	ErrorCode string
	// Detail is Atlas's human-readable detail, truncated and stripped of
	// control characters; for a body that isn't Atlas JSON it describes the
	// body (content type and size), never its raw content.
	Detail string
	// Reason is Atlas's reason (e.g. "Not Found"), or the status text.
	Reason string
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("atlas: ")
	b.WriteString(e.Op)
	b.WriteString(":")
	if e.StatusCode != 0 {
		b.WriteString(" ")
		b.WriteString(strconv.Itoa(e.StatusCode))
	}
	if e.Reason != "" {
		b.WriteString(" ")
		b.WriteString(e.Reason)
	}
	if e.ErrorCode != "" {
		b.WriteString(" ")
		b.WriteString(e.ErrorCode)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Transient reports whether the failure may go away by itself: 429 and 5xx.
func (e *Error) Transient() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// apiError is the Atlas error body: {error, errorCode, detail, reason, parameters}.
type apiError struct {
	Error      int    `json:"error"`
	ErrorCode  string `json:"errorCode"`
	Detail     string `json:"detail"`
	Reason     string `json:"reason"`
	Parameters []any  `json:"parameters"`
}

// checkResponse returns nil for a 2xx response. Otherwise it reads at most
// maxErrorBody bytes of the body and returns an *Error naming op. It does not
// close the body.
func checkResponse(op string, resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	// A read error leaves a partial body; the status alone still says enough.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return errorFromBody(op, resp.StatusCode, resp.Header, body)
}

// errorFromBody builds the *Error of a non-2xx answer from its status,
// headers and (bounded) body.
func errorFromBody(op string, status int, h http.Header, body []byte) *Error {
	e := &Error{Op: op, StatusCode: status, RetryAfter: parseRetryAfter(h.Get("Retry-After"), time.Now())}
	var ae apiError
	if err := json.Unmarshal(body, &ae); err == nil && (ae.ErrorCode != "" || ae.Detail != "" || ae.Reason != "") {
		e.ErrorCode = clean(ae.ErrorCode, 64)
		e.Detail = clean(ae.Detail, maxDetail)
		e.Reason = clean(ae.Reason, 64)
	} else {
		ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
		if ct == "" {
			ct = "no content type"
		}
		switch {
		case len(body) == 0:
			e.Detail = "empty body"
		case err != nil:
			e.Detail = fmt.Sprintf("body is not an Atlas error (%s, %d bytes)", clean(ct, 64), len(body))
		default:
			e.Detail = fmt.Sprintf("body has no Atlas error fields (%s, %d bytes)", clean(ct, 64), len(body))
		}
	}
	if e.Reason == "" {
		e.Reason = http.StatusText(status)
	}
	return e
}

// clean keeps at most n bytes of s (on a rune boundary) and replaces control
// characters, so error text stays on one line.
func clean(s string, n int) string {
	if len(s) > n {
		cut := n
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date; zero
// when absent, malformed or in the past; at most 24h.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	const maxRetryAfter = 24 * time.Hour
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return min(time.Duration(min(secs, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// IsTransient reports whether err is worth retrying later: Atlas answered
// 429 or 5xx, the call timed out or its context ended, or the connection
// failed (refused, reset, dropped). Everything else is permanent: 401, 403,
// 404, 406 and other 4xx, unusable 2xx bodies, TLS certificate failures,
// invalid arguments. A nil error is not transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if ae, ok := errors.AsType[*Error](err); ok {
		return ae.Transient()
	}
	var (
		unknownCA   x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidCert x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
		recordErr   tls.RecordHeaderError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &invalidCert) ||
		errors.As(err, &verifyErr) || errors.As(err, &recordErr) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
