// Package server speaks the Azure Functions custom handler contract: the host
// probes GET / for readiness, POSTs each non-HTTP invocation to
// /{FunctionName} as {"Data":…,"Metadata":…} and expects
// {"Outputs":{},"Logs":[…],"ReturnValue":…}; HTTP functions are forwarded at
// their own path (/api/Status). The server decodes and classifies events and
// hands them to a Dispatcher; it never decides anything itself.
package server

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
	"runtime/debug"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
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

// MaxBody is the largest invocation body accepted; larger ones get 413.
const MaxBody = 1 << 20

// Outcome is what a dispatch reports back to the host: log lines (which the
// host shows with the invocation) and an optional return value.
type Outcome struct {
	Logs        []string
	ReturnValue any
}

// Dispatcher acts on classified invocations. An error whose class is
// transient (see Transient) fails the invocation so the platform retries it;
// any other error is logged and answered with 200, because retrying cannot
// help.
type Dispatcher interface {
	// Events handles the related triggers of one Event Grid invocation.
	Events(ctx context.Context, function string, triggers []event.Trigger) (Outcome, error)
	// Timer handles one timer invocation.
	Timer(ctx context.Context, t event.Timer) (Outcome, error)
}

// Transient reports whether err asks for a retry: it or an error it wraps
// has a method Transient() bool that returns true.
func Transient(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}

// Options configure the router.
type Options struct {
	Dispatcher Dispatcher
	// Status serves GET /api/Status; nil answers 503.
	Status http.Handler
	Logger *slog.Logger
}

