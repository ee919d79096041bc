package event

import (
	"encoding/json"
	"time"
)

// Timer is the timer trigger's binding value:
// {"Schedule":{…},"ScheduleStatus":{…}|null,"IsPastDue":bool}.
type Timer struct {
	// Schedule is kept raw (e.g. {"AdjustForDST":true}); nil when absent.
	Schedule json.RawMessage
	// ScheduleStatus is nil when the host sent null or nothing (first run,
	// or no storage for schedule monitoring).
	ScheduleStatus *ScheduleStatus
	// IsPastDue is true when this run is later than scheduled (the host was
	// down or busy).
	IsPastDue bool
}

// ScheduleStatus is the host's record of the schedule. Times are in the zone
// the host wrote (UTC when it wrote none); the host's "0001-01-01T00:00:00"
// (never) reads as the zero time.
type ScheduleStatus struct {
	Last, Next, LastUpdated time.Time
}

// DecodeTimer decodes a timer binding value. Like Decode it first unwraps a
// JSON string (at most 4 layers). It fails, wrapping ErrMalformed, when the
// value is not an object, has neither Schedule nor IsPastDue, or holds a
// time that is not RFC 3339 (with or without zone).
func DecodeTimer(raw json.RawMessage) (Timer, error) {
	v, err := unwrap(raw)
	if err != nil {
		return Timer{}, err
	}
	if v[0] != '{' {
		return Timer{}, malformed("timer: want an object, got %s", kindOf(v))
	}
	var in struct {
		Schedule       json.RawMessage `json:"Schedule"`
		ScheduleStatus *struct {
			Last        hostTime `json:"Last"`
			Next        hostTime `json:"Next"`
			LastUpdated hostTime `json:"LastUpdated"`
		} `json:"ScheduleStatus"`
		IsPastDue *bool `json:"IsPastDue"`
	}
	if err := json.Unmarshal(v, &in); err != nil {
		return Timer{}, malformed("timer: %v", jsonError(err))
	}
	if in.Schedule == nil && in.IsPastDue == nil {
		return Timer{}, malformed("timer: neither Schedule nor IsPastDue: not a timer payload")
	}
	var t Timer
	if in.Schedule != nil && string(in.Schedule) != "null" {
		t.Schedule = in.Schedule
	}
	if in.IsPastDue != nil {
		t.IsPastDue = *in.IsPastDue
	}
	if s := in.ScheduleStatus; s != nil {
		t.ScheduleStatus = &ScheduleStatus{Last: s.Last.Time, Next: s.Next.Time, LastUpdated: s.LastUpdated.Time}
	}
	return t, nil
}
