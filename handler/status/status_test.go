package status

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
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

var allProjects = []string{pHealthy, pWarning, pCritical, pUnknown}

func serve(t *testing.T, st state.Store, projects []string, target string, accept string) *http.Response {
	t.Helper()
	h := New(Options{Store: st, Projects: projects, Now: func() time.Time { return fixtureNow }})
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkSecurityHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	for k, want := range map[string]string{
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "style-src 'unsafe-inline'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	if strings.Contains(csp, "script-src") {
		t.Errorf("CSP allows scripts: %q", csp)
	}
}

func getJSON(t *testing.T, st state.Store) (Page, map[string]any) {
	t.Helper()
	resp := serve(t, st, allProjects, "/api/Status", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	checkSecurityHeaders(t, resp)
	raw := body(t, resp)
	var page Page
	if err := json.Unmarshal([]byte(raw), &page); err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal([]byte(raw), &generic); err != nil {
		t.Fatal(err)
	}
	return page, generic
}

func TestJSONStates(t *testing.T) {
	page, _ := getJSON(t, fixtureStore(t))
	if !page.GeneratedAt.Equal(fixtureNow) {
		t.Errorf("generatedAt = %v", page.GeneratedAt)
	}
	want := map[string]State{pHealthy: Healthy, pWarning: Warning, pCritical: Critical, pUnknown: Unknown}
	if len(page.Projects) != len(want) {
		t.Fatalf("%d projects", len(page.Projects))
	}
	for i, p := range page.Projects {
		if p.ProjectID != allProjects[i] {
			t.Errorf("project %d is %s, want configured order", i, p.ProjectID)
		}
		if p.State != want[p.ProjectID] {
			t.Errorf("%s: state %s, want %s (alerts %+v)", p.ProjectID, p.State, want[p.ProjectID], p.OpenAlerts)
		}
	}
}

func TestJSONHealthy(t *testing.T) {
	page, _ := getJSON(t, fixtureStore(t))
	p := page.Projects[0]
	if p.Mode != plan.ModeObserve || p.LastReconcile == nil || p.Stale || p.Note != "" {
		t.Errorf("mode %q lastReconcile %v stale %v note %q", p.Mode, p.LastReconcile, p.Stale, p.Note)
	}
	if !strings.HasSuffix(p.Vault, "/vaults/kv-atlas-prod") || p.Valid == nil || !*p.Valid || !p.RequirePrivateNetworking {
		t.Errorf("vault %q valid %v rpn %v", p.Vault, p.Valid, p.RequirePrivateNetworking)
	}
	if p.Key == nil || !p.Key.Enabled || p.Key.ExpiresInDays == nil || *p.Key.ExpiresInDays != 200 || p.Key.RotationPending {
		t.Errorf("key %+v", p.Key)
	}
	if len(p.Endpoints) != 2 {
		t.Fatalf("endpoints %+v", p.Endpoints)
	}
	e0, e1 := p.Endpoints[0], p.Endpoints[1]
	if e0.Region != "EUROPE_WEST" || e0.AtlasStatus != "ACTIVE" || e0.ConnectionStatus != "Approved" || e0.Verdict != plan.VerdictAlreadyApproved {
		t.Errorf("endpoint 0 %+v", e0)
	}
	if e1.ConnectionName != "atlas-pe-eastus2-3c4d" || e1.ConnectionStatus != "Pending" || e1.Verdict != plan.VerdictWouldApprove || !strings.Contains(e1.Reason, "observe mode") {
		t.Errorf("endpoint 1 %+v", e1)
	}
	if e1.AtlasStatusSince == nil {
		t.Errorf("endpoint 1 has no since")
	}
	if len(p.ForeignConnections) != 0 {
		t.Errorf("foreign %+v", p.ForeignConnections)
	}
	if p.Clusters.Total != 2 || p.Clusters.EAR != 2 || len(p.Clusters.Paused) != 0 {
		t.Errorf("clusters %+v", p.Clusters)
	}
	// Observe mode's would-approve is an info alert: it doesn't degrade.
	if len(p.OpenAlerts) != 1 || p.OpenAlerts[0].Kind != alert.WouldApprove || p.OpenAlerts[0].Severity != alert.Info {
		t.Errorf("alerts %+v", p.OpenAlerts)
	}
	if p.APICalls != (APICalls{Atlas: 3, ARM: 4}) || len(p.Errors) != 0 {
		t.Errorf("apiCalls %+v errors %+v", p.APICalls, p.Errors)
	}
}

func TestJSONWarningAndCritical(t *testing.T) {
	page, _ := getJSON(t, fixtureStore(t))
	w := page.Projects[1]
	if w.Key.ExpiresInDays == nil || *w.Key.ExpiresInDays != 10 {
		t.Errorf("warning key %+v", w.Key)
	}
	if len(w.ForeignConnections) != 1 || w.ForeignConnections[0].Name != "somebody-elses-endpoint" || w.ForeignConnections[0].Verdict != plan.VerdictForeign {
		t.Errorf("foreign %+v", w.ForeignConnections)
	}
	kinds := map[alert.Kind]alert.Severity{}
	for _, a := range w.OpenAlerts {
		kinds[a.Kind] = a.Severity
	}
	if kinds[alert.KeyExpiresSoon] != alert.Warning || kinds[alert.ForeignConnection] != alert.Warning {
		t.Errorf("warning alerts %v", kinds)
	}

	c := page.Projects[2]
	if c.Key.Enabled || !c.Key.RotationPending || c.Key.Latest != "99cc00dd" {
		t.Errorf("critical key %+v", c.Key)
	}
	if c.Clusters.Total != 2 || c.Clusters.EAR != 1 || len(c.Clusters.Paused) != 1 || c.Clusters.Paused[0] != "payments" {
		t.Errorf("clusters %+v", c.Clusters)
	}
	if c.OpenAlerts[0].Severity != alert.Critical {
		t.Errorf("alerts not most severe first: %+v", c.OpenAlerts)
	}
	kinds = map[alert.Kind]alert.Severity{}
	for _, a := range c.OpenAlerts {
		kinds[a.Kind] = a.Severity
	}
	for _, k := range []alert.Kind{alert.KeyDisabled, alert.ClustersPaused, alert.GuardBlind} {
		if kinds[k] != alert.Critical {
			t.Errorf("critical project lacks critical %s: %v", k, kinds)
		}
	}
	if len(c.Errors) != 1 || c.Errors[0].Permission != "Microsoft.KeyVault/vaults/privateEndpointConnections/read" {
		t.Errorf("errors %+v", c.Errors)
	}
	if c.PendingDeliveries != 1 {
		t.Errorf("pendingDeliveries %d", c.PendingDeliveries)
	}
	// Connections unreadable: the endpoint row says so.
	if len(c.Endpoints) != 1 || c.Endpoints[0].Verdict != plan.VerdictConnectionsUnreadable || c.Endpoints[0].ConnectionStatus != "" {
		t.Errorf("endpoints %+v", c.Endpoints)
	}
}

func TestJSONUnknownAndShape(t *testing.T) {
	page, generic := getJSON(t, fixtureStore(t))
	u := page.Projects[3]
	if u.State != Unknown || !strings.Contains(u.Note, "not reconciled yet") || u.LastReconcile != nil || u.Key != nil {
		t.Errorf("unknown project %+v", u)
	}
	// The documented field names, for dashboards that read the JSON.
	projects := generic["projects"].([]any)
	for _, raw := range projects[:3] {
		p := raw.(map[string]any)
		for _, k := range []string{"projectId", "state", "lastReconcile", "mode", "vault", "keyIdentifier", "key", "valid",
			"hold", "endpoints", "foreignConnections", "clusters", "openAlerts", "pendingDeliveries", "apiCalls", "errors"} {
			if _, ok := p[k]; !ok {
				t.Errorf("project %v lacks %q", p["projectId"], k)
			}
		}
		key := p["key"].(map[string]any)
		for _, k := range []string{"enabled", "latest", "version", "found"} {
			if _, ok := key[k]; !ok {
				t.Errorf("key lacks %q", k)
			}
		}
		cl := p["clusters"].(map[string]any)
		for _, k := range []string{"total", "ear", "paused"} {
			if _, ok := cl[k]; !ok {
				t.Errorf("clusters lacks %q", k)
			}
		}
		calls := p["apiCalls"].(map[string]any)
		if _, ok := calls["atlas"]; !ok {
			t.Errorf("apiCalls lacks atlas")
		}
	}
	// Empty lists are [] rather than null, also for an unknown project.
	un := projects[3].(map[string]any)
	for _, k := range []string{"endpoints", "foreignConnections", "openAlerts", "errors"} {
		if _, ok := un[k].([]any); !ok {
			t.Errorf("unknown project: %q is %v, want []", k, un[k])
		}
	}
}

func TestStale(t *testing.T) {
	st := state.NewMemory()
	d := docFor(t, snapshot(pHealthy, vaultOf("kv"), fixtureKey(), nil, nil, nil), fixtureNow.Add(-3*time.Hour))
	put(t, st, d)
	page, _ := getJSON(t, st)
	p := page.Projects[0]
	if !p.Stale || !strings.Contains(p.Note, "3 hours") || !strings.Contains(p.Note, "Reconcile timer") {
		t.Errorf("stale %v note %q", p.Stale, p.Note)
	}
}

func fixtureKey() vault.Key {
	return vault.Key{Found: true, Name: "k", Version: "v1", Enabled: true}
}

func TestUndecodableDocIsUnknown(t *testing.T) {
	st := state.NewMemory()
	if _, err := st.Put(t.Context(), reconcile.ProjectKey(pHealthy), []byte("{not json"), "", nil); err != nil {
		t.Fatal(err)
	}
	page, _ := getJSON(t, st)
	if p := page.Projects[0]; p.State != Unknown || !strings.Contains(p.Note, "unreadable") {
		t.Errorf("%+v", p)
	}
}

// TestQuarantineCounted: bad invocations the server kept aside are counted
// on the page.
func TestQuarantineCounted(t *testing.T) {
	st := state.NewMemory()
	for _, k := range []string{"a", "b"} {
		st.Put(t.Context(), server.QuarantinePrefix+k, []byte(`{}`), "", nil)
	}
	page, _ := getJSON(t, st)
	html := body(t, serve(t, st, allProjects, "/api/Status?format=html", ""))
	if page.Quarantined != 2 || !strings.Contains(html, "2 bad invocations kept aside") {
		t.Errorf("quarantined %d; html %.0s", page.Quarantined, html)
	}
}

func TestHTML(t *testing.T) {
	for _, tc := range []struct{ name, target, accept string }{
		{"browser accept", "/api/Status", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
		{"format param", "/api/Status?format=html&code=ignored", "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := serve(t, fixtureStore(t), allProjects, tc.target, tc.accept)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Fatalf("Content-Type %q", ct)
			}
			checkSecurityHeaders(t, resp)
			page := body(t, resp)
			for _, want := range []string{
				`class="badge healthy"`, ">Healthy</span>",
				`class="badge warning"`, ">Warning</span>",
				`class="badge critical"`, ">Critical</span>",
				`class="badge unknown"`, ">Unknown</span>",
				"atlas-pe-eastus2-3c4d", "would-approve", "already-approved", "PENDING_ACCEPTANCE",
				"200 days left", "10 days left", "DISABLED", "paused: payments",
				"somebody-elses-endpoint", "Microsoft.KeyVault/vaults/privateEndpointConnections/read",
				"not reconciled yet",
			} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			// The hostile summary is escaped, never markup.
			if strings.Contains(page, "<script") || strings.Contains(page, "<img") {
				t.Errorf("hostile markup reached the page unescaped")
			}
			if !strings.Contains(page, "&lt;script&gt;") {
				t.Errorf("escaped hostile summary missing")
			}
			// No external asset, no script.
			if regexp.MustCompile(`(?i)<(script|link|iframe|object|embed|img)\b|\ssrc=["']|url\(|@import|\s(href|action)=`).MatchString(page) {
				t.Errorf("page references something external or scripted")
			}
			if strings.Contains(page, "ignored") {
				t.Errorf("the request's query string (function key) is echoed")
			}
		})
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
		resp := serve(t, state.NewMemory(), nil, tc.target, tc.accept)
		got := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html")
		if got != tc.html {
			t.Errorf("%s Accept %q: html=%v, want %v", tc.target, tc.accept, got, tc.html)
		}
	}
}

