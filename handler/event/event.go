// Package event decodes what the Azure Functions host POSTs to the custom
// handler (the invocation envelope, Event Grid events in either schema, timer
// payloads) and classifies every Event Grid event the guard consumes.
//
// Envelopes are thin: an Event keeps its data raw, and Classify decodes the
// typed data only after it has dispatched on the event type. Events are hints:
// a Trigger says which vault or scope to look at and, for alerts, who did what
// and when; it never carries a decision.
//
// Every error this package returns for bad input wraps ErrMalformed: retrying
// the same input cannot succeed, so the caller should keep it aside and
// answer 2xx rather than make Event Grid redeliver it.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrMalformed is wrapped by every error caused by the content of the input
// (not JSON, wrong shape, missing or ill-typed fields, too large). Test with
// errors.Is.
var ErrMalformed = errors.New("malformed input")

// Schema names of an Event.
const (
	SchemaEventGrid   = "eventgrid"
	SchemaCloudEvents = "cloudevents"
)

// Size limits, one derived from the other. Event Grid refuses events (and
// push batches) larger than 1 MB in either schema, so MaxEventSize (1 MiB)
// bounds the unwrapped event or array. The host hands the event over as a
// JSON string inside a JSON string: each layer escapes '"' and '\' with a
// backslash, so two layers at most quadruple the event. MaxInvocationSize
// adds room for the envelope and Metadata; the server reads no more than that
// and DecodeInvocation refuses anything larger.
const (
	MaxEventSize      = 1 << 20
	MaxInvocationSize = 4*MaxEventSize + 64<<10
)

// maxWrap bounds how many times Decode unquotes a JSON string before it wants
// an object or an array. The host wraps once or twice; 4 leaves room without
// letting a pathological input loop.
const maxWrap = 4

// Event is one Event Grid event, in either schema, with its data kept raw.
type Event struct {
	// ID is the event's id; never empty.
	ID string
	// Type is eventType (Event Grid) or type (CloudEvents); never empty.
	Type string
	// Source is topic (Event Grid) or source (CloudEvents): for system topics,
	// the ARM ID of the resource (Key Vault) or scope (resource group) that
	// emitted the event. Empty only for an Event Grid event without a topic.
	Source string
	// Subject is the event's subject, possibly empty.
	Subject string
	// Time is eventTime / time; zero for a CloudEvent without time.
	Time time.Time
	// Schema is SchemaEventGrid or SchemaCloudEvents.
	Schema string
	// Data is the event's data exactly as sent (a JSON value); nil when the
	// event has no data or data is null.
	Data json.RawMessage
}

// envelope holds the attributes of both schemas; which ones are set decides
// the schema. An attribute that is absent, null or "" counts as missing.
type envelope struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	// Event Grid schema.
	Topic     string `json:"topic"`
	EventType string `json:"eventType"`
	EventTime string `json:"eventTime"`
	// CloudEvents 1.0.
	Source      string `json:"source"`
	Type        string `json:"type"`
	Time        string `json:"time"`
	SpecVersion string `json:"specversion"`

	Data json.RawMessage `json:"data"`
}

// Decode decodes the Event Grid trigger data the host passes for one
// invocation. While the value is a JSON string it is unquoted (at most 4
// layers); the result must then be one event object or a non-empty array of
// event objects (webhook-style delivery). Each event is read as CloudEvents
// 1.0 when it has specversion, as the Event Grid schema when it has eventType.
//
// Required: id and the type in both schemas; eventTime for Event Grid; source
// and specversion "1.0" for CloudEvents. Times must be RFC 3339. Data is not
// inspected here (Classify checks it for the types that need it).
//
// Decode returns the events that decode and an error (wrapping ErrMalformed)
// naming each array item that does not: a bad item never hides the good ones.
// When the whole value is unusable it returns no event and an error.
func Decode(raw json.RawMessage) ([]Event, error) {
	v, err := unwrap(raw)
	if err != nil {
		return nil, err
	}
	if len(v) > MaxEventSize {
		return nil, malformed("event is %d bytes, more than the %d Event Grid allows", len(v), MaxEventSize)
	}
	switch v[0] {
	case '{':
		e, err := decodeOne(v)
		if err != nil {
			return nil, err
		}
		return []Event{e}, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(v, &items); err != nil {
			return nil, malformed("event array: %v", err)
		}
		if len(items) == 0 {
			return nil, malformed("event array is empty")
		}
		var events []Event
		var errs []error
		for i, item := range items {
			e, err := decodeOne(bytes.TrimSpace(item))
			if err != nil {
				errs = append(errs, fmt.Errorf("event array item %d: %w", i, err))
				continue
			}
			events = append(events, e)
		}
		return events, errors.Join(errs...)
	default:
		return nil, malformed("event: want an object or an array, got %s", kindOf(v))
	}
}

