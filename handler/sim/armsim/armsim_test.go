package armsim_test

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

var kv = resource.ID{SubscriptionID: "sub-1", ResourceGroup: "rg-1", Name: "kv-1"}

const apiVersion = "2024-11-01" // what armkeyvault v1.5.0 sends

type fixture struct {
	sim         *armsim.Server
	base, idURL string
	client      *http.Client
	now         time.Time
}

func newFixture(t *testing.T, cfg armsim.Config) *fixture {
	t.Helper()
	ca, err := simtls.New()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), client: ca.Client()}
	cfg.Now = func() time.Time { return f.now }
	f.sim = armsim.New(cfg)
	if f.base, err = f.sim.Start(ca); err != nil {
		t.Fatal(err)
	}
	if f.idURL, err = f.sim.StartIdentity(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.sim.Close)
	f.sim.AddVault(kv, map[string]string{"atlas-akv-guard": "hold"})
	return f
}

// token fetches a token the App Service way.
func (f *fixture) token(t *testing.T, clientID string) string {
	t.Helper()
	q := url.Values{"resource": {"https://management.core.windows.net/"}, "api-version": {"2019-08-01"}}
	if clientID != "" {
		q.Set("client_id", clientID)
	}
	status, body, _ := f.do(t, http.MethodGet, f.idURL+"?"+q.Encode(), "", map[string]string{"X-IDENTITY-HEADER": f.sim.IdentityHeader()})
	if status != 200 {
		t.Fatalf("token: %d %s", status, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresOn   string `json:"expires_on"`
		Resource    string `json:"resource"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil {
		t.Fatal(err)
	}
	exp, err := strconv.ParseInt(tok.ExpiresOn, 10, 64)
	if err != nil || exp != f.now.Add(time.Hour).Unix() || tok.TokenType != "Bearer" || tok.Resource != "https://management.core.windows.net/" || tok.AccessToken == "" {
		t.Fatalf("token response %s", body)
	}
	return tok.AccessToken
}

func (f *fixture) do(t *testing.T, method, u, body string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (f *fixture) arm(t *testing.T, tok, method, path, query, body string) (int, string, http.Header) {
	t.Helper()
	hdr := map[string]string{}
	if tok != "" {
		hdr["Authorization"] = "Bearer " + tok
	}
	if body != "" {
		hdr["Content-Type"] = "application/json"
	}
	return f.do(t, method, f.base+path+query, body, hdr)
}

func armCode(t *testing.T, body string) (code, message string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not an ARM error body: %s", body)
	}
	return e.Error.Code, e.Error.Message
}

func TestARMErrors(t *testing.T) {
	f := newFixture(t, armsim.Config{})
	tok := f.token(t, "")
	vaultPath := kv.String()
	tests := []struct {
		name, tok, method, path, query string
		status                         int
		code                           string
		wwwAuth                        bool
	}{
		{"no token", "", "GET", vaultPath, "?api-version=" + apiVersion, 401, "AuthenticationFailed", true},
		{"unknown token", "forged", "GET", vaultPath, "?api-version=" + apiVersion, 401, "InvalidAuthenticationToken", true},
		{"no api-version", tok, "GET", vaultPath, "", 400, "MissingApiVersionParameter", false},
		{"unknown api-version", tok, "GET", vaultPath, "?api-version=2099-01-01", 400, "NoRegisteredProviderFound", false},
		{"missing vault", tok, "GET", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.KeyVault/vaults/nope", "?api-version=" + apiVersion, 404, "ResourceNotFound", false},
		{"connections of missing vault", tok, "GET", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.KeyVault/vaults/nope/privateEndpointConnections", "?api-version=" + apiVersion, 404, "VaultNotFound", false},
		{"missing connection: 204, no body", tok, "GET", vaultPath + "/privateEndpointConnections/nope", "?api-version=" + apiVersion, 204, "", false},
		{"missing key", tok, "GET", vaultPath + "/keys/nope", "?api-version=" + apiVersion, 404, "KeyNotFound", false},
		{"unsupported route", tok, "DELETE", vaultPath, "?api-version=" + apiVersion, 400, "UnsupportedRoute", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, hdr := f.arm(t, tt.tok, tt.method, tt.path, tt.query, "")
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			if tt.code == "" && body != "" {
				t.Errorf("body %q, want none", body)
			}
			if code := ""; tt.code != "" {
				if code, _ = armCode(t, body); code != tt.code {
					t.Errorf("code %s, want %s", code, tt.code)
				}
			}
			if got := hdr.Get("WWW-Authenticate"); tt.wwwAuth != strings.HasPrefix(got, "Bearer ") {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
}

func TestIdentityEndpoint(t *testing.T) {
	f := newFixture(t, armsim.Config{})
	const good = "resource=https%3A%2F%2Fmanagement.core.windows.net%2F&api-version=2019-08-01"
	for _, tt := range []struct {
		name, query, header string
		down                bool
		status              int
	}{
		{"system-assigned", good, "", false, 200},
		{"user-assigned", good + "&client_id=uami-1", "", false, 200},
		{"wrong header", good, "nope", false, 401},
		{"missing api-version", "resource=https%3A%2F%2Fmanagement.azure.com%2F", "", false, 400},
		{"old api-version", good + "0", "", false, 400},
		{"foreign resource", "resource=https%3A%2F%2Fvault.azure.net&api-version=2019-08-01", "", false, 400},
		{"outage", good, "", true, 503},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.sim.SetIdentityDown(tt.down)
			defer f.sim.SetIdentityDown(false)
			status, body, _ := f.do(t, "GET", f.idURL+"?"+tt.query, "", map[string]string{"X-IDENTITY-HEADER": cmp.Or(tt.header, f.sim.IdentityHeader())})
			if status != tt.status || (status == 200) != strings.Contains(body, `"access_token":"armsim.`) {
				t.Fatalf("%d %s, want %d", status, body, tt.status)
			}
		})
	}
}

