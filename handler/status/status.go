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
	"cmp"
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

// Options configure the handler: Store (required), the configured Projects
// in the order shown, Log for store failures (nil discards) and the clock Now
// (default time.Now).
type Options struct {
	Store    state.Store
	Projects []string
	Log      *slog.Logger
	Now      func() time.Time
}

// New returns the Status handler. It answers 200 with the Page (JSON) or the
// HTML page; 503 with {"error": …} (or a small HTML page) when the store
// can't be read (its error is logged, never shown); 405 for methods other
// than GET and HEAD. A missing or undecodable document is a project shown
// as Unknown with a note, not an error.
func New(o Options) http.Handler {
	o.Log, o.Projects = cmp.Or(o.Log, logging.Discard()), slices.Clone(o.Projects)
	if o.Now == nil {
		o.Now = time.Now
	}
	return &handler{o: o}
}

type handler struct{ o Options }

// errStore is the only thing a client learns about a store failure.
const errStore = "the guard's state store can't be read right now; try again shortly"

// concurrency bounds the store reads in flight.
const concurrency = 8

var securityHeaders = map[string]string{
	"Cache-Control":           "no-store",
	"X-Content-Type-Options":  "nosniff",
	"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"Referrer-Policy":         "no-referrer",
	"X-Frame-Options":         "DENY",
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	w.Header().Add("Vary", "Accept")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
		return
	}
	page, err := h.load(r.Context())
	if err != nil {
		h.o.Log.ErrorContext(r.Context(), "status: reading the state store failed", "error", err.Error())
	}
	switch html := wantsHTML(r); {
	case err != nil && html:
		writeHTML(w, http.StatusServiceUnavailable, "error", errorBody{Error: errStore, Status: http.StatusServiceUnavailable})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: errStore, GeneratedAt: h.o.Now().UTC()})
	case html:
		writeHTML(w, http.StatusOK, "page", newHTMLData(page))
	default:
		writeJSON(w, http.StatusOK, page)
	}
}

type errorBody struct {
	Error       string    `json:"error"`
	GeneratedAt time.Time `json:"generatedAt,omitzero"`
	Status      int       `json:"-"` // for the HTML error page
}

// load reads every configured project's document and builds the page. It
// fails only when the store itself can't be read (not for a missing or
// undecodable document).
func (h *handler) load(ctx context.Context) (Page, error) {
	now := h.o.Now()
	page := Page{GeneratedAt: now.UTC(), Projects: make([]Project, len(h.o.Projects))}
	errs := make([]error, len(h.o.Projects))
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i, id := range h.o.Projects {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() {
				<-sem
				if v := recover(); v != nil {
					errs[i] = fmt.Errorf("project %s: panic reading the store: %v", id, v)
				}
			}()
			doc, note, err := ReadDoc(ctx, h.o.Store, id)
			p := FromDoc(id, doc, now)
			p.Note = cmp.Or(note, p.Note)
			page.Projects[i], errs[i] = p, err
		})
	}
	wg.Wait()
	bad, err := h.o.Store.List(ctx, server.QuarantinePrefix)
	if err := errors.Join(append(errs, err)...); err != nil {
		return Page{}, err
	}
	page.Quarantined = len(bad)
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
// that names text/html (what browsers send) with a q above 0 gets HTML.
func wantsHTML(r *http.Request) bool {
	if f := strings.ToLower(r.URL.Query().Get("format")); f == "html" || f == "json" {
		return f == "html"
	}
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(part)
		q, qErr := strconv.ParseFloat(cmp.Or(params["q"], "1"), 64)
		if err == nil && mt == "text/html" && qErr == nil && q > 0 {
			return true
		}
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
