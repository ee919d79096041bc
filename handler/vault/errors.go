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
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// ErrConnectionNotFound is returned (wrapped) by Approve when the vault has no
// connection of that name.
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

// IsTransient reports whether err is worth retrying later: ARM throttling
// (429), server errors (5xx), request timeouts (408), concurrent modification
// (409/412 on an approval: the next attempt re-reads), network errors, timeouts
// and cancelled contexts, and a managed identity endpoint that answered 429/5xx
// or could not be reached. Forbidden, not found, bad requests, refused
// approvals and authentication rejections are permanent.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var fe *ForbiddenError
	var np *NotPendingError
	if errors.As(err, &fe) || errors.As(err, &np) {
		return false
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return transientStatus(re.StatusCode)
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) {
		if af.RawResponse != nil {
			return transientStatus(af.RawResponse.StatusCode)
		}
		// No response: the identity endpoint could not be reached.
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}

func transientStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests,
		code == http.StatusConflict, code == http.StatusPreconditionFailed:
		return true
	case code >= 500:
		return true
	}
	return false
}

// isNotFound reports whether err is ARM's 404.
func isNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
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
// needs the role action action: 403 becomes *ForbiddenError, anything else is
// wrapped with op.
func fail(op, action string, err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
		code, msg := armError(re)
		if m := reLinkedAction.FindStringSubmatch(msg); m != nil {
			action = m[1]
		} else if m := reAuthzAction.FindStringSubmatch(msg); m != nil {
			action = m[1]
		}
		return &ForbiddenError{Op: op, Action: action, Code: code, Message: msg, err: err}
	}
	var af *azidentity.AuthenticationFailedError
	if errors.As(err, &af) {
		return &tokenError{op: op, err: err, af: af}
	}
	return fmt.Errorf("%s: %w", op, err)
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
	msg := ""
	if body, err := runtime.Payload(e.af.RawResponse); err == nil {
		var b struct {
			Message          string `json:"message"`
			ErrorDescription string `json:"error_description"`
		}
		if json.Unmarshal(body, &b) == nil {
			msg = cmp.Or(b.Message, b.ErrorDescription)
		}
	}
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	return fmt.Sprintf("%s: cannot get an ARM token: the managed identity endpoint answered %d %s",
		e.op, e.af.RawResponse.StatusCode, strings.TrimSpace(msg))
}

// armError reads the code and message of ARM's error body
// {"error":{"code","message"}}; the message is cut at 1 KiB.
func armError(re *azcore.ResponseError) (code, message string) {
	code = re.ErrorCode
	if re.RawResponse == nil {
		return code, ""
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil {
		return code, ""
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error.Code != "" {
			code = e.Error.Code
		}
		message = e.Error.Message
	}
	if len(message) > 1024 {
		message = message[:1024] + "…"
	}
	return code, message
}
