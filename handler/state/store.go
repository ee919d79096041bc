// Package state keeps the guard's durable state: one JSON document per key
// with optimistic concurrency, so several Function instances can write the
// same documents without overwriting each other.
//
// Blob keeps the documents in Azure Blob Storage (Azurite locally), Memory
// keeps them in process with the same semantics. Update is the
// read-modify-write loop every writer should use.
package state

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// Store holds JSON documents by key.
//
// Keys are arbitrary non-empty strings of at most MaxKeyLen bytes; stores
// encode them as needed. ETags are opaque: compare them only for equality.
type Store interface {
	// Get returns the document and its ETag; ErrNotFound when absent.
	Get(ctx context.Context, key string) (data []byte, etag string, err error)
	// Put writes data, with metadata meta (nil = none), if the stored ETag
	// still equals etag ("" = only if absent). It returns ErrConflict when
	// someone else wrote first, and the new ETag on success.
	Put(ctx context.Context, key string, data []byte, etag string, meta map[string]string) (string, error)
	// List returns the documents whose keys start with prefix ("" = all),
	// sorted by key, with the metadata of their last Put: one call, however
	// many documents.
	List(ctx context.Context, prefix string) ([]Item, error)
}

// Item is one listed document: its key and metadata. Metadata keys are
// lower-case letters and digits; values are any strings.
type Item struct {
	Key  string
	Meta map[string]string
}

// Labeled is a document that names its own metadata: Update writes it with
// every Put of such a document.
type Labeled interface {
	Meta() map[string]string
}

var (
	// ErrNotFound: the document does not exist.
	ErrNotFound = errors.New("state: not found")
	// ErrConflict: the document changed (or appeared) since it was read.
	ErrConflict = errors.New("state: conflict")
)

// MaxKeyLen bounds key length in bytes (an encoded key must fit a blob name).
const MaxKeyLen = 300

// Error is a failed store operation. Its message names the store (e.g.
// `blob 127.0.0.1:10000/devstoreaccount1/atlas-akv-guard`), the operation
// and the key (empty for list), never a connection string, account key or
// SAS token. Err is the cause — ErrNotFound, ErrConflict, or an SDK error
// whose own message may contain request URLs: log Error() only.
type Error struct {
	Store, Op, Key string
	Err            error
	cause          string // sanitized description of Err ("" = Err.Error())
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
	return msg + ": " + cmp.Or(e.cause, e.Err.Error())
}

func (e *Error) Unwrap() error { return e.Err }

// updateAttempts bounds Update's read-modify-write attempts.
const updateAttempts = 25

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

// Update reads the document at key into a T (the zero T when absent), calls
// fn to change it and writes it back if the stored document did not change
// meanwhile; on ErrConflict it starts over after a short jittered backoff, up
// to a bounded number of attempts. fn may therefore be called several times,
// each time on a freshly read value, and must not have side effects outside
// it. An error from fn aborts the update and is returned as is. When fn
// leaves an existing document byte-for-byte unchanged nothing is written.
//
// from, when not nil, is a Read the caller has just made (or the Read a
// previous Update returned): the first attempt starts from it instead of a
// Get. Update returns the value stored and the Read that now describes it,
// for the next Update to start from.
func Update[T any](ctx context.Context, s Store, key string, from *Read, fn func(*T) error) (T, Read, error) {
	var zero T
	for attempt := 1; ; attempt++ {
		var cur Read
		if attempt == 1 && from != nil {
			cur = *from
		} else {
			var err error
			if cur, err = Load(ctx, s, key); err != nil {
				return zero, Read{}, err
			}
		}
		var v T
		if cur.Found {
			if err := json.Unmarshal(cur.Data, &v); err != nil {
				return zero, Read{}, fmt.Errorf("state: update %q: decode stored document: %w", key, err)
			}
		}
		if err := fn(&v); err != nil {
			return zero, Read{}, err
		}
		out, err := json.Marshal(v)
		if err != nil {
			return zero, Read{}, fmt.Errorf("state: update %q: encode: %w", key, err)
		}
		if cur.Found && string(out) == string(cur.Data) {
			return v, cur, nil
		}
		var meta map[string]string
		if l, ok := any(v).(Labeled); ok {
			meta = l.Meta()
		}
		etag, err := s.Put(ctx, key, out, cur.ETag, meta)
		if err == nil {
			return v, Read{Data: out, ETag: etag, Found: true}, nil
		}
		if !errors.Is(err, ErrConflict) {
			return zero, Read{}, err
		}
		if attempt >= updateAttempts {
			return zero, Read{}, fmt.Errorf("state: update %q: gave up after %d conflicting writes: %w", key, attempt, err)
		}
		if err := backoff.Sleep(ctx, conflictDelay(attempt)); err != nil {
			return zero, Read{}, transient.Mark(fmt.Errorf("state: update %q: %w", key, err))
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
