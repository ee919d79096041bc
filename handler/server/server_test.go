package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/server"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// recorder is the dispatcher under the router: it records what the server
// handed over and answers as told.
type recorder struct {
	mu       sync.Mutex
	events   [][]event.Trigger
	function []string
	timers   []event.Timer
	err      error
	panic    bool
}

func (r *recorder) Events(ctx context.Context, function string, ts []event.Trigger) (server.Outcome, error) {
	if r.panic {
		panic("boom")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ts)
	r.function = append(r.function, function)
	return server.Outcome{Logs: []string{"reconciled"}, ReturnValue: map[string]int{"projects": 1}}, r.err
}

func (r *recorder) Timer(ctx context.Context, t event.Timer) (server.Outcome, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timers = append(r.timers, t)
	return server.Outcome{Logs: []string{"timer done"}}, r.err
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "event", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostBody wraps an event fixture the way the Functions host does: the event
// serialised to a string, JSON-encoded again as the binding's value.
func hostBody(t testing.TB, eventJSON []byte) []byte {
	t.Helper()
	var compact bytes.Buffer
	if err := json.Compact(&compact, eventJSON); err != nil {
		t.Fatal(err)
	}
	s, _ := json.Marshal(compact.String())
	return []byte(`{"Data":{"event":` + string(s) + `},"Metadata":{"sys":{"MethodName":"PrivateLinkEvents"}}}`)
}

type hostReply struct {
	Outputs     map[string]any
	Logs        []string
	ReturnValue any
}

func post(t *testing.T, h http.Handler, path string, body []byte) (int, hostReply, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-InvocationId", "inv-42")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var rep hostReply
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("%s: answer is not the host's JSON shape: %q", path, rec.Body.String())
	}
	if rep.Outputs == nil || rep.Logs == nil {
		t.Fatalf("%s: answer lacks Outputs or Logs: %q", path, rec.Body.String())
	}
	return rec.Code, rep, rec.Body.String()
}

func newRouter(d server.Dispatcher) (http.Handler, *bytes.Buffer) {
	var logs bytes.Buffer
	return server.New(server.Options{Dispatcher: d, Logger: logging.New(&logs, slog.LevelDebug)}), &logs
}

func TestReadinessProbe(t *testing.T) {
	h, _ := newRouter(&recorder{})
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(m, "/", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s / = %d", m, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/NoSuchFunction", strings.NewReader("{}")))
	if rec.Code != http.StatusNotFound {
		t.Errorf("unknown function = %d, want 404", rec.Code)
	}
}

func TestEventInvocations(t *testing.T) {
	cases := []struct {
		name     string
		function string
		body     func(t *testing.T) []byte
		status   int
		kinds    []event.Kind // nil: the dispatcher must not be called
	}{
		{"host fixture string-wrapped", server.PrivateLinkEvents, func(t *testing.T) []byte { return fixture(t, "host-eventgrid-string-wrapped.json") }, 200, []event.Kind{event.ConnectionChanged}},
		{"host fixture double-wrapped", server.PrivateLinkEvents, func(t *testing.T) []byte { return fixture(t, "host-eventgrid-double-wrapped.json") }, 200, []event.Kind{event.KeyNearExpiry}},
		{"host fixture object", server.PrivateLinkEvents, func(t *testing.T) []byte { return fixture(t, "host-eventgrid-object.json") }, 200, []event.Kind{event.VaultChanged}},
		{"host fixture array", server.PrivateLinkEvents, func(t *testing.T) []byte { return fixture(t, "host-eventgrid-array.json") }, 200, []event.Kind{event.ConnectionChanged}},
		{"host fixture cloudevents", server.KeyVaultEvents, func(t *testing.T) []byte { return fixture(t, "host-cloudevents-string-wrapped.json") }, 200, []event.Kind{event.KeyNewVersion}},
		{"key disabled hint: new version", server.KeyVaultEvents, func(t *testing.T) []byte { return hostBody(t, fixture(t, "keyvault-key-new-version-created.json")) }, 200, []event.Kind{event.KeyNewVersion}},
		{"access policy changed", server.KeyVaultEvents, func(t *testing.T) []byte { return hostBody(t, fixture(t, "keyvault-vault-access-policy-changed.json")) }, 200, []event.Kind{event.AccessPolicyChanged}},
		{"role assignment deleted", server.PrivateLinkEvents, func(t *testing.T) []byte { return hostBody(t, fixture(t, "arm-role-assignment-delete-rg-scope.json")) }, 200, []event.Kind{event.RoleAssignmentDeleted}},
		{"cloudevents vault delete", server.PrivateLinkEvents, func(t *testing.T) []byte { return hostBody(t, fixture(t, "arm-vault-delete.cloudevents.json")) }, 200, []event.Kind{event.VaultChanged}},
		{"unrelated secret event", server.KeyVaultEvents, func(t *testing.T) []byte { return hostBody(t, fixture(t, "keyvault-secret-new-version-created.json")) }, 200, nil},
		{"unrelated storage write", server.PrivateLinkEvents, func(t *testing.T) []byte { return hostBody(t, fixture(t, "arm-storage-write-unrelated.json")) }, 200, nil},
		{"not json", server.PrivateLinkEvents, func(t *testing.T) []byte { return []byte("{not json") }, 400, nil},
		{"no event binding", server.PrivateLinkEvents, func(t *testing.T) []byte { return []byte(`{"Data":{"other":{}},"Metadata":{}}`) }, 400, nil},
		{"truncated event", server.PrivateLinkEvents, func(t *testing.T) []byte { return hostBody(t, []byte(`{"id":"x"}`))[:40] }, 400, nil},
		{"event without type", server.PrivateLinkEvents, func(t *testing.T) []byte { return hostBody(t, fixture(t, "malformed-missing-type.json")) }, 400, nil},
		{"malformed related data", server.PrivateLinkEvents, func(t *testing.T) []byte { return hostBody(t, fixture(t, "malformed-arm-pec-write-not-a-vault.json")) }, 400, nil},
		{"empty array", server.PrivateLinkEvents, func(t *testing.T) []byte { return []byte(`{"Data":{"event":[]},"Metadata":{}}`) }, 400, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &recorder{}
			h, logs := newRouter(d)
			code, rep, raw := post(t, h, "/"+tc.function, tc.body(t))
			if code != tc.status {
				t.Fatalf("status = %d, want %d; body %s; logs %s", code, tc.status, raw, logs)
			}
			if tc.kinds == nil {
				if len(d.events) != 0 {
					t.Fatalf("dispatcher called for %v", d.events)
				}
				if tc.status != 200 && len(rep.Logs) == 0 {
					t.Error("a refused invocation says nothing in Logs")
				}
				return
			}
			if len(d.events) != 1 || d.function[0] != tc.function {
				t.Fatalf("dispatcher calls = %v (%v), want one for %s", d.events, d.function, tc.function)
			}
			var got []event.Kind
			for _, tr := range d.events[0] {
				got = append(got, tr.Kind)
			}
			if strings.Join(kinds(got), ",") != strings.Join(kinds(tc.kinds), ",") {
				t.Errorf("kinds = %v, want %v", got, tc.kinds)
			}
			if !strings.Contains(logs.String(), `"invocationId":"inv-42"`) {
				t.Errorf("log lacks the invocation id: %s", logs)
			}
		})
	}
}

