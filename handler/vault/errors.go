package vault

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// ErrConnectionNotFound is returned (wrapped) by Approve when the vault has no
// connection of that name (ARM answered 404, or 204 with no body).
var ErrConnectionNotFound = errors.New("private endpoint connection not found")

// ForbiddenError is ARM's 403: the guard's identity lacks a role action. It is
// permanent: retrying cannot help until someone changes the role assignment.
type ForbiddenError struct {
	// Op is the operation that was refused, e.g. "approve pe-conn-1".
	Op string
	// Action is the role action that is missing, as ARM named it in its
	// message, or else the action the operation needs.
	Action string
	// Code and Message are ARM's error code (AuthorizationFailed,
	// LinkedAuthorizationFailed, …) and message (bounded in length).
	Code, Message string

	err error
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("%s: forbidden: the guard's identity lacks the role action %s on the vault (ARM %s: %s)",
		e.Op, e.Action, e.Code, e.Message)
}

// Unwrap returns the underlying *azcore.ResponseError.
func (e *ForbiddenError) Unwrap() error { return e.err }

// NotPendingError is Approve's refusal to touch a connection that is neither
// Pending nor already Approved (Rejected, Disconnected, …). The guard only
// ever approves pending connections.
type NotPendingError struct {
	Name   string
	Status string
}

func (e *NotPendingError) Error() string {
	return fmt.Sprintf("approve %s: connection is %s, not %s: refusing to approve", e.Name, e.Status, StatusPending)
}

var (
	// AuthorizationFailed: "The client '…' with object id '…' does not have
	// authorization to perform action '…' over scope '…' …"
	reAuthzAction = regexp.MustCompile(`does not have authorization to perform action '([^']+)'`)
	// LinkedAuthorizationFailed: "… has permission to perform action 'A' on
	// scope 'S'; however, it does not have permission to perform action(s) 'B'
	// on the linked scope(s) …"
	reLinkedAction = regexp.MustCompile(`does not have permission to perform action(?:\(s\))? '([^']+)'`)
)

// fail turns an SDK error into the package's error for operation op, which
// needs the role action action: 403 becomes *ForbiddenError, a token failure a
// one-line *tokenError, anything else is wrapped with op. It marks the errors
// a retry may fix (see retryable).
func fail(op, action string, err error) error {
	var re *azcore.ResponseError
	var af *azidentity.AuthenticationFailedError
	switch {
	case errors.As(err, &re) && re.StatusCode == http.StatusForbidden:
		code, msg := armError(re)
		if m := reLinkedAction.FindStringSubmatch(msg); m != nil {
			action = m[1]
		} else if m := reAuthzAction.FindStringSubmatch(msg); m != nil {
			action = m[1]
		}
		return &ForbiddenError{Op: op, Action: action, Code: code, Message: msg, err: err}
	case errors.As(err, &af):
		err = &tokenError{op: op, err: err, af: af}
	default:
		err = fmt.Errorf("%s: %w", op, err)
	}
	if retryable(err) {
		return transient.Mark(err)
	}
	return err
}

// retryable reports whether a later attempt may succeed: ARM throttling (429),
// server errors (5xx), request timeouts (408), a concurrent operation (409),
// network errors, timeouts and cancelled contexts, and a managed identity
// endpoint that answered 429/5xx or could not be reached.
func retryable(err error) bool {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return retryStatus(re.StatusCode)
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) {
		return af.RawResponse == nil || retryStatus(af.RawResponse.StatusCode)
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne)
}

func retryStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code == http.StatusConflict || code >= 500
}

// statusOf returns the HTTP status of an ARM error, 0 when there is none.
func statusOf(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// tokenError shortens azidentity's multi-line AuthenticationFailedError to one
// line for logs and alerts; errors.As still finds the original.
type tokenError struct {
	op  string
	err error
	af  *azidentity.AuthenticationFailedError
}

func (e *tokenError) Unwrap() error { return e.err }

func (e *tokenError) Error() string {
	if e.af.RawResponse == nil {
		return e.op + ": cannot get an ARM token: " + strings.Join(strings.Fields(e.af.Error()), " ")
	}
	var b struct {
		Message          string `json:"message"`
		ErrorDescription string `json:"error_description"`
	}
	if body, err := runtime.Payload(e.af.RawResponse); err == nil {
		_ = json.Unmarshal(body, &b)
	}
	return fmt.Sprintf("%s: cannot get an ARM token: the managed identity endpoint answered %d %s",
		e.op, e.af.RawResponse.StatusCode, cut(strings.TrimSpace(cmp.Or(b.Message, b.ErrorDescription)), 512))
}

// armError reads the code and message of ARM's error body
// {"error":{"code","message"}}; the message is cut at 1 KiB.
func armError(re *azcore.ResponseError) (code, message string) {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if re.RawResponse != nil {
		if body, err := runtime.Payload(re.RawResponse); err == nil {
			_ = json.Unmarshal(body, &e)
		}
	}
	return cmp.Or(e.Error.Code, re.ErrorCode), cut(e.Error.Message, 1024)
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
