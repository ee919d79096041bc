// Package status serves the Status HTTP function (GET /api/Status): what the
// guard knows of each configured project, read from the state store only —
// the last reconcile's summary and the open alerts. It never calls Atlas or
// Azure, so a page view costs one store read per project and can't be used
// to make the guard hammer the APIs.
//
// JSON is the default; a request that accepts text/html (a browser) or asks
// ?format=html gets a self-contained HTML page (inline CSS, no script, no
// external asset). ?format=json forces JSON.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/server"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
)

// Options configure the handler. Store is required.
type Options struct {
	Store state.Store
	// Projects are the configured project ids, shown in this order.
	Projects []string
	// Log receives store failures (nil discards them).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// StaleAfter flags a project whose last reconcile is older (<= 0 means
	// DefaultStaleAfter).
	StaleAfter time.Duration
	// Concurrency bounds the store reads in flight (default 8).
	Concurrency int
}

// Handler returns the Status handler over store for projects, with the
// defaults of Options.
func Handler(store state.Store, projects []string, log *slog.Logger) http.Handler {
	return New(Options{Store: store, Projects: projects, Log: log})
}

// New returns the Status handler. It answers:
//   - 200 with the Page (JSON) or the HTML page;
//   - 503 with {"error": …} (or a small HTML page) when the store can't be
//     read; the store's error is logged, never shown;
//   - 405 for methods other than GET and HEAD.
//
// A project whose document is missing or undecodable is shown as Unknown
// with a note; that is not an error.
func New(o Options) http.Handler {
	h := &handler{o: o}
	if h.o.Log == nil {
		h.o.Log = logging.Discard()
	}
	if h.o.Now == nil {
		h.o.Now = time.Now
	}
	if h.o.Concurrency < 1 {
		h.o.Concurrency = 8
	}
	h.o.Projects = slices.Clone(o.Projects)
	return h
}

type handler struct{ o Options }

// errStore is the only thing a client learns about a store failure.
const errStore = "the guard's state store can't be read right now; try again shortly"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Add("Vary", "Accept")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
		return
	}
	asHTML := wantsHTML(r)
	page, err := h.load(r.Context())
	if err != nil {
		h.o.Log.ErrorContext(r.Context(), "status: reading the state store failed", "error", err.Error())
		if asHTML {
			writeHTMLError(w, http.StatusServiceUnavailable, errStore)
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: errStore, GeneratedAt: h.o.Now().UTC()})
		return
	}
	if asHTML {
		writeHTML(w, page)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

type errorBody struct {
	Error       string    `json:"error"`
	GeneratedAt time.Time `json:"generatedAt,omitzero"`
}

// load reads every configured project's document and builds the page. It
// fails only when the store itself can't be read (not for a missing or
// undecodable document).
func (h *handler) load(ctx context.Context) (Page, error) {
	now := h.o.Now()
	docs := make([]*reconcile.Doc, len(h.o.Projects))
	notes := make([]string, len(h.o.Projects))
	errs := make([]error, len(h.o.Projects))
	sem := make(chan struct{}, h.o.Concurrency)
	var wg sync.WaitGroup
	for i, id := range h.o.Projects {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			docs[i], notes[i], errs[i] = ReadDoc(ctx, h.o.Store, id)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Page{}, err
	}
	bad, err := h.o.Store.List(ctx, server.QuarantinePrefix)
	if err != nil {
		return Page{}, err
	}
	page := Page{GeneratedAt: now.UTC(), Projects: make([]Project, 0, len(h.o.Projects)), Quarantined: len(bad)}
	for i, id := range h.o.Projects {
		p := FromDoc(id, docs[i], now, h.o.StaleAfter)
		if notes[i] != "" {
			p.Note = notes[i]
		}
		page.Projects = append(page.Projects, p)
	}
	return page, nil
}

// ReadDoc reads a project's document from store. A missing document is
// (nil, "", nil); an undecodable one is (nil, note, nil) with a note for
// people; only a store failure is an error.
func ReadDoc(ctx context.Context, store state.Store, projectID string) (*reconcile.Doc, string, error) {
	data, _, err := store.Get(ctx, reconcile.ProjectKey(projectID))
	if errors.Is(err, state.ErrNotFound) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("project %s: %w", projectID, err)
	}
	var d reconcile.Doc
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, "the stored state of this project is unreadable; the next reconcile rewrites it", nil
	}
	return &d, "", nil
}

// wantsHTML: ?format=html or ?format=json decide; otherwise an Accept header
// that names text/html (what browsers send) gets HTML.
func wantsHTML(r *http.Request) bool {
	switch strings.ToLower(r.URL.Query().Get("format")) {
	case "html":
		return true
	case "json":
		return false
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != "text/html" {
			continue
		}
		if q, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
				continue
			}
		}
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