// unwrap trims v and unquotes it while it is a JSON string, at most maxWrap
// times. The result is non-empty.
func unwrap(v []byte) ([]byte, error) {
	v = bytes.TrimSpace(v)
	for depth := 0; len(v) > 0 && v[0] == '"'; depth++ {
		if depth == maxWrap {
			return nil, malformed("event is wrapped in more than %d JSON strings", maxWrap)
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, malformed("event: string-wrapped value is not a valid JSON string: %v", err)
		}
		v = bytes.TrimSpace([]byte(s))
	}
	if len(v) == 0 {
		return nil, malformed("event is empty")
	}
	return v, nil
}

// decodeOne decodes one event object and checks its attributes.
func decodeOne(obj []byte) (Event, error) {
	if len(obj) == 0 || obj[0] != '{' {
		return Event{}, malformed("want an event object, got %s", kindOf(obj))
	}
	var env envelope
	if err := json.Unmarshal(obj, &env); err != nil {
		return Event{}, malformed("event: %v", jsonError(err))
	}
	e := Event{ID: env.ID, Subject: env.Subject}
	var err error
	switch {
	case env.SpecVersion != "" && env.EventType != "":
		return Event{}, malformed("event has both specversion (CloudEvents) and eventType (Event Grid schema)")
	case env.SpecVersion != "":
		e.Schema, e.Type, e.Source = SchemaCloudEvents, env.Type, env.Source
		switch {
		case env.SpecVersion != "1.0":
			return Event{}, malformed("event: unsupported CloudEvents specversion %q, want \"1.0\"", truncate(env.SpecVersion, 16))
		case e.Type == "":
			return Event{}, malformed("cloudevent: missing type")
		case e.Source == "":
			return Event{}, malformed("cloudevent %s: missing source", truncate(e.Type, 128))
		case env.Time != "":
			if e.Time, err = parseTime(env.Time); err != nil {
				return Event{}, malformed("cloudevent %s: time: %v", truncate(e.Type, 128), err)
			}
		}
	case env.EventType != "":
		e.Schema, e.Type, e.Source = SchemaEventGrid, env.EventType, env.Topic
		if env.EventTime == "" {
			return Event{}, malformed("event %s: missing eventTime", truncate(e.Type, 128))
		}
		if e.Time, err = parseTime(env.EventTime); err != nil {
			return Event{}, malformed("event %s: eventTime: %v", truncate(e.Type, 128), err)
		}
	default:
		return Event{}, malformed("event has neither eventType (Event Grid schema) nor specversion (CloudEvents 1.0): missing type")
	}
	if e.ID == "" {
		return Event{}, malformed("event %s: missing id", truncate(e.Type, 128))
	}
	if d := bytes.TrimSpace(env.Data); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		e.Data = d
	}
	return e, nil
}

// hostTimeLayouts are the time formats accepted in events and timer payloads:
// RFC 3339 with any fraction, and the .NET host's zone-less form (read as
// UTC), e.g. "0001-01-01T00:00:00".
var hostTimeLayouts = [...]string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"}

func parseTime(s string) (time.Time, error) {
	for _, layout := range hostTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", truncate(s, 64))
}

// hostTime is a time in a JSON string in one of hostTimeLayouts; null and ""
// leave it zero.
type hostTime struct{ time.Time }

func (t *hostTime) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a time string, got %s", kindOf(b))
	}
	if s == nil || *s == "" {
		return nil
	}
	v, err := parseTime(*s)
	t.Time = v
	return err
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// jsonError shortens encoding/json's messages about our private structs.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("field %s: want %s, got %s", te.Field, te.Type, te.Value)
	}
	return err
}

// kindOf names the JSON kind of v for error messages.
func kindOf(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch c := v[0]; {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	default:
		return fmt.Sprintf("invalid JSON starting %q", truncate(string(v), 16))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
