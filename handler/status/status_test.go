package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/server"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

var update = flag.Bool("update", false, "rewrite testdata/page.golden.json from the handler's output")

// Project ids of the fixtures in testdata/projects, one per state; pUnknown
// has no document.
const (
	pHealthy  = "64a0c0ffee00000000000001"
	pWarning  = "64a0c0ffee00000000000002"
	pCritical = "64a0c0ffee00000000000003"
	pUnknown  = "64a0c0ffee00000000000004"
)

// Secrets planted in the critical fixture (an error message, a pending
// delivery); none may reach the page.
const (
	secretToken   = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig"
	secretWebhook = "https://hooks.example.test/services/T000/B000/XXXXsecretXXXX"
)

var (
	allProjects = []string{pHealthy, pWarning, pCritical, pUnknown}
	fixtureNow  = time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)
)

// load stores the project documents testdata/projects/<name>.json, as the
// reconciler wrote them.
func load(t testing.TB, names ...string) *state.Memory {
	t.Helper()
	st := state.NewMemory()
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join("testdata", "projects", name+".json"))
		var d reconcile.Doc
		if err := errors.Join(err, json.Unmarshal(data, &d)); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Put(t.Context(), reconcile.ProjectKey(d.ProjectID), data, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// fixtureStore holds pHealthy (one endpoint ACTIVE and approved, one asking:
// observe mode would approve it), pWarning (the key expires in 10 days, a
// stranger's connection waits) and pCritical (key disabled, EAR cluster
// paused, connections unreadable (403), markup planted in an alert, secrets
// in an error and a pending delivery).
func fixtureStore(t testing.TB) *state.Memory { return fixtures(t, true) }

// fixtures is fixtureStore with (planted) or without markup and secrets in
// the critical project: without, it is what a person would really see.
func fixtures(t testing.TB, planted bool) *state.Memory {
	return load(t, "healthy", "warning", map[bool]string{true: "critical", false: "critical-plain"}[planted])
}

// serve answers one GET at fixtureNow and returns the response and its body;
// it checks the security headers every answer carries.
func serve(t *testing.T, st state.Store, projects []string, target, accept string) (*http.Response, string) {
	t.Helper()
	return serveAt(t, fixtureNow, st, projects, target, accept)
}

func serveAt(t *testing.T, now time.Time, st state.Store, projects []string, target, accept string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	New(Options{Store: st, Projects: projects, Now: func() time.Time { return now }}).ServeHTTP(rec, req)
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	for k, v := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
		if resp.Header.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, resp.Header.Get(k), v)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	for _, secret := range []string{secretToken, secretWebhook, "hooks.example.test", "host-1", "c2VjcmV0a2V5", "10.0.0.4"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the answer contains %q", secret)
		}
	}
	return resp, string(b)
}

