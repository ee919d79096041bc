// Package server speaks the Azure Functions custom handler contract: the host
// probes GET / for readiness, POSTs each non-HTTP invocation to
// /{FunctionName} as {"Data":…,"Metadata":…} and expects
// {"Outputs":{},"Logs":[…],"ReturnValue":…}; HTTP functions are forwarded at
// their own path (/api/Status). The server decodes and classifies events and
// hands them to a Dispatcher; it decides nothing itself.
//
// The server is the boundary and logs each failure once. Bad input
// (undecodable, oversized, unknown-shaped) is answered 200, because a retry
// cannot make it decodable and events are only hints: it gets one warning
// line and a quarantine document. Only a transient failure (transient.Is) is
// answered 500, so that the platform retries.
package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// Function names, as in functions/*/function.json, and the Status page's path.
const (
	KeyVaultEvents    = "KeyVaultEvents"
	PrivateLinkEvents = "PrivateLinkEvents"
	Reconcile         = "Reconcile"
	StatusPath        = "/api/Status"
)

// QuarantinePrefix starts the key of every document in which the server keeps
// bad input aside (quarantine/invocations/<time>-<invocationId>); the Status
// page counts them. A document keeps at most maxQuarantined bytes of payload.
const (
	QuarantinePrefix = "quarantine/invocations/"
	maxQuarantined   = 64 << 10
)

const invocationHeader = "X-Azure-Functions-InvocationId"

// Dispatcher acts on classified invocations (a *reconcile.Reconciler). An
// error marked transient fails the invocation so that the platform retries
// it; any other error is logged and answered 200. The result's Logs go to the
// host; the result itself is the ReturnValue when it has reports.
type Dispatcher interface {
	Events(ctx context.Context, triggers []event.Trigger) (reconcile.RunResult, error)
	Timer(ctx context.Context, t event.Timer) (reconcile.RunResult, error)
}

// Options configure the router.
type Options struct {
	Dispatcher Dispatcher
	Status     http.Handler // serves GET /api/Status; nil answers 503
	Quarantine state.Store  // keeps bad input under QuarantinePrefix; nil only logs it
	Logger     *slog.Logger
	Now        func() time.Time // default time.Now
}

// New returns the handler's router.
func New(o Options) http.Handler {
	s := &router{Options: o, mux: http.NewServeMux()}
	s.Logger = cmp.Or(s.Logger, logging.Discard())
	if s.Now == nil {
		s.Now = time.Now
	}
	s.mux.HandleFunc("GET /{$}", func(http.ResponseWriter, *http.Request) {}) // readiness; HEAD too
	s.mux.HandleFunc("POST /"+KeyVaultEvents, s.events)
	s.mux.HandleFunc("POST /"+PrivateLinkEvents, s.events)
	s.mux.HandleFunc("POST /"+Reconcile, s.timer)
	s.mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, r *http.Request) {
		if s.Status == nil {
			http.Error(w, "status is not available", http.StatusServiceUnavailable)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		s.Status.ServeHTTP(w, r)
	})
	return s
}

type router struct {
	Options
	mux *http.ServeMux
}

// ServeHTTP attaches the invocation id to the context and turns a panic into
// a 500 so that none reaches the host.
func (s *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if id := r.Header.Get(invocationHeader); id != "" {
		r = r.WithContext(logging.With(r.Context(), slog.String("invocationId", alert.Scrub(id))))
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.Logger.ErrorContext(r.Context(), "panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			reply(w, http.StatusInternalServerError, []string{"internal error"}, nil)
		}
	}()
	s.mux.ServeHTTP(w, r)
}

func function(r *http.Request) string { return strings.TrimPrefix(r.URL.Path, "/") }

func (s *router) events(w http.ResponseWriter, r *http.Request) {
	body, raw, ok := s.read(w, r, "event")
	if !ok {
		return
	}
	events, bad := event.Decode(raw)
	var logs []string
	var triggers []event.Trigger
	for _, e := range events {
		t, err := event.Classify(e)
		ctx := logging.With(r.Context(), slog.String("eventId", t.EventID), slog.String("eventType", t.Type))
		switch {
		case err != nil:
			bad = errors.Join(bad, err)
		case t.Kind == event.Unrelated:
			s.Logger.DebugContext(ctx, "unrelated event ignored", "function", function(r))
			logs = append(logs, "unrelated event "+t.EventID+" ("+t.Type+") ignored")
		default:
			s.Logger.InfoContext(ctx, "event classified", "function", function(r), "kind", string(t.Kind),
				"scope", t.Scope, "object", t.Object, "actor", t.Actor)
			triggers = append(triggers, t)
		}
	}
	if bad != nil {
		line, err := s.keepAside(r, body, bad)
		if logs = append(logs, line); transient.Is(err) {
			reply(w, http.StatusInternalServerError, logs, nil)
			return
		}
	}
	if len(triggers) == 0 {
		reply(w, http.StatusOK, logs, nil)
		return
	}
	res, err := s.Dispatcher.Events(r.Context(), triggers)
	s.finish(w, r, append(logs, res.Logs...), res, err)
}