// TestPutConnection: the PUT's checks (etags as HTTP and ARM define them,
// state transitions, body) and its answer, Updating until it settles.
func TestPutConnection(t *testing.T) {
	approve := `{"properties":{"privateLinkServiceConnectionState":{"status":"Approved","description":"ok"}}}`
	withEtag := func(e string) string {
		return `{"etag":` + strconv.Quote(e) + `,"properties":{"privateLinkServiceConnectionState":{"status":"Approved","description":"ok"}}}`
	}
	same := func(e string) string { return e }
	fixed := func(v string) func(string) string { return func(string) string { return v } }
	tests := []struct {
		name      string
		status    string // of the stored connection
		body      func(etag string) string
		ifMatch   func(etag string) string
		checksOff bool // SetEtagChecks(false, false)
		want      int
		code      string
	}{
		{"approve with matching body etag", vault.StatusPending, withEtag, nil, false, 200, ""},
		{"body etag mismatch", vault.StatusPending, func(string) string { return withEtag(`"stale"`) }, nil, false, 409, "Conflict"},
		{"If-Match mismatch", vault.StatusPending, fixed(approve), fixed(`"stale"`), false, 412, "PreconditionFailed"},
		{"If-Match match", vault.StatusPending, fixed(approve), same, false, 200, ""},
		{"If-Match list", vault.StatusPending, fixed(approve), func(e string) string { return `"other", ` + e }, false, 200, ""},
		{"If-Match *", vault.StatusPending, fixed(approve), fixed("*"), false, 200, ""},
		{"If-Match weak never matches", vault.StatusPending, fixed(approve), func(e string) string { return "W/" + e }, false, 412, "PreconditionFailed"},
		{"checks off: stale If-Match and body etag pass", vault.StatusPending, fixed(`{"etag":"\"stale\"","properties":{"privateLinkServiceConnectionState":{"status":"Approved","description":"ok"}}}`), fixed(`"stale"`), true, 200, ""},
		{"rejected cannot be approved", vault.StatusRejected, fixed(approve), nil, false, 400, "InvalidPrivateEndpointConnectionStateTransition"},
		{"no status", vault.StatusPending, fixed(`{"properties":{}}`), nil, false, 400, "InvalidRequestContent"},
		{"malformed", vault.StatusPending, fixed(`{`), nil, false, 400, "InvalidRequestContent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, armsim.Config{SettleReads: 1})
			if err := f.sim.AddConnection(kv, "pe-1", tt.status, "/pe"); err != nil {
				t.Fatal(err)
			}
			f.sim.SetEtagChecks(!tt.checksOff, !tt.checksOff)
			var changes []armsim.Change
			f.sim.OnChange(func(c armsim.Change) { changes = append(changes, c) })
			tok := f.token(t, "uami-1")
			before, _ := f.sim.Connection(kv, "pe-1")
			hdr := map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
			if tt.ifMatch != nil {
				hdr["If-Match"] = tt.ifMatch(before.Etag)
			}
			path := kv.String() + "/privateEndpointConnections/pe-1?api-version=" + apiVersion
			status, body, _ := f.do(t, "PUT", f.base+path, tt.body(before.Etag), hdr)
			if status != tt.want {
				t.Fatalf("status %d, want %d: %s", status, tt.want, body)
			}
			if tt.want != 200 {
				if code, _ := armCode(t, body); code != tt.code {
					t.Errorf("code %s, want %s", code, tt.code)
				}
				if after, _ := f.sim.Connection(kv, "pe-1"); after != before || len(changes) != 0 {
					t.Errorf("refused PUT changed something: %+v, %d changes", after, len(changes))
				}
				return
			}
			var got struct {
				Etag       string `json:"etag"`
				Properties struct {
					ProvisioningState string                  `json:"provisioningState"`
					State             struct{ Status string } `json:"privateLinkServiceConnectionState"`
				} `json:"properties"`
			}
			_ = json.Unmarshal([]byte(body), &got)
			if got.Properties.ProvisioningState != "Updating" || got.Properties.State.Status != "Approved" || got.Etag == before.Etag {
				t.Errorf("PUT answer %s", body)
			}
			if len(changes) != 1 || changes[0].ClientID != "uami-1" || changes[0].Operation != vault.ActionConnectionsWrite {
				t.Errorf("changes %+v", changes)
			}
			// One read still Updating, then Succeeded.
			read := func() string {
				_, b, _ := f.do(t, "GET", f.base+path, "", map[string]string{"Authorization": "Bearer " + tok})
				_ = json.Unmarshal([]byte(b), &got)
				return got.Properties.ProvisioningState
			}
			if s1, s2 := read(), read(); s1 != "Updating" || s2 != "Succeeded" {
				t.Errorf("reads after the PUT: %s %s", s1, s2)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	f := newFixture(t, armsim.Config{})
	tok := f.token(t, "")
	f.sim.Inject(armsim.Fault{Match: armsim.RouteVaultGet, Status: 429, RetryAfter: 1500 * time.Millisecond, Times: 1})
	status, body, hdr := f.arm(t, tok, "GET", kv.String(), "?api-version="+apiVersion, "")
	if code, _ := armCode(t, body); status != 429 || code != "TooManyRequests" || hdr.Get("Retry-After") != "2" || hdr.Get("retry-after-ms") != "1500" {
		t.Errorf("429: %d %s %v", status, body, hdr)
	}
	if status, _, _ := f.arm(t, tok, "GET", kv.String(), "?api-version="+apiVersion, ""); status != 200 {
		t.Errorf("after Times ran out: %d", status)
	}
	f.sim.Inject(armsim.Fault{Match: armsim.RouteKeyGet, Status: 500})
	if status, _, _ := f.arm(t, tok, "GET", kv.String(), "?api-version="+apiVersion, ""); status != 200 {
		t.Errorf("fault on another route hit the vault: %d", status)
	}
	f.sim.ClearFaults()
	f.sim.Inject(armsim.Fault{Match: armsim.RouteIdentity, Status: 500, Times: 1})
	q := url.Values{"resource": {"https://management.azure.com/"}, "api-version": {"2019-08-01"}}
	if status, _, _ := f.do(t, "GET", f.idURL+"?"+q.Encode(), "", map[string]string{"X-IDENTITY-HEADER": f.sim.IdentityHeader()}); status != 500 {
		t.Errorf("identity fault: %d", status)
	}
}

// TestRoutesNeedOnlyRoleActions: every action the simulator checks is one the
// client declares, so the role the infra grants covers what ARM will ask for.
func TestRoutesNeedOnlyRoleActions(t *testing.T) {
	f := newFixture(t, armsim.Config{})
	tok := f.token(t, "")
	_, _ = f.sim.AddKey(kv, "k", "v1", true, nil, nil)
	_ = f.sim.AddConnection(kv, "pe-1", vault.StatusPending, "/pe")
	for _, a := range vault.RoleActions() {
		f.sim.Deny(a)
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", kv.String(), ""},
		{"GET", kv.String() + "/privateEndpointConnections", ""},
		{"GET", kv.String() + "/privateEndpointConnections/pe-1", ""},
		{"PUT", kv.String() + "/privateEndpointConnections/pe-1", `{"properties":{"privateLinkServiceConnectionState":{"status":"Approved"}}}`},
		{"GET", kv.String() + "/keys/k", ""},
		{"GET", kv.String() + "/keys/k/versions/v1", ""},
	} {
		if status, body, _ := f.arm(t, tok, r.method, r.path, "?api-version="+apiVersion, r.body); status != 403 {
			t.Errorf("%s %s with every role action denied: %d %s", r.method, r.path, status, body)
		}
	}
}
