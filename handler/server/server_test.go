package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/server"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// recorder is the dispatcher under the router: it records what the server
// handed over and answers as told.
type recorder struct {
	events [][]event.Trigger
	timers []event.Timer
	err    error
	panic  bool
}

func (r *recorder) Events(ctx context.Context, ts []event.Trigger) (reconcile.RunResult, error) {
	if r.panic {
		panic("boom")
	}
	r.events = append(r.events, ts)
	return reconcile.RunResult{Logs: []string{"reconciled"}, Reports: []reconcile.Report{{}}}, r.err
}

func (r *recorder) Timer(ctx context.Context, t event.Timer) (reconcile.RunResult, error) {
	r.timers = append(r.timers, t)
	return reconcile.RunResult{Logs: []string{"timer done"}}, r.err
}

// downStore is a quarantine whose writes fail transiently.
type downStore struct{ *state.Memory }

func (downStore) Put(context.Context, string, []byte, string, map[string]string) (string, error) {
	return "", transient.Mark(errors.New("storage: 503"))
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

func newRouter(d server.Dispatcher) (http.Handler, *bytes.Buffer, *state.Memory) {
	var logs bytes.Buffer
	q := state.NewMemory()
	return server.New(server.Options{Dispatcher: d, Quarantine: q, Logger: logging.New(&logs, slog.LevelDebug)}), &logs, q
}

// TestRoutes: readiness, unknown functions, the forwarded Status page.
func TestRoutes(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "status page") })
	with := server.New(server.Options{Dispatcher: &recorder{}, Status: page})
	without, _, _ := newRouter(&recorder{})
	for _, tc := range []struct {
		h            http.Handler
		method, path string
		code         int
	}{
		{with, http.MethodGet, "/", 200}, {with, http.MethodHead, "/", 200}, {with, http.MethodPost, "/NoSuchFunction", 404},
		{with, http.MethodGet, "/api/Status", 200}, {without, http.MethodGet, "/api/Status", 503},
	} {
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}")))
		if rec.Code != tc.code || tc.path == "/api/Status" && tc.code == 200 && rec.Body.String() != "status page" {
			t.Errorf("%s %s = %d %q, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.code)
		}
	}
}

func TestEventInvocations(t *testing.T) {
	host := func(name string) []byte { return fixture(t, name) }
	wrapped := func(name string) []byte { return hostBody(t, fixture(t, name)) }
	raw := func(b string) []byte { return []byte(b) }
	cases := []struct {
		name, function string
		body           []byte
		kinds          []event.Kind // nil: the dispatcher must not be called
		quarantined    bool
	}{
		{"host fixture string-wrapped", server.PrivateLinkEvents, host("host-eventgrid-string-wrapped.json"), []event.Kind{event.ConnectionChanged}, false},
		{"host fixture double-wrapped", server.PrivateLinkEvents, host("host-eventgrid-double-wrapped.json"), []event.Kind{event.KeyNearExpiry}, false},
		{"host fixture object", server.PrivateLinkEvents, host("host-eventgrid-object.json"), []event.Kind{event.VaultChanged}, false},
		{"host fixture array", server.PrivateLinkEvents, host("host-eventgrid-array.json"), []event.Kind{event.ConnectionChanged}, false},
		{"host fixture cloudevents", server.KeyVaultEvents, host("host-cloudevents-string-wrapped.json"), []event.Kind{event.KeyNewVersion}, false},
		{"new key version", server.KeyVaultEvents, wrapped("keyvault-key-new-version-created.json"), []event.Kind{event.KeyNewVersion}, false},
		{"access policy changed", server.KeyVaultEvents, wrapped("keyvault-vault-access-policy-changed.json"), []event.Kind{event.AccessPolicyChanged}, false},
		{"role assignment deleted", server.PrivateLinkEvents, wrapped("arm-role-assignment-delete-rg-scope.json"), []event.Kind{event.RoleAssignmentDeleted}, false},
		{"cloudevents vault delete", server.PrivateLinkEvents, wrapped("arm-vault-delete.cloudevents.json"), []event.Kind{event.VaultChanged}, false},
		{"unrelated secret event", server.KeyVaultEvents, wrapped("keyvault-secret-new-version-created.json"), nil, false},
		{"unrelated storage write", server.PrivateLinkEvents, wrapped("arm-storage-write-unrelated.json"), nil, false},
		// Bad input: 200, kept aside, never retried (each was 400 or 413 before).
		{"not json", server.PrivateLinkEvents, raw("{not json"), nil, true},
		{"no event binding", server.PrivateLinkEvents, raw(`{"Data":{"other":{}},"Metadata":{}}`), nil, true},
		{"truncated event", server.PrivateLinkEvents, hostBody(t, []byte(`{"id":"x"}`))[:40], nil, true},
		{"event without type", server.PrivateLinkEvents, wrapped("malformed-missing-type.json"), nil, true},
		{"malformed related data", server.PrivateLinkEvents, wrapped("malformed-arm-pec-write-not-a-vault.json"), nil, true},
		{"empty array", server.PrivateLinkEvents, raw(`{"Data":{"event":[]},"Metadata":{}}`), nil, true},
		{"bad items among good ones", server.PrivateLinkEvents, hostBody(t, []byte(`[`+string(host("arm-pec-delete.json"))+`,{"eventType":"x"},`+
			string(host("malformed-arm-pec-write-not-a-vault.json"))+`]`)), []event.Kind{event.ConnectionChanged}, true},
		{"oversized body", server.KeyVaultEvents, raw(`{"Data":{"event":"` + strings.Repeat("a", event.MaxInvocationSize) + `"}}`), nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &recorder{}
			h, logs, q := newRouter(d)
			code, rep, raw := post(t, h, "/"+tc.function, tc.body)
			if code != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %.300s; logs %.300s", code, raw, logs)
			}
			keys, _ := q.List(t.Context(), server.QuarantinePrefix)
			warnings := strings.Count(logs.String(), `"level":"WARN"`)
			if tc.quarantined != (len(keys) == 1) || tc.quarantined != (warnings == 1) || len(keys) > 1 || warnings > 1 {
				t.Fatalf("quarantined %v, warnings %d; want %v", keys, warnings, tc.quarantined)
			}
			if tc.quarantined {
				checkQuarantine(t, q, keys[0].Key, logs.String(), rep)
			}
			var got []event.Kind
			for _, ts := range d.events {
				for _, tr := range ts {
					got = append(got, tr.Kind)
				}
			}
			if (tc.kinds == nil) != (len(d.events) == 0) || fmt.Sprint(got) != fmt.Sprint(tc.kinds) {
				t.Fatalf("dispatched %v, want %v", got, tc.kinds)
			}
			if tc.kinds != nil && !strings.Contains(logs.String(), `"function":"`+tc.function+`","kind"`) || !strings.Contains(logs.String(), `"invocationId":"inv-42"`) {
				t.Errorf("log lacks the function or the invocation id: %s", logs)
			}
		})
	}
}