func (s *router) timer(w http.ResponseWriter, r *http.Request) {
	body, raw, ok := s.read(w, r, "timer")
	if !ok {
		return
	}
	t, err := event.DecodeTimer(raw)
	if err != nil {
		line, err := s.keepAside(r, body, err)
		reply(w, status(err), []string{line}, nil)
		return
	}
	res, err := s.Dispatcher.Timer(r.Context(), t)
	s.finish(w, r, res.Logs, res, err)
}

// read reads the invocation body and returns it with the value of binding.
// When it cannot, it has answered the host and returns !ok.
func (s *router) read(w http.ResponseWriter, r *http.Request, binding string) (body, raw []byte, ok bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, event.MaxInvocationSize+1))
	if err == nil && len(body) > event.MaxInvocationSize {
		// Drain the rest (bounded by ReadTimeout) so that the host receives
		// the answer instead of a connection reset, and does not retry.
		_, err = io.Copy(io.Discard, r.Body)
	}
	if err != nil { // the host hung up or the read timed out: a retry may succeed
		s.Logger.WarnContext(r.Context(), "reading invocation body failed", "function", function(r), "error", err.Error())
		reply(w, http.StatusInternalServerError, []string{"cannot read body"}, nil)
		return nil, nil, false
	}
	if raw, err = event.DecodeInvocation(body, binding); err != nil {
		line, err := s.keepAside(r, body, err)
		reply(w, status(err), []string{line}, nil)
		return nil, nil, false
	}
	return body, raw, true
}

// keepAside logs bad input once and keeps it, bounded and scrubbed, in a new
// quarantine document. It returns the line for the host's Logs and the
// error of the quarantine write: when that is transient nothing may be lost,
// so the caller answers 500 and the platform retries.
func (s *router) keepAside(r *http.Request, body []byte, cause error) (string, error) {
	msg, key := alert.Scrub(cause.Error()), ""
	var err error
	if s.Quarantine != nil {
		now := s.Now().UTC()
		id := cmp.Or(alert.ScrubN(r.Header.Get(invocationHeader), 64), fmt.Sprintf("%x", now.UnixNano()))
		key = QuarantinePrefix + now.Format("20060102T150405.000Z") + "-" + strings.ReplaceAll(id, "/", "_")
		doc, _ := json.Marshal(map[string]any{"time": now, "function": function(r), "error": msg, "bytes": len(body),
			"payload": alert.ScrubN(string(body), maxQuarantined)})
		if _, err = s.Quarantine.Put(r.Context(), key, doc, "", nil); errors.Is(err, state.ErrConflict) {
			err = nil
		}
	}
	attrs := []any{"function", function(r), "bytes", len(body), "error", msg, "quarantine", key}
	if err != nil {
		attrs = append(attrs, "quarantineError", alert.Scrub(err.Error()))
	}
	s.Logger.WarnContext(r.Context(), "bad input kept aside", attrs...)
	return "bad input kept aside: " + msg, err
}

// finish logs a dispatch error once and answers the host.
func (s *router) finish(w http.ResponseWriter, r *http.Request, logs []string, res reconcile.RunResult, err error) {
	var ret any
	if res.Reports != nil {
		ret = res
	}
	switch {
	case transient.Is(err):
		s.Logger.WarnContext(r.Context(), "invocation failed; the platform will retry", "function", function(r), "error", err.Error())
		logs = append(logs, "transient failure: "+err.Error())
	case err != nil:
		s.Logger.ErrorContext(r.Context(), "invocation failed", "function", function(r), "error", err.Error())
		logs = append(logs, "failed: "+err.Error())
	}
	reply(w, status(err), logs, ret)
}

// status is 500 when a retry may help (transient.Is), else 200.
func status(err error) int {
	if transient.Is(err) {
		return http.StatusInternalServerError
	}
	return http.StatusOK
}

// reply answers a non-HTTP invocation with
// {"Outputs":{},"Logs":[…],"ReturnValue":…}.
func reply(w http.ResponseWriter, status int, logs []string, ret any) {
	b, err := json.Marshal(map[string]any{"Outputs": struct{}{}, "Logs": append([]string{}, logs...), "ReturnValue": ret})
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"Outputs":{},"Logs":["cannot encode the response"],"ReturnValue":null}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// Serve serves h on ln until ctx is done, then shuts down gracefully, giving
// in-flight invocations up to grace to finish. Timeouts guard against slow
// clients; WriteTimeout leaves room for a long reconcile.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      15 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
