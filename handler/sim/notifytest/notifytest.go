// Package notifytest provides receivers for the alert sinks, for tests and
// the demo: a webhook endpoint and an Event Grid topic (publish API) that
// record what they receive and can be told to fail.
package notifytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// faults is the fault switch shared by the recorders.
type faults struct {
	mu       sync.Mutex
	status   int // answered to every request while non-zero
	failNext []int
}

// FailNext makes the next requests answer the given statuses, in order.
func (f *faults) FailNext(statuses ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = append(f.failNext, statuses...)
}

// SetStatus makes every request answer status until SetStatus(0).
func (f *faults) SetStatus(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// fault returns the status to fail the current request with, or 0.
func (f *faults) fault() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failNext) > 0 {
		s := f.failNext[0]
		f.failNext = f.failNext[1:]
		return s
	}
	return f.status
}

// signal lets waiters block until a count is reached.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

func waitFor[T any](ctx context.Context, sig *signal, n int, get func() []T) ([]T, error) {
	for {
		ch := sig.wait()
		if got := get(); len(got) >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return get(), fmt.Errorf("notifytest: waiting for %d, have %d: %w", n, len(get()), ctx.Err())
		case <-ch:
		}
	}
}

// WebhookRequest is one POST the WebhookRecorder accepted.
type WebhookRequest struct {
	Path   string
	Header http.Header
	Body   json.RawMessage
}

// WebhookRecorder is an http.Handler that accepts webhook POSTs with a JSON
// body and records them. Generic payloads ({"source":…,"notices":[…]}) are
// also decoded into notices. Use FailNext or SetStatus to make it fail.
type WebhookRecorder struct {
	faults
	sig      signal
	mu       sync.Mutex
	requests []WebhookRequest
	notices  []alert.Notice
}

// NewWebhookRecorder returns an empty recorder.
func NewWebhookRecorder() *WebhookRecorder { return &WebhookRecorder{} }

func (w *WebhookRecorder) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if status := w.fault(); status != 0 {
		http.Error(rw, http.StatusText(status), status)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil || !json.Valid(body) {
		http.Error(rw, "body is not JSON", http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		http.Error(rw, "content type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	var generic struct {
		Source  string         `json:"source"`
		Notices []alert.Notice `json:"notices"`
	}
	_ = json.Unmarshal(body, &generic)
	w.mu.Lock()
	w.requests = append(w.requests, WebhookRequest{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	if generic.Source != "" {
		w.notices = append(w.notices, generic.Notices...)
	}
	w.mu.Unlock()
	w.sig.notify()
	rw.WriteHeader(http.StatusOK)
	io.WriteString(rw, "ok")
}

// Requests returns the accepted requests, oldest first.
func (w *WebhookRecorder) Requests() []WebhookRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebhookRequest(nil), w.requests...)
}

// Notices returns the notices of accepted generic payloads, oldest first.
func (w *WebhookRecorder) Notices() []alert.Notice {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]alert.Notice(nil), w.notices...)
}

// WaitRequests blocks until at least n requests were accepted or ctx ends.
func (w *WebhookRecorder) WaitRequests(ctx context.Context, n int) ([]WebhookRequest, error) {
	return waitFor(ctx, &w.sig, n, w.Requests)
}

// WaitNotices blocks until at least n generic notices arrived or ctx ends.
func (w *WebhookRecorder) WaitNotices(ctx context.Context, n int) ([]alert.Notice, error) {
	return waitFor(ctx, &w.sig, n, w.Notices)
}

// CloudEvent is one event as received by the TopicRecorder.
type CloudEvent struct {
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	SpecVersion     string          `json:"specversion"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            time.Time       `json:"time,omitzero"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
	// Extensions holds every other attribute.
	Extensions map[string]any `json:"-"`
}

// Alert decodes Data as an alert.
func (e CloudEvent) Alert() (alert.Alert, error) {
	var a alert.Alert
	err := json.Unmarshal(e.Data, &a)
	return a, err
}

// PublishRequest is one publish call the TopicRecorder accepted.
type PublishRequest struct {
	Header http.Header
	Events []CloudEvent
}

