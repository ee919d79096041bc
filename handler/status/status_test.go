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

// serve answers one GET and returns the response and its body; it checks the
// security headers every answer carries.
func serve(t *testing.T, st state.Store, projects []string, target, accept string) (*http.Response, string) {
	t.Helper()
	h := New(Options{Store: st, Projects: projects, Now: func() time.Time { return fixtureNow }})
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", resp.Header)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	return resp, string(b)
}

func getJSON(t *testing.T, st state.Store) (Page, map[string]any) {
	t.Helper()
	resp, raw := serve(t, st, allProjects, "/api/Status", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var page Page
	var generic map[string]any
	if err := errors.Join(json.Unmarshal([]byte(raw), &page), json.Unmarshal([]byte(raw), &generic)); err != nil {
		t.Fatal(err)
	}
	return page, generic
}

func kinds(as []alert.Alert) map[alert.Kind]alert.Severity {
	out := map[alert.Kind]alert.Severity{}
	for _, a := range as {
		out[a.Kind] = a.Severity
	}
	return out
}

func TestJSON(t *testing.T) {
	page, generic := getJSON(t, fixtureStore(t))
	if !page.GeneratedAt.Equal(fixtureNow) || len(page.Projects) != 4 {
		t.Fatalf("generatedAt %v, %d projects", page.GeneratedAt, len(page.Projects))
	}
	for i, want := range []State{Healthy, Warning, Critical, Unknown} {
		if p := page.Projects[i]; p.ProjectID != allProjects[i] || p.State != want {
			t.Errorf("project %d: %s %s, want %s %s (alerts %+v)", i, p.ProjectID, p.State, allProjects[i], want, p.OpenAlerts)
		}
	}

	h := page.Projects[0]
	if h.Mode != plan.ModeObserve || h.LastReconcile == nil || h.Stale || h.Note != "" || h.Unread != nil {
		t.Errorf("healthy %+v", h)
	}
	if !strings.HasSuffix(h.Vault, "/vaults/kv-atlas-prod") || !*h.Valid || !*h.RequirePrivateNetworking || *h.Hold {
		t.Errorf("vault %q valid %v rpn %v hold %v", h.Vault, h.Valid, h.RequirePrivateNetworking, h.Hold)
	}
	if h.Key == nil || !h.Key.Enabled || *h.KeyExpiresInDays != 200 {
		t.Errorf("key %+v, %v days", h.Key, h.KeyExpiresInDays)
	}
	if len(h.Endpoints) != 2 || len(h.ForeignConnections) != 0 {
		t.Fatalf("endpoints %+v, foreign %+v", h.Endpoints, h.ForeignConnections)
	}
	if e := h.Endpoints[0]; e.Region != "EUROPE_WEST" || e.AtlasStatus != "ACTIVE" || e.ConnectionStatus != "Approved" || e.Verdict != plan.VerdictAlreadyApproved {
		t.Errorf("endpoint 0 %+v", e)
	}
	if e := h.Endpoints[1]; e.ConnectionStatus != "Pending" || e.Verdict != plan.VerdictWouldApprove || !strings.Contains(e.Reason, "observe mode") || e.AtlasStatusSince == nil {
		t.Errorf("endpoint 1 %+v", e)
	}
	if h.Clusters.Total != 2 || h.Clusters.EAR != 2 || len(h.Clusters.Paused) != 0 {
		t.Errorf("clusters %+v", h.Clusters)
	}
	// Observe mode's would-approve is an info alert: it doesn't degrade.
	if k := kinds(h.OpenAlerts); len(k) != 1 || k[alert.WouldApprove] != alert.Info {
		t.Errorf("alerts %v", k)
	}
	if h.APICalls != (APICalls{Atlas: 3, ARM: 4}) || len(h.Errors) != 0 {
		t.Errorf("apiCalls %+v errors %+v", h.APICalls, h.Errors)
	}

	w := page.Projects[1]
	if *w.KeyExpiresInDays != 10 || len(w.ForeignConnections) != 1 || w.ForeignConnections[0].Verdict != plan.VerdictForeign {
		t.Errorf("warning: %v days, foreign %+v", w.KeyExpiresInDays, w.ForeignConnections)
	}
	if k := kinds(w.OpenAlerts); k[alert.KeyExpiresSoon] != alert.Warning || k[alert.ForeignConnection] != alert.Warning {
		t.Errorf("warning alerts %v", k)
	}

	c := page.Projects[2]
	if c.Key.Enabled || c.Key.Latest != "99cc00dd" || c.Clusters.EAR != 1 || strings.Join(c.Clusters.Paused, ",") != "payments" {
		t.Errorf("critical key %+v clusters %+v", c.Key, c.Clusters)
	}
	if k := kinds(c.OpenAlerts); c.OpenAlerts[0].Severity != alert.Critical || k[alert.KeyDisabled] != alert.Critical ||
		k[alert.ClustersPaused] != alert.Critical || k[alert.GuardBlind] != alert.Critical {
		t.Errorf("critical alerts %v (most severe first)", k)
	}
	if len(c.Errors) != 1 || c.Errors[0].Permission != vault.ActionConnectionsRead || c.PendingDeliveries != 1 {
		t.Errorf("errors %+v, pending %d", c.Errors, c.PendingDeliveries)
	}
	// Connections unreadable: no connection status is claimed, none foreign.
	if len(c.Endpoints) != 1 || c.Endpoints[0].Verdict != plan.VerdictConnectionsUnreadable || c.Endpoints[0].ConnectionStatus != "" ||
		c.ForeignConnections != nil || c.NotRead(plan.SourceConnections) == "" {
		t.Errorf("endpoints %+v foreign %+v", c.Endpoints, c.ForeignConnections)
	}

	u := page.Projects[3]
	if !strings.Contains(u.Note, "not reconciled yet") || u.LastReconcile != nil || u.Key != nil {
		t.Errorf("unknown project %+v", u)
	}
	// The documented field names, for dashboards that read the JSON; empty
	// lists are [] rather than null, also for an unknown project.
	projects := generic["projects"].([]any)
	for _, raw := range projects[:2] {
		p := raw.(map[string]any)
		for _, k := range []string{"projectId", "state", "lastReconcile", "mode", "vault", "keyIdentifier", "key", "valid",
			"requirePrivateNetworking", "hold", "endpoints", "foreignConnections", "clusters", "openAlerts", "pendingDeliveries", "apiCalls", "errors"} {
			if _, ok := p[k]; !ok {
				t.Errorf("project %v lacks %q", p["projectId"], k)
			}
		}
	}
	for _, k := range []string{"endpoints", "foreignConnections", "openAlerts", "errors"} {
		if _, ok := projects[3].(map[string]any)[k].([]any); !ok {
			t.Errorf("unknown project: %q is not []", k)
		}
	}
}

// A value whose source was not read is never stated: not in JSON, not on
// the page, where the tile says "not read" and why.
func TestNotRead(t *testing.T) {
	const why = "cannot reach cloud.mongodb.com: DNS lookup failed"
	s := snapshot(pHealthy, vaultOf("kv"), vault.Key{Found: true, Name: "k", Version: "v1", Enabled: true}, nil, nil, nil)
	s.Config, s.Endpoints, s.Clusters, s.VaultState, s.Connections, s.Key = nil, nil, nil, nil, nil, nil
	for _, src := range []plan.Source{plan.SourceEncryptionAtRest, plan.SourcePrivateEndpoints, plan.SourceClusters} {
		s.Errors = append(s.Errors, plan.SourceError{Source: src, Service: "atlas", Cause: why, Message: "Get https://cloud.mongodb.com/x: no such host"})
	}
	st := state.NewMemory()
	put(t, st, docFor(t, s, fixtureNow.Add(-time.Minute)))

	page, generic := getJSON(t, st)
	p := page.Projects[0]
	if p.RequirePrivateNetworking != nil || p.Hold != nil || p.Clusters != nil || p.Endpoints != nil || p.Key != nil {
		t.Errorf("states values it did not read: %+v", p)
	}
	raw := generic["projects"].([]any)[0].(map[string]any)
	for _, k := range []string{"requirePrivateNetworking", "hold", "clusters"} {
		if _, ok := raw[k]; ok {
			t.Errorf("JSON states %q: %v", k, raw[k])
		}
	}
	if p.NotRead(plan.SourceClusters) != why || !strings.Contains(p.NotRead(plan.SourceKey), "EAR config was not read") {
		t.Errorf("unread %v", p.Unread)
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

func TestStaleAndUndecodable(t *testing.T) {
	st := state.NewMemory()
	put(t, st, docFor(t, snapshot(pHealthy, vaultOf("kv"), vault.Key{Found: true, Name: "k", Version: "v1", Enabled: true}, nil, nil, nil), fixtureNow.Add(-3*time.Hour)))
	if _, err := st.Put(t.Context(), reconcile.ProjectKey(pWarning), []byte("{not json"), "", nil); err != nil {
		t.Fatal(err)
	}
	page, _ := getJSON(t, st)
	if p := page.Projects[0]; !p.Stale || !strings.Contains(p.Note, "3 hours") || !strings.Contains(p.Note, "Reconcile timer") {
		t.Errorf("stale %v note %q", p.Stale, p.Note)
	}
	if p := page.Projects[1]; p.State != Unknown || !strings.Contains(p.Note, "unreadable") {
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
	_, html := serve(t, st, allProjects, "/api/Status?format=html", "")
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
			resp, page := serve(t, fixtureStore(t), allProjects, tc.target, tc.accept)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			for _, want := range []string{
				`class="badge healthy"`, ">Healthy</span>", `class="badge warning"`, ">Warning</span>",
				`class="badge critical"`, ">Critical</span>", `class="badge unknown"`, ">Unknown</span>",
				"atlas-pe-eastus2-3c4d", "would-approve", "already-approved", "PENDING_ACCEPTANCE",
				"200 days left", "10 days left", "DISABLED", "paused: payments", "newer version 99cc00dd",
				"somebody-elses-endpoint", "Microsoft.KeyVault/vaults/privateEndpointConnections/read",
				"not reconciled yet", "&lt;script&gt;", "require private networking: yes",
				"What to do", "az keyvault key set-attributes --enabled true --subscription 00000000-1111-2222-3333-444444444444",
			} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			// Hostile text is escaped; no external asset, no script; the
			// query string (function key) is never echoed.
			if regexp.MustCompile(`(?i)<(script|link|iframe|object|embed|img)\b|\ssrc=["']|url\(|@import|\s(href|action)=`).MatchString(page) ||
				strings.Contains(page, "ignored") {
				t.Errorf("page carries markup, a reference or the query string")
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
		resp, _ := serve(t, state.NewMemory(), nil, tc.target, tc.accept)
		if got := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html"); got != tc.html {
			t.Errorf("%s Accept %q: html=%v, want %v", tc.target, tc.accept, got, tc.html)
		}
	}
	rec := httptest.NewRecorder()
	New(Options{Store: state.NewMemory()}).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/Status", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

func TestNoSecrets(t *testing.T) {
	for _, accept := range []string{"application/json", "text/html"} {
		_, b := serve(t, fixtureStore(t), allProjects, "/api/Status", accept)
		for _, secret := range []string{secretToken, secretWebhook, "hooks.example.test", "host-1"} {
			if strings.Contains(b, secret) {
				t.Errorf("%s output contains %q", accept, secret)
			}
		}
		if !strings.Contains(b, "[redacted]") {
			t.Errorf("%s output: the error message was dropped instead of redacted", accept)
		}

		st := downStore{fixtureStore(t), errors.New("dial tcp 10.0.0.4:443: connection refused; AccountKey=c2VjcmV0a2V5")}
		resp, b := serve(t, st, allProjects, "/api/Status", accept)
		if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(b, "c2VjcmV0a2V5") || strings.Contains(b, "10.0.0.4") {
			t.Errorf("store down, %s: %d %s", accept, resp.StatusCode, b)
		}
		if want := map[bool]string{true: "Unavailable", false: `"error"`}[accept == "text/html"]; !strings.Contains(b, want) {
			t.Errorf("503 body %q lacks %q", b, want)
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
