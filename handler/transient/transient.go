// Package transient is the guard's one rule for "may a retry help?".
//
// An error is transient when a later attempt may succeed: throttling (429),
// server errors (5xx), timeouts, network failures, storage conflicts. Every
// package that talks to the outside marks such errors with Mark where it
// classifies them; everything else is permanent. The boundary asks Is:
// transient → answer the host non-2xx so the platform retries (events) or
// let the next timer run try again; permanent → log once, alert if it
// blinds the guard, answer 2xx.
package transient

import "errors"

// marked wraps an error that a retry may fix.
type marked struct{ err error }

func (m marked) Error() string { return m.err.Error() }
func (m marked) Unwrap() error { return m.err }

// Mark returns err marked as transient (nil stays nil). The message and
// the chain that errors.Is/As see are unchanged.
func Mark(err error) error {
	if err == nil || Is(err) {
		return err
	}
	return marked{err}
}

// Is reports whether err, or any error it wraps, was marked transient.
func Is(err error) bool {
	var m marked
	return errors.As(err, &m)
}