// TopicRecorder is an http.Handler speaking the Event Grid publish API for
// CloudEvents: POST /api/events?api-version=2018-01-01 with Content-Type
// application/cloudevents-batch+json. It authenticates with the aeg-sas-key
// header equal to Key, or an Authorization: Bearer token equal to Token
// (either one when both are set; none when both are empty), answering 401
// otherwise, and records the events of accepted requests (200).
type TopicRecorder struct {
	Key   string
	Token string

	faults
	sig      signal
	mu       sync.Mutex
	requests []PublishRequest
}

// NewTopicRecorder returns a recorder that accepts key (aeg-sas-key) and/or
// a bearer token.
func NewTopicRecorder(key, token string) *TopicRecorder {
	return &TopicRecorder{Key: key, Token: token}
}

func topicError(rw http.ResponseWriter, status int, code, msg string) {
	rw.Header().Set("Content-Type", "application/json; charset=utf-8")
	rw.WriteHeader(status)
	json.NewEncoder(rw).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func (t *TopicRecorder) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method != http.MethodPost:
		topicError(rw, http.StatusMethodNotAllowed, "MethodNotAllowed", "POST only")
		return
	case r.URL.Path != "/api/events":
		topicError(rw, http.StatusNotFound, "NotFound", "unknown path")
		return
	case r.URL.Query().Get("api-version") != "2018-01-01":
		topicError(rw, http.StatusBadRequest, "BadRequest", "api-version must be 2018-01-01")
		return
	}
	if !t.authorized(r) {
		topicError(rw, http.StatusUnauthorized, "Unauthorized", "The request authorization key is not authorized.")
		return
	}
	if status := t.fault(); status != 0 {
		topicError(rw, status, strings.ReplaceAll(http.StatusText(status), " ", ""), "injected fault")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents-batch+json") {
		topicError(rw, http.StatusBadRequest, "BadRequest", "content type must be application/cloudevents-batch+json")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil || len(body) > 1<<20 {
		topicError(rw, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "batch larger than 1 MB")
		return
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		topicError(rw, http.StatusBadRequest, "BadRequest", "body is not a JSON array of events")
		return
	}
	events := make([]CloudEvent, 0, len(raw))
	for _, m := range raw {
		b, _ := json.Marshal(m)
		var ev CloudEvent
		if err := json.Unmarshal(b, &ev); err != nil || ev.ID == "" || ev.Source == "" || ev.Type == "" || ev.SpecVersion != "1.0" {
			topicError(rw, http.StatusBadRequest, "BadRequest", "event lacks id, source, type or specversion 1.0")
			return
		}
		for k, v := range m {
			switch k {
			case "id", "source", "specversion", "type", "subject", "time", "datacontenttype", "data", "data_base64", "dataschema":
				continue
			}
			if ev.Extensions == nil {
				ev.Extensions = map[string]any{}
			}
			var x any
			json.Unmarshal(v, &x)
			ev.Extensions[k] = x
		}
		events = append(events, ev)
	}
	t.mu.Lock()
	t.requests = append(t.requests, PublishRequest{Header: r.Header.Clone(), Events: events})
	t.mu.Unlock()
	t.sig.notify()
	rw.WriteHeader(http.StatusOK)
}

func (t *TopicRecorder) authorized(r *http.Request) bool {
	if t.Key == "" && t.Token == "" {
		return true
	}
	if t.Key != "" && r.Header.Get("aeg-sas-key") == t.Key {
		return true
	}
	return t.Token != "" && r.Header.Get("Authorization") == "Bearer "+t.Token
}

// Requests returns the accepted publish requests, oldest first.
func (t *TopicRecorder) Requests() []PublishRequest {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]PublishRequest(nil), t.requests...)
}

// Events returns the events of all accepted requests, oldest first.
func (t *TopicRecorder) Events() []CloudEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []CloudEvent
	for _, r := range t.requests {
		out = append(out, r.Events...)
	}
	return out
}

// WaitEvents blocks until at least n events were accepted or ctx ends.
func (t *TopicRecorder) WaitEvents(ctx context.Context, n int) ([]CloudEvent, error) {
	return waitFor(ctx, &t.sig, n, t.Events)
}

// StaticToken is an azcore.TokenCredential that always returns itself as
// the token, valid for an hour.
type StaticToken string

// GetToken implements azcore.TokenCredential.
func (s StaticToken) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}
