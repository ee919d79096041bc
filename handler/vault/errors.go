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

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// ErrConnectionNotFound is returned (wrapped) by Approve when the vault has no
// connection of that name (ARM answered 404, or 204 with no body).
var ErrConnectionNotFound = errors.New("private endpoint connection not found")

// ForbiddenError is ARM's 403: the guard's identity lacks a role action. It is
// permanent: retrying cannot help until someone changes the role assignment.
// It unwraps to the *azcore.ResponseError.
type ForbiddenError struct {
	Op     string // the refused operation, e.g. "approve pe-conn-1"
	Action string // the missing role action as ARM named it, else the one Op needs
	// Code and Message are ARM's error code (AuthorizationFailed,
	// LinkedAuthorizationFailed, …) and message (bounded in length).
	Code, Message string

	err error
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("%s: forbidden: the guard's identity lacks the role action %s on the vault (ARM %s: %s)",
		e.Op, e.Action, e.Code, e.Message)
}

func (e *ForbiddenError) Unwrap() error { return e.err }

// NotPendingError is Approve's refusal to touch a connection that is neither
// Pending nor already Approved (Rejected, Disconnected, …).
type NotPendingError struct{ Name, Status string }

func (e *NotPendingError) Error() string {
	return fmt.Sprintf("approve %s: connection is %s, not %s: refusing to approve", e.Name, e.Status, StatusPending)
}

// reAction finds the missing action in ARM's AuthorizationFailed message ("…
// does not have authorization to perform action 'A' over scope …") and in
// LinkedAuthorizationFailed's ("… however, it does not have permission to
// perform action(s) 'B' on the linked scope(s) …").
var reAction = regexp.MustCompile(`does not have (?:authorization|permission) to perform action(?:\(s\))? '([^']+)'`)

// fail turns an SDK error into the package's error for operation op, which
// needs the role action action: 403 becomes *ForbiddenError, a token failure
// one line (errors.As still finds azidentity's error), anything else is
// wrapped with op. It marks transient what a later attempt may fix: ARM's
// 408, 409 (a concurrent operation), 429 and 5xx, network errors, timeouts
// and ended contexts, and a managed identity endpoint that answered 429/5xx
// or could not be reached.
func fail(op, action string, err error) error {
	var re *azcore.ResponseError
	var af *azidentity.AuthenticationFailedError
	var ne net.Error
	retry := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne)
	switch {
	case errors.As(err, &re) && re.StatusCode == http.StatusForbidden:
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if re.RawResponse != nil {
			if b, err := runtime.Payload(re.RawResponse); err == nil {
				_ = json.Unmarshal(b, &body)
			}
		}
		msg := alert.ScrubN(body.Error.Message, 1024)
		if m := reAction.FindStringSubmatch(msg); m != nil {
			action = m[1]
		}
		return &ForbiddenError{Op: op, Action: action, Code: cmp.Or(body.Error.Code, re.ErrorCode), Message: msg, err: err}
	case re != nil:
		retry = retryStatus(re.StatusCode)
		err = fmt.Errorf("%s: %w", op, err)
	case errors.As(err, &af):
		retry = af.RawResponse == nil || retryStatus(af.RawResponse.StatusCode)
		err = &tokenError{op: op, err: err, af: af}
	default:
		err = fmt.Errorf("%s: %w", op, err)
	}
	if retry {
		return transient.Mark(err)
	}
	return err
}

func retryStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code == http.StatusConflict || code >= 500
}

// statusOf returns the HTTP status of an ARM error, 0 when there is none.
func statusOf(err error) int {
	if re, ok := errors.AsType[*azcore.ResponseError](err); ok {
		return re.StatusCode
	}
	return 0
}

// tokenError shortens azidentity's multi-line AuthenticationFailedError to one
// line for logs and alerts.
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
		e.op, e.af.RawResponse.StatusCode, alert.ScrubN(strings.TrimSpace(cmp.Or(b.Message, b.ErrorDescription)), 512))
}