// New returns the handler's router.
func New(o Options) http.Handler {
	s := &router{d: o.Dispatcher, status: o.Status, log: o.Logger}
	if s.log == nil {
		s.log = logging.Discard()
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

type router struct {
	d      Dispatcher
	status http.Handler
	log    *slog.Logger
}

func ready(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
}

// guard attaches the invocation id to the context, limits the body and turns
// a panic into a 500 so that none reaches the host.
func (s *router) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if id := r.Header.Get("X-Azure-Functions-InvocationId"); id != "" {
			ctx = logging.With(ctx, slog.String("invocationId", id))
		}
		r = r.WithContext(ctx)
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(ctx, "panic in handler", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				reply(w, http.StatusInternalServerError, []string{"internal error"}, nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *router) invocation(w http.ResponseWriter, r *http.Request) (event.Invocation, bool) {
	body, err := readBody(r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.log.WarnContext(r.Context(), "invocation body too large", "path", r.URL.Path, "limit", MaxBody)
			reply(w, http.StatusRequestEntityTooLarge, []string{fmt.Sprintf("body larger than %d bytes", MaxBody)}, nil)
			return event.Invocation{}, false
		}
		s.log.WarnContext(r.Context(), "reading invocation body failed", "path", r.URL.Path, "error", err.Error())
		reply(w, http.StatusBadRequest, []string{"cannot read body"}, nil)
		return event.Invocation{}, false
	}
	inv, err := event.DecodeInvocation(body)
	if err != nil {
		s.log.WarnContext(r.Context(), "undecodable invocation", "path", r.URL.Path, "error", err.Error())
		reply(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return event.Invocation{}, false
	}
	return inv, true
}

// readBody reads the (already size-limited) body in one allocation when the
// request declares its length, instead of io.ReadAll's repeated growth.
func readBody(r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= MaxBody {
		var buf bytes.Buffer
		buf.Grow(int(n) + bytes.MinRead)
		_, err := buf.ReadFrom(r.Body)
		return buf.Bytes(), err
	}
	return io.ReadAll(r.Body)
}

func (s *router) events(function string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		inv, ok := s.invocation(w, r)
		if !ok {
			return
		}
		raw, ok := inv.Data[eventBinding]
		if !ok {
			s.log.WarnContext(ctx, "invocation without event binding", "function", function)
			reply(w, http.StatusBadRequest, []string{`Data has no "event" binding`}, nil)
			return
		}
		events, err := event.Decode(raw)
		if err != nil {
			s.log.WarnContext(ctx, "undecodable event", "function", function, "error", err.Error())
			reply(w, http.StatusBadRequest, []string{"undecodable event: " + err.Error()}, nil)
			return
		}
		var triggers []event.Trigger
		var logs []string
		for _, e := range events {
			ectx := logging.With(ctx, slog.String("eventId", e.ID), slog.String("eventType", e.Type))
			t, err := event.Classify(e)
			if err != nil {
				s.log.WarnContext(ectx, "malformed event data", "function", function, "error", err.Error())
				reply(w, http.StatusBadRequest, []string{"malformed event " + e.ID + ": " + err.Error()}, nil)
				return
			}
			if t.Kind == event.Unrelated {
				s.log.DebugContext(ectx, "unrelated event ignored", "function", function, "subject", e.Subject)
				logs = append(logs, "unrelated event "+e.ID+" ("+e.Type+") ignored")
				continue
			}
			s.log.InfoContext(ectx, "event classified", "function", function, "kind", string(t.Kind),
				"vault", t.Vault.String(), "scope", t.Scope, "object", t.Object, "actor", t.Actor)
			triggers = append(triggers, t)
		}
		if len(triggers) == 0 {
			reply(w, http.StatusOK, logs, nil)
			return
		}
		out, err := s.d.Events(ctx, function, triggers)
		s.finish(w, r, function, append(logs, out.Logs...), out.ReturnValue, err)
	}
}

func (s *router) timer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	inv, ok := s.invocation(w, r)
	if !ok {
		return
	}
	raw, ok := inv.Data[timerBinding]
	if !ok {
		s.log.WarnContext(ctx, "invocation without timer binding")
		reply(w, http.StatusBadRequest, []string{`Data has no "timer" binding`}, nil)
		return
	}
	t, err := event.DecodeTimer(raw)
	if err != nil {
		s.log.WarnContext(ctx, "undecodable timer", "error", err.Error())
		reply(w, http.StatusBadRequest, []string{"undecodable timer: " + err.Error()}, nil)
		return
	}
	out, err := s.d.Timer(ctx, t)
	s.finish(w, r, Reconcile, out.Logs, out.ReturnValue, err)
}

// finish logs a dispatch error once and answers the host: 500 for transient
// errors (the platform retries), 200 otherwise.
func (s *router) finish(w http.ResponseWriter, r *http.Request, function string, logs []string, ret any, err error) {
	switch {
	case err == nil:
		reply(w, http.StatusOK, logs, ret)
	case Transient(err):
		s.log.WarnContext(r.Context(), "invocation failed; the platform will retry", "function", function, "error", err.Error())
		reply(w, http.StatusInternalServerError, append(logs, "transient failure: "+err.Error()), ret)
	default:
		s.log.ErrorContext(r.Context(), "invocation failed", "function", function, "error", err.Error())
		reply(w, http.StatusOK, append(logs, "failed: "+err.Error()), ret)
	}
}

func (s *router) statusPage(w http.ResponseWriter, r *http.Request) {
	if s.status == nil {
		http.Error(w, "status is not available", http.StatusServiceUnavailable)
		return
	}
	s.status.ServeHTTP(w, r)
}

// response is the custom handler's answer to a non-HTTP invocation.
type response struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// emptyReply is the answer with no logs and no return value.
var emptyReply = []byte(`{"Outputs":{},"Logs":[],"ReturnValue":null}`)

func reply(w http.ResponseWriter, status int, logs []string, ret any) {
	if len(logs) == 0 && ret == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(emptyReply)
		return
	}
	if logs == nil {
		logs = []string{}
	}
	b, err := json.Marshal(response{Outputs: map[string]any{}, Logs: logs, ReturnValue: ret})
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"Outputs":{},"Logs":["cannot encode the response"],"ReturnValue":null}`)
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
