package atlas

import (
	"cmp"
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
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

const (
	maxErrorBody = 64 << 10 // how much of a non-2xx body is read
	maxDetail    = 512      // how much of its detail is kept, so no server floods the logs
)

// Error is a non-2xx answer of the Atlas Admin API (or of its token endpoint),
// or a 2xx answer whose body can't be used. Inspect it with errors.As; 429 and
// 5xx answers come marked transient (handler/transient).
type Error struct {
	Op         string // the client call, e.g. "EncryptionAtRest", or "Clusters token" for its token fetch
	StatusCode int    // 200 for an unusable 2xx body, 0 for an argument rejected before any request
	// ErrorCode is Atlas's errorCode (GROUP_NOT_FOUND, RATE_LIMITED, …) or the
	// token endpoint's OAuth error (invalid_client); empty when the body had none.
	ErrorCode string
	// Detail is Atlas's detail, truncated and stripped of control characters;
	// for a body that isn't Atlas JSON it describes the body (content type and
	// size), never its content.
	Detail     string
	Reason     string        // Atlas's reason (e.g. "Not Found"), or the status text
	RetryAfter time.Duration // the server's Retry-After, zero when absent
}

func (e *Error) Error() string {
	s := "atlas: " + e.Op + ":"
	for _, part := range []string{strconv.Itoa(e.StatusCode), e.Reason, e.ErrorCode} {
		if part != "" && part != "0" {
			s += " " + part
		}
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

// classify marks err transient when a later attempt may succeed: Atlas
// answered 429 or 5xx, the call timed out or its context ended, or the
// connection failed (refused, reset, dropped, DNS). Everything else stays
// permanent: 401, 403, 404, 406 and other 4xx, unusable 2xx bodies, TLS
// certificate failures, invalid arguments.
func classify(err error) error {
	var (
		ae          *Error
		unknownCA   x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidCert x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
		recordErr   tls.RecordHeaderError
		netErr      net.Error
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae):
		if ae.StatusCode == http.StatusTooManyRequests || ae.StatusCode >= 500 {
			return transient.Mark(err)
		}
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidCert),
		errors.As(err, &verifyErr), errors.As(err, &recordErr):
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &netErr):
		return transient.Mark(err)
	}
	return err
}

// errorFromBody builds the *Error of a non-2xx answer from its status,
// headers and (bounded) body; now dates an HTTP-date Retry-After.
func errorFromBody(op string, status int, h http.Header, body []byte, now time.Time) *Error {
	e := &Error{Op: op, StatusCode: status, Reason: http.StatusText(status), RetryAfter: backoff.RetryAfter(h.Get("Retry-After"), now)}
	var ae struct{ ErrorCode, Detail, Reason any } // a field of another type is ignored, not fatal
	err := json.Unmarshal(body, &ae)
	str := func(v any, n int) string { s, _ := v.(string); return alert.ScrubN(s, n) }
	code, detail, reason := str(ae.ErrorCode, 64), str(ae.Detail, maxDetail), str(ae.Reason, 64)
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	ct = alert.ScrubN(cmp.Or(ct, "no content type"), 64)
	switch {
	case err == nil && (code != "" || detail != "" || reason != ""):
		e.ErrorCode, e.Detail, e.Reason = code, detail, cmp.Or(reason, e.Reason)
	case len(body) == 0:
		e.Detail = "empty body"
	case err != nil:
		e.Detail = fmt.Sprintf("body is not an Atlas error (%s, %d bytes)", ct, len(body))
	default:
		e.Detail = fmt.Sprintf("body has no Atlas error fields (%s, %d bytes)", ct, len(body))
	}
	return e
}
