// Package server speaks the Azure Functions custom handler contract: the host
// probes GET / for readiness, POSTs each non-HTTP invocation to
// /{FunctionName} as {"Data":…,"Metadata":…} and expects
// {"Outputs":{},"Logs":[…],"ReturnValue":…}; HTTP functions are forwarded at
// their own path (/api/Status). The server decodes and classifies events and
// hands them to a Dispatcher; it never decides anything itself.
//
// The server is the boundary: it logs each failure once. Bad input
// (undecodable, oversized or unknown-shaped) is answered 200, because a retry
// cannot make it decodable and events are only hints; it is logged with one
// warning line and kept in a quarantine document. Only a transient failure
// (transient.Is) is answered 500, so that the platform retries.
package server

import (
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
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// Function names and binding names, as in functions/*/function.json.
const (
	KeyVaultEvents    = "KeyVaultEvents"
	PrivateLinkEvents = "PrivateLinkEvents"
	Reconcile         = "Reconcile"
	StatusPath        = "/api/Status"

	eventBinding = "event"
	timerBinding = "timer"
)

// QuarantinePrefix starts the key of every document in which the server
// keeps bad input aside (quarantine/invocations/<time>-<invocationId>); the
// Status page counts them.
const QuarantinePrefix = "quarantine/invocations/"

// maxQuarantined bounds the payload kept in one quarantine document.
const maxQuarantined = 64 << 10

// Outcome is what a dispatch reports back to the host: log lines (which the
// host shows with the invocation) and an optional return value.
type Outcome struct {
	Logs        []string
	ReturnValue any
}

// Dispatcher acts on classified invocations. An error marked transient
// (transient.Is) fails the invocation so the platform retries it; any other
// error is logged and answered with 200, because retrying cannot help.
type Dispatcher interface {
	// Events handles the related triggers of one Event Grid invocation.
	Events(ctx context.Context, function string, triggers []event.Trigger) (Outcome, error)
	// Timer handles one timer invocation.
	Timer(ctx context.Context, t event.Timer) (Outcome, error)
}

// Options configure the router.
type Options struct {
	Dispatcher Dispatcher
	// Status serves GET /api/Status; nil answers 503.
	Status http.Handler
	// Quarantine keeps bad input under QuarantinePrefix; nil only logs it.
	Quarantine state.Store
	Logger     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// New returns the handler's router.
func New(o Options) http.Handler {
	s := &router{Options: o}
	if s.Logger == nil {
		s.Logger = logging.Discard()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", ready)
	mux.HandleFunc("HEAD /{$}", ready)
	mux.HandleFunc("POST /"+KeyVaultEvents, s.events(KeyVaultEvents))
	mux.HandleFunc("POST /"+PrivateLinkEvents, s.events(PrivateLinkEvents))
	mux.HandleFunc("POST /"+Reconcile, s.timer)
	mux.HandleFunc("GET "+StatusPath, s.statusPage)
	return s.guard(mux)
}

type router struct{ Options }

func ready(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
}

// guard attaches the invocation id to the context and turns a panic into a
// 500 so that none reaches the host.
func (s *router) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if id := r.Header.Get("X-Azure-Functions-InvocationId"); id != "" {
			ctx = logging.With(ctx, slog.String("invocationId", alert.Scrub(id)))
			r = r.WithContext(ctx)
		}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.ErrorContext(ctx, "panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				reply(w, http.StatusInternalServerError, []string{"internal error"}, nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// binding reads the invocation body and returns the raw value of binding
// name. On failure it has answered the host and returns !ok.
func (s *router) binding(w http.ResponseWriter, r *http.Request, function, name string) (body, raw []byte, ok bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, event.MaxInvocationSize+1))
	if err == nil && len(body) > event.MaxInvocationSize {
		// Read the rest (bounded by the server's ReadTimeout) so that the host
		// receives the answer instead of a connection reset, and does not retry.
		_, err = io.Copy(io.Discard, r.Body)
	}
	if err != nil {
		// The host hung up or the read timed out: a retry may succeed.
		s.Logger.WarnContext(r.Context(), "reading invocation body failed", "function", function, "error", err.Error())
		reply(w, http.StatusInternalServerError, []string{"cannot read body"}, nil)
		return nil, nil, false
	}
	inv, err := event.DecodeInvocation(body)
	if err == nil {
		raw, err = inv.Binding(name)
	}
	if err != nil {
		s.rejectBad(w, r, function, body, err)
		return nil, nil, false
	}
	return body, raw, true
}

// badInput logs bad input once, keeps it in quarantine and returns the line
// for the host's Logs. retry is true when the quarantine could not be written
// for a transient reason: nothing may be lost, so the caller answers 500 and
// the platform retries.
func (s *router) badInput(r *http.Request, function string, body []byte, cause error) (line string, retry bool) {
	msg := alert.Scrub(cause.Error())
	key, err := s.quarantine(r, function, body, msg)
	attrs := []any{"function", function, "bytes", len(body), "error", msg, "quarantine", key}
	if err != nil {
		attrs = append(attrs, "quarantineError", alert.Scrub(err.Error()))
	}
	s.Logger.WarnContext(r.Context(), "bad input kept aside", attrs...)
	return "bad input kept aside: " + msg, transient.Is(err)
}

// rejectBad answers an invocation that was bad input as a whole.
func (s *router) rejectBad(w http.ResponseWriter, r *http.Request, function string, body []byte, cause error) {
	status := http.StatusOK
	line, retry := s.badInput(r, function, body, cause)
	if retry {
		status = http.StatusInternalServerError
	}
	reply(w, status, []string{line}, nil)
}

// quarantine writes the bounded, scrubbed payload to a new document and
// returns its key ("" without a store).
func (s *router) quarantine(r *http.Request, function string, body []byte, msg string) (string, error) {
	if s.Quarantine == nil {
		return "", nil
	}
	now := s.Now().UTC()
	id := alert.ScrubN(r.Header.Get("X-Azure-Functions-InvocationId"), 64)
	if id == "" {
		id = fmt.Sprintf("%x", now.UnixNano())
	}
	key := QuarantinePrefix + now.Format("20060102T150405.000Z") + "-" + strings.ReplaceAll(id, "/", "_")
	doc, err := json.Marshal(map[string]any{
		"time": now, "function": function, "error": msg, "bytes": len(body),
		"payload": alert.ScrubN(string(body), maxQuarantined),
	})
	if err != nil {
		return key, err
	}
	if _, err := s.Quarantine.Put(r.Context(), key, doc, "", nil); err != nil && !errors.Is(err, state.ErrConflict) {
		return key, err
	}
	return key, nil
}

func (s *router) events(function string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		body, raw, ok := s.binding(w, r, function, eventBinding)
		if !ok {
			return
		}
		var logs []string
		events, err := event.Decode(raw)
		var triggers []event.Trigger
		for _, e := range events {
			t, cerr := event.Classify(e)
			ectx := logging.With(ctx, slog.String("eventId", t.EventID), slog.String("eventType", t.Type))
			switch {
			case cerr != nil:
				err = errors.Join(err, cerr)
			case t.Kind == event.Unrelated:
				s.Logger.DebugContext(ectx, "unrelated event ignored", "function", function)
				logs = append(logs, "unrelated event "+t.EventID+" ("+t.Type+") ignored")
			default:
				s.Logger.InfoContext(ectx, "event classified", "function", function, "kind", string(t.Kind),
					"scope", t.Scope, "object", t.Object, "actor", t.Actor)
				triggers = append(triggers, t)
			}
		}
		if err != nil {
			line, retry := s.badInput(r, function, body, err)
			if logs = append(logs, line); retry {
				reply(w, http.StatusInternalServerError, logs, nil)
				return
			}
		}
		if len(triggers) == 0 {
			reply(w, http.StatusOK, logs, nil)
			return
		}
		out, err := s.Dispatcher.Events(ctx, function, triggers)
		s.finish(w, r, function, append(logs, out.Logs...), out.ReturnValue, err)
	}
}

func (s *router) timer(w http.ResponseWriter, r *http.Request) {
	body, raw, ok := s.binding(w, r, Reconcile, timerBinding)
	if !ok {
		return
	}
	t, err := event.DecodeTimer(raw)
	if err != nil {
		s.rejectBad(w, r, Reconcile, body, err)
		return
	}
	out, err := s.Dispatcher.Timer(r.Context(), t)
	s.finish(w, r, Reconcile, out.Logs, out.ReturnValue, err)
}

// finish logs a dispatch error once and answers the host: 500 for transient
// errors (the platform retries), 200 otherwise.
func (s *router) finish(w http.ResponseWriter, r *http.Request, function string, logs []string, ret any, err error) {
	switch {
	case err == nil:
		reply(w, http.StatusOK, logs, ret)
	case transient.Is(err):
		s.Logger.WarnContext(r.Context(), "invocation failed; the platform will retry", "function", function, "error", err.Error())
		reply(w, http.StatusInternalServerError, append(logs, "transient failure: "+err.Error()), ret)
	default:
		s.Logger.ErrorContext(r.Context(), "invocation failed", "function", function, "error", err.Error())
		reply(w, http.StatusOK, append(logs, "failed: "+err.Error()), ret)
	}
}

func (s *router) statusPage(w http.ResponseWriter, r *http.Request) {
	if s.Status == nil {
		http.Error(w, "status is not available", http.StatusServiceUnavailable)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	s.Status.ServeHTTP(w, r)
}

// reply answers a non-HTTP invocation with
// {"Outputs":{},"Logs":[…],"ReturnValue":…}.
func reply(w http.ResponseWriter, status int, logs []string, ret any) {
	if logs == nil {
		logs = []string{}
	}
	b, err := json.Marshal(struct {
		Outputs     struct{}
		Logs        []string
		ReturnValue any
	}{Logs: logs, ReturnValue: ret})
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