func getJSON(t *testing.T, st state.Store, projects []string) (Page, string) {
	t.Helper()
	resp, raw := serve(t, st, projects, "/api/Status", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var page Page
	if err := json.Unmarshal([]byte(raw), &page); err != nil {
		t.Fatal(err)
	}
	return page, raw
}

// TestJSON: the whole document is pinned by testdata/page.golden.json (its
// field names are what dashboards read; empty lists are [] rather than
// null, also for an unknown project); the assertions below say why.
func TestJSON(t *testing.T) {
	page, raw := getJSON(t, fixtureStore(t), allProjects)
	golden := filepath.Join("testdata", "page.golden.json")
	if *update {
		os.WriteFile(golden, []byte(raw), 0o644)
	}
	if want, err := os.ReadFile(golden); err != nil || !bytes.Equal(want, []byte(raw)) {
		t.Errorf("the page differs from %s (go test -update rewrites it): %v\n%s", golden, err, raw)
	}
	for i, want := range []State{Healthy, Warning, Critical, Unknown} {
		if p := page.Projects[i]; p.ProjectID != allProjects[i] || p.State != want {
			t.Errorf("project %d: %s %s, want %s %s", i, p.ProjectID, p.State, allProjects[i], want)
		}
	}
	h, w, c, u := page.Projects[0], page.Projects[1], page.Projects[2], page.Projects[3]
	// Observe mode's would-approve is an info alert: it doesn't degrade.
	if len(h.OpenAlerts) != 1 || h.OpenAlerts[0].Kind != alert.WouldApprove || h.Endpoints[1].Verdict != plan.VerdictWouldApprove || h.Endpoints[1].AtlasStatusSince == nil {
		t.Errorf("healthy %+v", h)
	}
	if *h.KeyExpiresInDays != 200 || *w.KeyExpiresInDays != 10 || w.ForeignConnections[0].Verdict != plan.VerdictForeign {
		t.Errorf("days %d %d, foreign %+v", *h.KeyExpiresInDays, *w.KeyExpiresInDays, w.ForeignConnections)
	}
	// Most severe first; connections unreadable: no connection status is
	// claimed, none is foreign.
	if c.OpenAlerts[0].Severity != alert.Critical || c.Errors[0].Permission != vault.ActionConnectionsRead || c.PendingDeliveries != 1 ||
		c.Endpoints[0].ConnectionStatus != "" || c.ForeignConnections != nil || c.NotRead(plan.SourceConnections) == "" {
		t.Errorf("critical %+v", c)
	}
	if !strings.Contains(raw, "[redacted]") || !strings.Contains(u.Note, "not reconciled yet") || u.LastReconcile != nil || u.Key != nil {
		t.Errorf("unknown %+v", u)
	}
}

// A value whose source was not read is never stated: not in JSON, not on
// the page, where the tile says "not read" and why.
func TestNotRead(t *testing.T) {
	const why = "cannot reach cloud.mongodb.com: DNS lookup failed"
	st := load(t, "atlas-down")
	page, raw := getJSON(t, st, allProjects[:1])
	if p := page.Projects[0]; p.RequirePrivateNetworking != nil || p.Hold != nil || p.Clusters != nil || p.Endpoints != nil || p.Key != nil ||
		p.NotRead(plan.SourceClusters) != why || !strings.Contains(p.NotRead(plan.SourceKey), "EAR config was not read") {
		t.Errorf("states values it did not read: %+v", p)
	}
	for _, k := range []string{"requirePrivateNetworking", "hold", "clusters"} {
		if strings.Contains(raw, `"`+k+`"`) {
			t.Errorf("JSON states %q", k)
		}
	}
	_, html := serve(t, st, allProjects[:1], "/api/Status?format=html", "")
	for _, bad := range []string{"require private networking", "none paused", "0 total", "hold tag set"} {
		if strings.Contains(html, bad) {
			t.Errorf("page states %q without having read it", bad)
		}
	}
	if strings.Count(html, ">not read<") != 3 || !strings.Contains(html, why) {
		t.Errorf("tiles do not say not read and why:\n%s", html)
	}
}

func TestStaleUndecodableQuarantine(t *testing.T) {
	st := load(t, "healthy")
	st.Put(t.Context(), reconcile.ProjectKey(pWarning), []byte("{not json"), "", nil)
	for _, k := range []string{"a", "b"} {
		st.Put(t.Context(), server.QuarantinePrefix+k, []byte(`{}`), "", nil)
	}
	_, raw := serveAt(t, fixtureNow.Add(3*time.Hour), st, allProjects[:2], "/api/Status", "")
	var page Page
	json.Unmarshal([]byte(raw), &page)
	if p := page.Projects[0]; !p.Stale || !strings.Contains(p.Note, "3 hours") || !strings.Contains(p.Note, "Reconcile timer") {
		t.Errorf("stale %v note %q", p.Stale, p.Note)
	}
	if p := page.Projects[1]; p.State != Unknown || !strings.Contains(p.Note, "unreadable") {
		t.Errorf("%+v", p)
	}
	// Bad invocations the server kept aside are counted.
	_, html := serve(t, st, allProjects, "/api/Status?format=html", "")
	if page.Quarantined != 2 || !strings.Contains(html, "2 bad invocations kept aside") {
		t.Errorf("quarantined %d", page.Quarantined)
	}
}

// TestHTML: a browser (or ?format=html) gets the page: every project, its
// decisions, alerts and runbooks, hostile text escaped, secrets redacted.
func TestHTML(t *testing.T) {
	for target, accept := range map[string]string{
		"/api/Status":                          "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"/api/Status?format=html&code=ignored": "application/json",
	} {
		resp, page := serve(t, fixtureStore(t), allProjects, target, accept)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{
			`class="badge healthy"`, ">Healthy</span>", `class="badge warning"`, ">Warning</span>",
			`class="badge critical"`, ">Critical</span>", `class="badge unknown"`, ">Unknown</span>",
			"atlas-pe-eastus2-3c4d", "would-approve", "already-approved", "PENDING_ACCEPTANCE",
			"200 days left", "10 days left", "DISABLED", "paused: payments", "newer version 99cc00dd",
			"somebody-elses-endpoint", "Microsoft.KeyVault/vaults/privateEndpointConnections/read", "[redacted]",
			"not reconciled yet", `&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;`, "require private networking: yes",
			"What to do", "az keyvault key set-attributes --enabled true --subscription 00000000-1111-2222-3333-444444444444",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		// Hostile text is escaped; no external asset, no script; the query
		// string (function key) is never echoed.
		if regexp.MustCompile(`(?i)<(script|link|iframe|object|embed|img)\b|\ssrc=["']|url\(|@import|\s(href|action)=`).MatchString(page) ||
			strings.Contains(page, "ignored") {
			t.Errorf("page carries markup, a reference or the query string")
		}
	}
}

func TestNegotiation(t *testing.T) {
	for _, tc := range []struct {
		target, accept string
		html           bool
	}{
		{"/api/Status", "", false},
		{"/api/Status", "application/json", false},
		{"/api/Status", "*/*", false},
		{"/api/Status", "text/html", true},
		{"/api/Status", "text/html;q=0, application/json", false},
		{"/api/Status?format=json", "text/html", false},
		{"/api/Status?format=HTML", "", true},
	} {
		resp, _ := serve(t, state.NewMemory(), nil, tc.target, tc.accept)
		if got := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"); got != tc.html {
			t.Errorf("%s Accept %q: html=%v, want %v", tc.target, tc.accept, got, tc.html)
		}
	}
	rec := httptest.NewRecorder()
	New(Options{Store: state.NewMemory()}).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/Status", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d", rec.Code)
	}
}

// TestStoreDown: 503, and nothing of the store's error (serve checks it).
func TestStoreDown(t *testing.T) {
	st := downStore{fixtureStore(t), errors.New("dial tcp 10.0.0.4:443: connection refused; AccountKey=c2VjcmV0a2V5")}
	for accept, want := range map[string]string{"application/json": `"error"`, "text/html": "Unavailable"} {
		if resp, b := serve(t, st, allProjects, "/api/Status", accept); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(b, want) {
			t.Errorf("store down, %s: %d %s", accept, resp.StatusCode, b)
		}
	}
}

// downStore is a store whose every read fails with err.
type downStore struct {
	state.Store
	err error
}

func (d downStore) Get(context.Context, string) ([]byte, string, error) { return nil, "", d.err }
func (d downStore) List(context.Context, string) ([]state.Item, error)  { return nil, d.err }