func TestStoreDown(t *testing.T) {
	for _, accept := range []string{"", "text/html"} {
		st := downStore{fixtureStore(t), errors.New("dial tcp 10.0.0.4:443: connection refused; AccountKey=c2VjcmV0a2V5")}
		resp := serve(t, st, allProjects, "/api/Status", accept)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("Accept %q: status %d", accept, resp.StatusCode)
		}
		checkSecurityHeaders(t, resp)
		b := body(t, resp)
		if strings.Contains(b, "AccountKey") || strings.Contains(b, "c2VjcmV0a2V5") || strings.Contains(b, "10.0.0.4") {
			t.Errorf("store error leaked: %s", b)
		}
		if accept == "" {
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(b), &e); err != nil || e.Error == "" {
				t.Errorf("503 body %q: %v", b, err)
			}
		} else if !strings.Contains(b, "Unavailable") {
			t.Errorf("503 html %q", b)
		}
	}
}

func TestNoSecrets(t *testing.T) {
	st := fixtureStore(t)
	for _, accept := range []string{"application/json", "text/html"} {
		b := body(t, serve(t, st, allProjects, "/api/Status", accept))
		for _, secret := range []string{secretToken, secretWebhook, "XXXXsecretXXXX", "hooks.example.test", "host-1"} {
			if strings.Contains(b, secret) {
				t.Errorf("%s output contains %q", accept, secret)
			}
		}
		if !strings.Contains(b, "[redacted]") {
			t.Errorf("%s output: the error message was dropped instead of redacted", accept)
		}
	}
}

func TestMethod(t *testing.T) {
	h := New(Options{Store: state.NewMemory()})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/Status", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

func TestStateOf(t *testing.T) {
	for _, tc := range []struct {
		sev  []alert.Severity
		want State
	}{
		{nil, Healthy},
		{[]alert.Severity{alert.Info}, Healthy},
		{[]alert.Severity{alert.Info, alert.Warning}, Warning},
		{[]alert.Severity{alert.Warning, alert.Critical, alert.Info}, Critical},
	} {
		var as []alert.Alert
		for _, s := range tc.sev {
			as = append(as, alert.Alert{Severity: s})
		}
		if got := StateOf(as); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.sev, got, tc.want)
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