func kinds(ks []event.Kind) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	return out
}

func TestTimerInvocation(t *testing.T) {
	for _, name := range []string{"host-timer.json", "host-timer-null-status.json", "host-timer-past-due.json"} {
		t.Run(name, func(t *testing.T) {
			d := &recorder{}
			h, _ := newRouter(d)
			code, rep, _ := post(t, h, "/Reconcile", fixture(t, name))
			if code != 200 || len(d.timers) != 1 || rep.Logs[0] != "timer done" {
				t.Fatalf("code %d, timers %d, logs %v", code, len(d.timers), rep.Logs)
			}
			if d.timers[0].IsPastDue != (name == "host-timer-past-due.json") {
				t.Errorf("IsPastDue = %v", d.timers[0].IsPastDue)
			}
		})
	}
	d := &recorder{}
	h, _ := newRouter(d)
	if code, _, _ := post(t, h, "/Reconcile", []byte(`{"Data":{"timer":"yesterday"}}`)); code != 400 || len(d.timers) != 0 {
		t.Errorf("malformed timer: code %d, timers %d", code, len(d.timers))
	}
}

func TestDispatchErrorsMapToRetryOrNot(t *testing.T) {
	body := hostBody(t, fixture(t, "arm-pec-write-rejected.json"))
	cases := []struct {
		err    error
		status int
	}{
		{nil, 200},
		{transient.Mark(errors.New("atlas: 503")), 500},
		{errors.New("permanent: no such project"), 200},
	}
	for _, tc := range cases {
		h, _ := newRouter(&recorder{err: tc.err})
		code, rep, _ := post(t, h, "/PrivateLinkEvents", body)
		if code != tc.status {
			t.Errorf("err %v: status %d, want %d", tc.err, code, tc.status)
		}
		if tc.err != nil && !strings.Contains(strings.Join(rep.Logs, "\n"), tc.err.Error()) {
			t.Errorf("err %v not reported in Logs %v", tc.err, rep.Logs)
		}
		if tc.err == nil && (rep.ReturnValue == nil || rep.Logs[0] != "reconciled") {
			t.Errorf("outcome not passed through: %+v", rep)
		}
	}
}

func TestOversizedBodyIs413(t *testing.T) {
	d := &recorder{}
	h, _ := newRouter(d)
	big := append([]byte(`{"Data":{"event":"`), bytes.Repeat([]byte("a"), 2<<20)...)
	big = append(big, `"}}`...)
	code, rep, _ := post(t, h, "/KeyVaultEvents", big)
	if code != http.StatusRequestEntityTooLarge || len(d.events) != 0 || len(rep.Logs) == 0 {
		t.Fatalf("2 MiB body: status %d, dispatched %d, logs %v", code, len(d.events), rep.Logs)
	}
}

func TestPanicBecomes500(t *testing.T) {
	h, logs := newRouter(&recorder{panic: true})
	code, _, _ := post(t, h, "/PrivateLinkEvents", hostBody(t, fixture(t, "arm-pec-write-rejected.json")))
	if code != 500 || !strings.Contains(logs.String(), "panic in handler") {
		t.Fatalf("status %d, logs %s", code, logs)
	}
}

func TestStatusForwarding(t *testing.T) {
	h := server.New(server.Options{Dispatcher: &recorder{}, Status: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "status page")
	})})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/Status", nil))
	if rec.Code != 200 || rec.Body.String() != "status page" {
		t.Fatalf("status = %d %q", rec.Code, rec.Body)
	}
	noStatus, _ := newRouter(&recorder{})
	rec = httptest.NewRecorder()
	noStatus.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/Status", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status without a page = %d", rec.Code)
	}
}

func TestServeStopsGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	h, _ := newRouter(&recorder{})
	go func() { done <- server.Serve(ctx, ln, h, 5e9, logging.Discard()) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("probe: %v %v", err, resp)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}
