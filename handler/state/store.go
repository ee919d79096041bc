// Package state keeps the guard's durable state: one JSON document per key
// with optimistic concurrency, so several Function instances can write the
// same documents without overwriting each other.
//
// Blob keeps the documents in Azure Blob Storage (Azurite locally), Memory
// keeps them in process with the same semantics. Update is the
// read-modify-write loop every writer should use.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
)

// Store holds JSON documents by key.
//
// Keys are arbitrary non-empty strings of at most MaxKeyLen bytes; stores
// encode them as needed. ETags are opaque: compare them only for equality.
type Store interface {
	// Get returns the document and its ETag; ErrNotFound when absent.
	Get(ctx context.Context, key string) (data []byte, etag string, err error)
	// Put writes data if the stored ETag still equals etag ("" = only if
	// absent). It returns ErrConflict when someone else wrote first, and the
	// new ETag on success.
	Put(ctx context.Context, key string, data []byte, etag string) (string, error)
	// List returns the keys that start with prefix ("" = all), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
}

var (
	// ErrNotFound: the document does not exist.
	ErrNotFound = errors.New("state: not found")
	// ErrConflict: the document changed (or appeared) since it was read.
	ErrConflict = errors.New("state: conflict")
)

// MaxKeyLen bounds key length in bytes (an encoded key must fit a blob name).
const MaxKeyLen = 300

// Error is a failed store operation. Its message names the store, the
// operation and the key, never a connection string, account key or SAS
// token. Unwrap gives the underlying error (for errors.Is/As); the SDK's own
// messages may contain request URLs, so log Error() only.
type Error struct {
	Store string // which store, e.g. `blob 127.0.0.1:10000/devstoreaccount1/atlas-akv-guard`
	Op    string // get, put, list, create-container
	Key   string // empty for list and create-container
	// StatusCode is the HTTP status of the failed request; 0 when there was
	// no response (network failure, timeout).
	StatusCode int
	// Code is the storage error code (e.g. AuthorizationFailure), if any.
	Code string
	// Transient is true when trying again later may succeed: no response,
	// timeouts, 408, 429 and 5xx.
	Transient bool
	// Err is the cause; ErrNotFound or ErrConflict for those outcomes.
	Err error

	cause string // sanitized description of Err
}

func (e *Error) Error() string {
	msg := "state: " + e.Store + ": " + e.Op
	if e.Key != "" {
		msg += fmt.Sprintf(" %q", e.Key)
	}
	switch {
	case errors.Is(e.Err, ErrNotFound):
		return msg + ": not found"
	case errors.Is(e.Err, ErrConflict):
		return msg + ": conflict (written by someone else)"
	}
	return msg + ": " + e.cause
}

func (e *Error) Unwrap() error { return e.Err }

// IsTransient reports whether err is a store failure that may go away when
// retried later (storage unreachable, throttled, 5xx). Conflicts are not
// transient in this sense: Update retries them itself.
func IsTransient(err error) bool {
	var se *Error
	if errors.As(err, &se) {
		return se.Transient
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// updateAttempts bounds Update's read-modify-write attempts.
const updateAttempts = 25

// Update reads the document at key into a T (the zero T when absent), calls
// fn to change it and writes it back if the stored document did not change
// meanwhile; on ErrConflict it starts over after a short jittered backoff, up
// to a bounded number of attempts. fn may therefore be called several times,
// each time on a freshly read value, and must not have side effects outside
// it. An error from fn aborts the update and is returned as is. When fn
// leaves an existing document byte-for-byte unchanged nothing is written.
// Update returns the value that was stored.
func Update[T any](ctx context.Context, s Store, key string, fn func(*T) error) (T, error) {
	return UpdateFrom(ctx, s, key, nil, fn)
}

// Read is what one Get returned: the document and its ETag, or Found false.
type Read struct {
	Data  []byte
	ETag  string
	Found bool
}

// Load gets the document at key as a Read; a missing document is a Read
// with Found false and no error.
func Load(ctx context.Context, s Store, key string) (Read, error) {
	data, etag, err := s.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return Read{}, nil
	}
	if err != nil {
		return Read{}, err
	}
	return Read{Data: data, ETag: etag, Found: true}, nil
}

// UpdateFrom is Update starting from a document the caller has just read
// (first), so a read-modify-write costs one Get less; it reads again only
// after a conflict. A nil first makes it read, as Update does.
func UpdateFrom[T any](ctx context.Context, s Store, key string, first *Read, fn func(*T) error) (T, error) {
	var zero T
	for attempt := 1; ; attempt++ {
		var cur Read
		if attempt == 1 && first != nil {
			cur = *first
		} else {
			var err error
			if cur, err = Load(ctx, s, key); err != nil {
				return zero, err
			}
		}
		var v T
		if cur.Found {
			if err := json.Unmarshal(cur.Data, &v); err != nil {
				return zero, fmt.Errorf("state: update %q: decode stored document: %w", key, err)
			}
		}
		if err := fn(&v); err != nil {
			return zero, err
		}
		out, err := json.Marshal(v)
		if err != nil {
			return zero, fmt.Errorf("state: update %q: encode: %w", key, err)
		}
		if cur.Found && string(out) == string(cur.Data) {
			return v, nil
		}
		_, err = s.Put(ctx, key, out, cur.ETag)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, ErrConflict) {
			return zero, err
		}
		if attempt >= updateAttempts {
			return zero, fmt.Errorf("state: update %q: gave up after %d conflicting writes: %w", key, attempt, err)
		}
		if err := backoff.Sleep(ctx, conflictDelay(attempt)); err != nil {
			return zero, fmt.Errorf("state: update %q: %w", key, err)
		}
	}
}

// conflictDelay is a full-jitter exponential delay: up to 5ms·2^(attempt-1),
// capped at 250ms.
func conflictDelay(attempt int) time.Duration {
	limit := 5 * time.Millisecond << min(attempt-1, 6)
	limit = min(limit, 250*time.Millisecond)
	return time.Duration(rand.Int64N(int64(limit)) + 1)
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("key longer than %d bytes", MaxKeyLen)
	}
	return nil
}
