// Package event decodes what the Azure Functions host POSTs to the custom
// handler (the invocation, Event Grid events in either schema, timer payloads)
// and classifies the Event Grid events the guard consumes. An Event keeps its
// data raw; Classify decodes it only after dispatching on the type. Events are
// hints: a Trigger says which vault or scope to look at and who did what when,
// never what to decide.
//
// Every error for bad input wraps ErrMalformed: retrying the same input cannot
// succeed, so the caller keeps it aside and answers 2xx.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// ErrMalformed is wrapped by every error caused by the content of the input.
var ErrMalformed = errors.New("malformed input")

// Schema names of an Event.
const (
	SchemaEventGrid   = "eventgrid"
	SchemaCloudEvents = "cloudevents"
)

// Event Grid refuses events (and push batches) over 1 MB in either schema, so
// MaxEventSize bounds the unwrapped event or array. The host hands an event
// over as a JSON string inside a JSON string; each layer at most doubles it
// (escaped '"' and '\'), and the envelope needs a little room: the server
// reads at most MaxInvocationSize.
const (
	MaxEventSize      = 1 << 20
	MaxInvocationSize = 4*MaxEventSize + 64<<10
	maxWrap           = 4 // JSON-string layers unwrapped; the host uses one or two
)

// Event is one Event Grid event, in either schema, with its data kept raw.
type Event struct {
	ID   string // never empty
	Type string // eventType or type; never empty
	// Source is topic or source: for system topics, the ARM ID of the vault or
	// scope that emitted the event. Empty only for an Event Grid event without
	// a topic.
	Source  string
	Subject string
	Time    time.Time       // zero only for a CloudEvent without time
	Schema  string          // SchemaEventGrid or SchemaCloudEvents
	Data    json.RawMessage // as sent; nil when absent or null
}

// DecodeInvocation returns the value of input binding from a host invocation
// body {"Data":{"<binding>":…},"Metadata":{…}}. It fails when the body is
// larger than MaxInvocationSize, has no Data object (the key is matched
// exactly: an event posted directly has "data"), or the binding is absent or
// null.
func DecodeInvocation(body []byte, binding string) (json.RawMessage, error) {
	if len(body) > MaxInvocationSize {
		return nil, malformed("invocation body is %d bytes, more than %d", len(body), MaxInvocationSize)
	}
	var top, data map[string]json.RawMessage
	if err := decodeObject("invocation body", body, &top); err != nil {
		return nil, err
	}
	if _, ok := top["Data"]; !ok {
		if _, ok := top["data"]; ok {
			return nil, malformed(`invocation body has no Data object (it has "data": an event posted directly?)`)
		}
		return nil, malformed("invocation body has no Data object")
	}
	if err := decodeObject("invocation Data", top["Data"], &data); err != nil {
		return nil, err
	}
	if v := bytes.TrimSpace(data[binding]); len(v) > 0 && string(v) != "null" {
		return v, nil
	}
	return nil, malformed("invocation Data.%s is missing or null", binding)
}

// Decode decodes the Event Grid trigger data of one invocation. While the
// value is a JSON string it is unquoted (at most 4 layers); it must then be an
// event object or a non-empty array of them (webhook-style delivery). An event
// is CloudEvents 1.0 when it has specversion, the Event Grid schema when it
// has eventType. Required: id and the type; eventTime (Event Grid); source and
// specversion "1.0" (CloudEvents). Times are RFC 3339. Data is not inspected.
//
// Decode returns the events that decode and an error naming each array item
// that does not: a bad item never hides the good ones.
func Decode(raw json.RawMessage) ([]Event, error) {
	v, err := unwrap(raw)
	if err != nil {
		return nil, err
	}
	if len(v) > MaxEventSize {
		return nil, malformed("event is %d bytes, more than the %d Event Grid allows", len(v), MaxEventSize)
	}
	if v[0] != '[' {
		e, err := decodeEvent(v)
		if err != nil {
			return nil, err
		}
		return []Event{e}, nil
	}
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
		if e, err := decodeEvent(item); err != nil {
			errs = append(errs, fmt.Errorf("event array item %d: %w", i, err))
		} else {
			events = append(events, e)
		}
	}
	return events, errors.Join(errs...)
}

// unwrap trims v and unquotes it while it is a JSON string, at most maxWrap
// times. The result is not empty.
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

