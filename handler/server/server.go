// Package server speaks the Azure Functions custom handler contract: the host
// probes GET / for readiness, POSTs each non-HTTP invocation to
// /{FunctionName} as {"Data":…,"Metadata":…} and expects
// {"Outputs":{},"Logs":[…],"ReturnValue":…}; HTTP functions are forwarded at
// their own path (/api/Status). The server decodes and classifies events and
// hands them to a Dispatcher; it never decides anything itself.
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
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
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

// Transient reports whether err asks for a retry (see package transient).
func Transient(err error) bool { return transient.Is(err) }

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

// guard attaches the invocation id to the context and turns a panic into a
// 500 so that none reaches the host. Invocation bodies are limited where they
// are read (readBody).
func (s *router) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if id := r.Header.Get("X-Azure-Functions-InvocationId"); id != "" {
			ctx = logging.With(ctx, slog.String("invocationId", id))
			r = r.WithContext(ctx)
		}
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

// invocation reads (into buf's capacity) and decodes the invocation body, or
// answers the host and returns !ok. The invocation aliases the body returned.
func (s *router) invocation(w http.ResponseWriter, r *http.Request, buf []byte) (event.Invocation, []byte, bool) {
	body, err := readBody(r, buf)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			s.log.WarnContext(r.Context(), "invocation body too large", "path", r.URL.Path, "limit", MaxBody)
			reply(w, http.StatusRequestEntityTooLarge, []string{fmt.Sprintf("body larger than %d bytes", MaxBody)}, nil)
			return event.Invocation{}, nil, false
		}
		s.log.WarnContext(r.Context(), "reading invocation body failed", "path", r.URL.Path, "error", err.Error())
		reply(w, http.StatusBadRequest, []string{"cannot read body"}, nil)
		return event.Invocation{}, nil, false
	}
	inv, err := event.DecodeInvocation(body)
	if err != nil {
		s.log.WarnContext(r.Context(), "undecodable invocation", "path", r.URL.Path, "error", err.Error())
		reply(w, http.StatusBadRequest, []string{err.Error()}, nil)
		return event.Invocation{}, nil, false
	}
	return inv, body, true
}

var errTooLarge = errors.New("body too large")

// readBody reads the body into buf (reusing its capacity) and fails with
// errTooLarge, without reading further, once it exceeds MaxBody. When the
// request declares its length, one read fills a buffer of exactly that size.
func readBody(r *http.Request, buf []byte) ([]byte, error) {
	n := r.ContentLength
	if n > MaxBody {
		return nil, errTooLarge
	}
	if n < 0 {
		n = 4 << 10 // unknown: grow as needed
	}
	if int64(cap(buf)) < n+1 {
		buf = make([]byte, 0, n+1) // +1: room to see EOF without growing
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if len(buf) > MaxBody {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// bodyPool recycles invocation body buffers. Nothing that outlives a request
// aliases its body: triggers hold strings, which are copies.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody is the largest buffer kept for reuse.
const maxPooledBody = 64 << 10

func getBody() *[]byte { return bodyPool.Get().(*[]byte) }

func putBody(p *[]byte, b []byte) {
	if cap(b) <= maxPooledBody {
		*p = b[:0]
		bodyPool.Put(p)
	}
}

func (s *router) events(function string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		buf := getBody()
		inv, body, ok := s.invocation(w, r, *buf)
		if !ok {
			return
		}
		defer putBody(buf, body)
		if _, ok := inv.Data[eventBinding]; !ok {
			s.log.WarnContext(ctx, "invocation without event binding", "function", function)
			reply(w, http.StatusBadRequest, []string{`Data has no "event" binding`}, nil)
			return
		}
		events, err := inv.Events(eventBinding)
		if err != nil {
			s.log.WarnContext(ctx, "undecodable event", "function", function, "error", err.Error())
			reply(w, http.StatusBadRequest, []string{"undecodable event: " + err.Error()}, nil)
			return
		}
		var triggers []event.Trigger
		var logs []string
		for _, e := range events {
			t, err := event.Classify(e)
			if err != nil {
				s.log.LogAttrs(eventContext(ctx, e), slog.LevelWarn, "malformed event data",
					slog.String("function", function), slog.String("error", err.Error()))
				reply(w, http.StatusBadRequest, []string{"malformed event " + e.ID + ": " + err.Error()}, nil)
				return
			}
			if t.Kind == event.Unrelated {
				if s.log.Enabled(ctx, slog.LevelDebug) {
					s.log.LogAttrs(eventContext(ctx, e), slog.LevelDebug, "unrelated event ignored",
						slog.String("function", function), slog.String("subject", e.Subject))
				}
				logs = append(logs, "unrelated event "+e.ID+" ("+e.Type+") ignored")
				continue
			}
			if s.log.Enabled(ctx, slog.LevelInfo) {
				// Scope is the vault's ID for every kind but a role
				// assignment's (see event.Trigger): no need to build it again.
				vaultID := t.Scope
				if t.Kind == event.RoleAssignmentDeleted {
					vaultID = t.Vault.String()
				}
				s.log.LogAttrs(eventContext(ctx, e), slog.LevelInfo, "event classified",
					slog.String("function", function), slog.String("kind", string(t.Kind)),
					slog.String("vault", vaultID), slog.String("scope", t.Scope),
					slog.String("object", t.Object), slog.String("actor", t.Actor))
			}
			if triggers == nil {
				triggers = make([]event.Trigger, 0, len(events))
			}
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

// eventContext attaches the event's id and type to the log records of ctx.
func eventContext(ctx context.Context, e event.Event) context.Context {
	return logging.With(ctx, slog.String("eventId", e.ID), slog.String("eventType", e.Type))
}

func (s *router) timer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	inv, _, ok := s.invocation(w, r, nil)
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
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	s.status.ServeHTTP(w, r)
}

// encodeReply encodes the custom handler's answer to a non-HTTP invocation,
// {"Outputs":{},"Logs":[…],"ReturnValue":…}, exactly as json.Marshal encodes
// the equivalent struct, without reflection for the logs.
func encodeReply(logs []string, ret any) ([]byte, error) {
	n := len(`{"Outputs":{},"Logs":[],"ReturnValue":null}`)
	for _, l := range logs {
		n += len(l) + 3
	}
	b := make([]byte, 0, n)
	b = append(b, `{"Outputs":{},"Logs":[`...)
	for i, l := range logs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, l)
	}
	b = append(b, `],"ReturnValue":`...)
	if ret == nil {
		b = append(b, "null"...)
	} else {
		v, err := json.Marshal(ret)
		if err != nil {
			return nil, err
		}
		b = append(b, v...)
	}
	return append(b, '}'), nil
}

// appendString appends s as a JSON string, as json.Marshal writes it.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			// Escapes, HTML-safe escapes, UTF-8 checks: leave them to
			// encoding/json.
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
	b, err := encodeReply(logs, ret)
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
