// Package notifytest provides receivers for the alert sinks, for tests and
// the simulated world: a webhook endpoint and an Event Grid topic (publish
// API) that record what they receive and can be told to fail.
package notifytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
)

// faults is the fault switch of a recorder.
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

// list is a list safe for concurrent use.
type list[T any] struct {
	mu    sync.Mutex
	items []T
}

func (l *list[T]) add(v ...T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v...)
}

func (l *list[T]) all() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.items)
}

// WebhookRequest is one POST the WebhookRecorder accepted.
type WebhookRequest struct {
	Header http.Header
	Body   json.RawMessage
}

// WebhookRecorder is an http.Handler that accepts POSTs of JSON and records
// them. The guard's payloads ({"source":…,"notices":[…]}) are also decoded
// into notices. The zero value is ready to use.
type WebhookRecorder struct {
	// OnNotice, when set, is called with each notice received.
	OnNotice func(alert.Notice)

	faults
	requests list[WebhookRequest]
	notices  list[alert.Notice]
}

// NewWebhookRecorder returns an empty recorder.
func NewWebhookRecorder() *WebhookRecorder { return &WebhookRecorder{} }

func (w *WebhookRecorder) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	var payload struct {
		Source  string         `json:"source"`
		Notices []alert.Notice `json:"notices"`
	}
	switch status := w.fault(); {
	case r.Method != http.MethodPost:
		status = http.StatusMethodNotAllowed
		fallthrough
	case status != 0:
		http.Error(rw, http.StatusText(status), status)
		return
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		http.Error(rw, "content type must be application/json", http.StatusUnsupportedMediaType)
		return
	case err != nil || !json.Valid(body):
		http.Error(rw, "body is not JSON", http.StatusBadRequest)
		return
	}
	if json.Unmarshal(body, &payload); payload.Source == "" {
		payload.Notices = nil
	}
	w.requests.add(WebhookRequest{Header: r.Header.Clone(), Body: body})
	w.notices.add(payload.Notices...)
	for _, n := range payload.Notices {
		if w.OnNotice != nil {
			w.OnNotice(n)
		}
	}
}

// Requests returns the accepted requests, oldest first.
func (w *WebhookRecorder) Requests() []WebhookRequest { return w.requests.all() }

// Notices returns the notices of accepted guard payloads, oldest first.
func (w *WebhookRecorder) Notices() []alert.Notice { return w.notices.all() }

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
	// Extensions holds every attribute, the standard ones included.
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
// CloudEvents (POST /api/events?api-version=2018-01-01, Content-Type
// application/cloudevents-batch+json, at most 1 MB). It accepts the
// aeg-sas-key header equal to Key or an Authorization: Bearer Token (either
// when both are set, anything when neither is), answering 401 otherwise, and
// records the events of the requests it answers 200.
type TopicRecorder struct {
	Key, Token string

	faults
	requests list[PublishRequest]
}

// NewTopicRecorder returns a recorder that accepts key and/or token.
func NewTopicRecorder(key, token string) *TopicRecorder {
	return &TopicRecorder{Key: key, Token: token}
}

func (t *TopicRecorder) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	status, msg := t.check(r)
	if status == 0 {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
		var events []CloudEvent
		if status, msg = http.StatusRequestEntityTooLarge, "batch larger than 1 MB"; err == nil && len(body) <= 1<<20 {
			events, status, msg = decodeBatch(body)
		}
		if status == 0 {
			t.requests.add(PublishRequest{Header: r.Header.Clone(), Events: events})
			return
		}
	}
	rw.Header().Set("Content-Type", "application/json; charset=utf-8")
	rw.WriteHeader(status)
	json.NewEncoder(rw).Encode(map[string]any{"error": map[string]string{"code": strings.ReplaceAll(http.StatusText(status), " ", ""), "message": msg}})
}

// check returns the error status and message for r's method, path, key and
// headers, or 0.
func (t *TopicRecorder) check(r *http.Request) (int, string) {
	authorized := t.Key == "" && t.Token == "" || t.Key != "" && r.Header.Get("aeg-sas-key") == t.Key ||
		t.Token != "" && r.Header.Get("Authorization") == "Bearer "+t.Token
	switch {
	case r.Method != http.MethodPost:
		return http.StatusMethodNotAllowed, "POST only"
	case r.URL.Path != "/api/events":
		return http.StatusNotFound, "unknown path"
	case r.URL.Query().Get("api-version") != "2018-01-01":
		return http.StatusBadRequest, "api-version must be 2018-01-01"
	case !authorized:
		return http.StatusUnauthorized, "The request authorization key is not authorized."
	}
	if status := t.fault(); status != 0 {
		return status, "injected fault"
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/cloudevents-batch+json") {
		return http.StatusBadRequest, "content type must be application/cloudevents-batch+json"
	}
	return 0, ""
}

func decodeBatch(body []byte) ([]CloudEvent, int, string) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, http.StatusBadRequest, "body is not a JSON array of events"
	}
	events := make([]CloudEvent, len(raw))
	for i, m := range raw {
		ev := &events[i]
		if json.Unmarshal(m, ev) != nil || json.Unmarshal(m, &ev.Extensions) != nil || ev.ID == "" || ev.Source == "" || ev.Type == "" || ev.SpecVersion != "1.0" {
			return nil, http.StatusBadRequest, "event lacks id, source, type or specversion 1.0"
		}
	}
	return events, 0, ""
}

// Requests returns the accepted publish requests, oldest first.
func (t *TopicRecorder) Requests() []PublishRequest { return t.requests.all() }

// Events returns the events of all accepted requests, oldest first.
func (t *TopicRecorder) Events() []CloudEvent {
	var out []CloudEvent
	for _, r := range t.Requests() {
		out = append(out, r.Events...)
	}
	return out
}

// WaitEvents waits until at least n events were accepted or ctx ends.
func (t *TopicRecorder) WaitEvents(ctx context.Context, n int) ([]CloudEvent, error) {
	for got := t.Events(); len(got) < n; got = t.Events() {
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("notifytest: waiting for %d events, have %d: %w", n, len(got), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return t.Events(), nil
}

// ServeTLS serves h over TLS on a free loopback port with a certificate of
// ca until the test ends, and returns its base URL. Clients must trust ca.
func ServeTLS(t testing.TB, ca *simtls.Authority, h http.Handler) string {
	t.Helper()
	ln, err := ca.Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(simtls.Serve(ln, h))
	return "https://" + ln.Addr().String()
}

// StaticToken is an azcore.TokenCredential that returns itself as the token,
// valid for an hour.
type StaticToken string

// GetToken implements azcore.TokenCredential.
func (s StaticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}