// decodeEvent decodes one event object and checks its attributes. The
// envelope holds the attributes of both schemas (keys match
// case-insensitively); absent, null and "" count as missing.
func decodeEvent(obj []byte) (Event, error) {
	var env struct {
		ID, Subject, Topic, EventType, EventTime, Source, Type, Time, SpecVersion string
		Data                                                                      json.RawMessage
	}
	if err := decodeObject("event", obj, &env); err != nil {
		return Event{}, err
	}
	e := Event{ID: env.ID, Subject: env.Subject}
	timeAttr, at := "time", env.Time
	switch {
	case env.SpecVersion != "" && env.EventType != "":
		return Event{}, malformed("event has both specversion (CloudEvents) and eventType (Event Grid schema)")
	case env.SpecVersion != "":
		if env.SpecVersion != "1.0" {
			return Event{}, malformed("event: unsupported CloudEvents specversion %q, want \"1.0\"", alert.ScrubN(env.SpecVersion, 16))
		}
		e.Schema, e.Type, e.Source = SchemaCloudEvents, env.Type, env.Source
	case env.EventType != "":
		e.Schema, e.Type, e.Source = SchemaEventGrid, env.EventType, env.Topic
		timeAttr, at = "eventTime", env.EventTime
	}
	name := alert.ScrubN(e.Type, 128)
	var err error
	switch {
	case e.Type == "":
		return Event{}, malformed("event: missing type (eventType in the Event Grid schema, type and specversion in CloudEvents 1.0)")
	case e.ID == "":
		return Event{}, malformed("event %s: missing id", name)
	case e.Schema == SchemaCloudEvents && e.Source == "":
		return Event{}, malformed("event %s: missing source", name)
	case e.Schema == SchemaEventGrid && at == "":
		return Event{}, malformed("event %s: missing eventTime", name)
	case at != "":
		if e.Time, err = parseTime(at); err != nil {
			return Event{}, malformed("event %s: %s: %v", name, timeAttr, err)
		}
	}
	if d := bytes.TrimSpace(env.Data); len(d) > 0 && string(d) != "null" {
		e.Data = d
	}
	return e, nil
}

// Timer is the timer trigger's binding value.
type Timer struct {
	Schedule json.RawMessage // kept raw; nil when absent or null
	// ScheduleStatus is nil when the host sent null or nothing (first run,
	// or no storage for schedule monitoring).
	ScheduleStatus *ScheduleStatus
	IsPastDue      bool // this run is later than scheduled
}

// ScheduleStatus is the host's record of the schedule.
type ScheduleStatus struct{ Last, Next, LastUpdated HostTime }

// HostTime is a time as the host writes it: RFC 3339, or the .NET zone-less
// form read as UTC; the host's "0001-01-01T00:00:00" (never), null and "" are
// the zero time.
type HostTime struct{ time.Time }

func (t *HostTime) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a time string, got %s", alert.ScrubN(string(b), 16))
	}
	if s == nil || *s == "" {
		return nil
	}
	v, err := parseTime(*s)
	t.Time = v
	return err
}

// DecodeTimer decodes a timer binding value
// {"Schedule":{…},"ScheduleStatus":{…}|null,"IsPastDue":bool}, first
// unwrapping JSON strings as Decode does. It fails when the value is not an
// object, has neither Schedule nor IsPastDue, or holds a bad time.
func DecodeTimer(raw json.RawMessage) (Timer, error) {
	v, err := unwrap(raw)
	if err != nil {
		return Timer{}, err
	}
	var in struct {
		Timer
		IsPastDue *bool // shadows Timer's, to tell absent from false
	}
	if err := decodeObject("timer", v, &in); err != nil {
		return Timer{}, err
	}
	if in.Schedule == nil && in.IsPastDue == nil {
		return Timer{}, malformed("timer: neither Schedule nor IsPastDue: not a timer payload")
	}
	if string(in.Schedule) == "null" {
		in.Schedule = nil
	}
	in.Timer.IsPastDue = in.IsPastDue != nil && *in.IsPastDue
	return in.Timer, nil
}

// parseTime reads RFC 3339 with any fraction, or the .NET host's zone-less
// form (as UTC).
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", alert.ScrubN(s, 64))
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// decodeObject decodes the JSON object v into dst; what names v in errors,
// which say what was wrong rather than quote encoding/json about our structs.
func decodeObject(what string, v []byte, dst any) error {
	if v = bytes.TrimSpace(v); len(v) == 0 || v[0] != '{' {
		return malformed("%s: want an object, got %q", what, alert.ScrubN(string(v), 16))
	}
	err := json.Unmarshal(v, dst)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return malformed("%s: field %s: want %s, got %s", what, te.Field, te.Type, te.Value)
	} else if err != nil {
		return malformed("%s: %v", what, err)
	}
	return nil
}