// checkQuarantine: the document names the invocation, is bounded, and the
// warning line and the host's Logs say why.
func checkQuarantine(t *testing.T, q *state.Memory, key, logs string, rep hostReply) {
	t.Helper()
	b, _, err := q.Get(t.Context(), key)
	var doc struct {
		Function, Error, Payload string
		Bytes                    int
	}
	if err != nil || json.Unmarshal(b, &doc) != nil || !strings.Contains(key, "inv-42") || doc.Error == "" || doc.Bytes == 0 || doc.Function == "" {
		t.Fatalf("quarantine %s: %s, %v", key, b, err)
	}
	if len(b) > 70<<10 || len(logs) > 4<<10 || !strings.Contains(strings.Join(rep.Logs, "\n"), "bad input kept aside") {
		t.Errorf("quarantine %d bytes, log %d bytes, host logs %q", len(b), len(logs), rep.Logs)
	}
}

func TestTimerInvocation(t *testing.T) {
	for _, name := range []string{"host-timer.json", "host-timer-null-status.json", "host-timer-past-due.json"} {
		t.Run(name, func(t *testing.T) {
			d := &recorder{}
			h, _, _ := newRouter(d)
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
	h, _, q := newRouter(d)
	code, _, _ := post(t, h, "/Reconcile", []byte(`{"Data":{"timer":"yesterday"}}`))
	if keys, _ := q.List(t.Context(), ""); code != 200 || len(d.timers) != 0 || len(keys) != 1 {
		t.Errorf("malformed timer: code %d, timers %d, quarantined %v", code, len(d.timers), keys)
	}
}

// TestRetryOrNot: 500 only when a retry may help (a transient dispatch
// error, a quarantine that could not be written, a panic); 200 otherwise, with
// the error in the host's Logs.
func TestRetryOrNot(t *testing.T) {
	good := hostBody(t, fixture(t, "arm-pec-write-rejected.json"))
	for _, tc := range []struct {
		name   string
		d      *recorder
		q      state.Store
		body   []byte
		status int
		log    string
	}{
		{"ok", &recorder{}, nil, good, 200, "reconciled"},
		{"transient", &recorder{err: transient.Mark(errors.New("atlas: 503"))}, nil, good, 500, "atlas: 503"},
		{"permanent", &recorder{err: errors.New("no such project")}, nil, good, 200, "no such project"},
		{"quarantine down", &recorder{}, downStore{state.NewMemory()}, []byte("{not json"), 500, "bad input kept aside"},
		{"panic", &recorder{panic: true}, nil, good, 500, "internal error"},
	} {
		h := server.New(server.Options{Dispatcher: tc.d, Quarantine: tc.q})
		code, rep, _ := post(t, h, "/PrivateLinkEvents", tc.body)
		if code != tc.status || !strings.Contains(strings.Join(rep.Logs, "\n"), tc.log) {
			t.Errorf("%s: status %d, logs %q; want %d, %q", tc.name, code, rep.Logs, tc.status, tc.log)
		}
		if tc.name == "ok" && rep.ReturnValue == nil {
			t.Errorf("outcome not passed through: %+v", rep)
		}
	}
}

func TestServeStopsGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	h, _, _ := newRouter(&recorder{})
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
