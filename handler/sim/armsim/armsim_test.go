package armsim_test

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// These tests check the wire details the guard's vault tests (through this
// simulator and the real armkeyvault client) do not reach: ARM's answers to
// requests the client never sends wrong, and If-Match as RFC 9110 has it.

var kv = resource.ID{SubscriptionID: "sub-1", ResourceGroup: "rg-1", Name: "kv-1"}

const apiVersion = "?api-version=2024-11-01" // what armkeyvault v1.5.0 sends

type fixture struct {
	sim         *armsim.Server
	base, idURL string
	client      *http.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := simtls.New()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := &fixture{sim: armsim.New(armsim.Config{Now: func() time.Time { return now }}), client: ca.Client()}
	if f.base, err = f.sim.Start(ca); err != nil {
		t.Fatal(err)
	}
	if f.idURL, err = f.sim.StartIdentity(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.sim.Close)
	f.sim.AddVault(kv, nil)
	return f
}

// do sends a request with the headers given as "Name: value".
func (f *fixture) do(t *testing.T, method, u, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hdr {
		if k, v, ok := strings.Cut(h, ": "); ok {
			req.Header.Set(k, v)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

const identityQuery = "?resource=https%3A%2F%2Fmanagement.core.windows.net%2F&api-version=2019-08-01"

func (f *fixture) token(t *testing.T) string {
	t.Helper()
	status, body, _ := f.do(t, "GET", f.idURL+identityQuery+"&client_id=uami-1", "", "X-IDENTITY-HEADER: "+f.sim.IdentityHeader())
	var tok struct{ Access_token, Expires_on, Token_type string }
	if err := json.Unmarshal([]byte(body), &tok); err != nil || status != 200 || tok.Token_type != "Bearer" ||
		tok.Expires_on != strconv.FormatInt(time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC).Unix(), 10) {
		t.Fatalf("token: %d %s", status, body)
	}
	return tok.Access_token
}

func TestIdentityEndpoint(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name, query, header string
		status              int
	}{
		{"wrong header", identityQuery, "nope", 401},
		{"missing api-version", "?resource=https%3A%2F%2Fmanagement.azure.com%2F", "", 400},
		{"old api-version", identityQuery + "0", "", 400},
		{"foreign resource", "?resource=https%3A%2F%2Fvault.azure.net&api-version=2019-08-01", "", 400},
		{"by object id", identityQuery + "&object_id=x", "", 400},
	} {
		status, body, _ := f.do(t, "GET", f.idURL+tt.query, "", "X-IDENTITY-HEADER: "+cmp.Or(tt.header, f.sim.IdentityHeader()))
		var e struct{ StatusCode int }
		if status != tt.status || json.Unmarshal([]byte(body), &e) != nil || e.StatusCode != status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, body, tt.status)
		}
	}
}

// TestAnswers runs requests in order against one simulator; PUT rows send
// If-Match and body etags derived from the connection's current etag.
func TestAnswers(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t)
	must(t, f.sim.AddConnection(kv, "pe-1", vault.StatusPending, "/pe"))
	changes := 0
	f.sim.OnChange(func(armsim.Change) { changes++ })
	vaultPath, conn := kv.String(), kv.String()+"/privateEndpointConnections/pe-1"+apiVersion
	approve := `{"properties":{"privateLinkServiceConnectionState":{"status":"Approved","description":"ok"}}}`
	pending := func() { must(t, f.sim.SetConnectionStatus(kv, "pe-1", vault.StatusPending, "")) }
	for _, tt := range []struct {
		name   string
		setup  func()
		method string // "" = GET
		path   string
		auth   string // "" = the token, "-" = none
		body   string // "%s" = the current etag
		hdr    string // "If-Match: …", "%s" = the current etag
		want   int
		code   string // ARM error code, or a substring of a 200 body; "" = no body
		header string // "Name: value" the answer carries
	}{
		{name: "no token", path: vaultPath + apiVersion, auth: "-", want: 401, code: "AuthenticationFailed", header: `WWW-Authenticate: Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", error_description="The authentication failed because of missing 'Authorization' header."`},
		{name: "unknown token", path: vaultPath + apiVersion, auth: "Bearer forged", want: 401, code: "InvalidAuthenticationToken"},
		{name: "no api-version", path: vaultPath, want: 400, code: "MissingApiVersionParameter"},
		{name: "unknown api-version", path: vaultPath + "?api-version=2099-01-01", want: 400, code: "NoRegisteredProviderFound"},
		{name: "missing vault", path: vaultPath + "x" + apiVersion, want: 404, code: "ResourceNotFound"},
		{name: "connections of a missing vault", path: vaultPath + "x/privateEndpointConnections" + apiVersion, want: 404, code: "VaultNotFound"},
		{name: "missing connection: 204, no body", path: vaultPath + "/privateEndpointConnections/nope" + apiVersion, want: 204},
		{name: "missing key", path: vaultPath + "/keys/nope" + apiVersion, want: 404, code: "KeyNotFound"},
		{name: "unsupported route", method: "DELETE", path: vaultPath + apiVersion, want: 400, code: "UnsupportedRoute"},
		{name: "provider", path: "/subscriptions/sub-1/providers/Microsoft.EventGrid", want: 200, code: `"registrationState":"Registered"`},
		{name: "429 fault", setup: func() {
			f.sim.Inject(armsim.Fault{Match: armsim.RouteVaultGet, Status: 429, RetryAfter: 1500 * time.Millisecond, Times: 1})
		}, path: vaultPath + apiVersion, want: 429, code: "TooManyRequests", header: "retry-after-ms: 1500"},
		{name: "fault on another route", setup: func() { f.sim.Inject(armsim.Fault{Match: armsim.RouteKeyGet, Status: 500, Times: 1}) },
			path: vaultPath + apiVersion, want: 200, code: `"publicNetworkAccess":"Disabled"`},
		{name: "If-Match mismatch", method: "PUT", path: conn, body: approve, hdr: `If-Match: "stale"`, want: 412, code: "PreconditionFailed"},
		{name: "If-Match weak never matches", method: "PUT", path: conn, body: approve, hdr: `If-Match: W/%s`, want: 412, code: "PreconditionFailed"},
		{name: "body etag mismatch", method: "PUT", path: conn, body: `{"etag":"\"stale\"",` + approve[1:], want: 409, code: "Conflict"},
		{name: "no status", method: "PUT", path: conn, body: `{"properties":{}}`, want: 400, code: "InvalidRequestContent"},
		{name: "malformed", method: "PUT", path: conn, body: `{`, want: 400, code: "InvalidRequestContent"},
		{name: "If-Match list", method: "PUT", path: conn, body: `{"etag":%s,` + approve[1:], hdr: `If-Match: "other", %s`, want: 200, code: `"provisioningState":"Updating"`},
		{name: "one read still Updating", path: conn, want: 200, code: `"provisioningState":"Updating"`},
		{name: "then Succeeded", path: conn, want: 200, code: `"provisioningState":"Succeeded"`},
		{name: "If-Match *", setup: pending, method: "PUT", path: conn, body: approve, hdr: "If-Match: *", want: 200, code: `"status":"Approved"`},
		{name: "checks off", setup: func() { pending(); f.sim.SetEtagChecks(false, false) },
			method: "PUT", path: conn, body: `{"etag":"\"stale\"",` + approve[1:], hdr: `If-Match: "stale"`, want: 200, code: `"status":"Approved"`},
		{name: "rejected cannot be approved", setup: func() { must(t, f.sim.SetConnectionStatus(kv, "pe-1", vault.StatusRejected, "")) },
			method: "PUT", path: conn, body: approve, want: 400, code: "InvalidPrivateEndpointConnectionStateTransition"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			c, _ := f.sim.Connection(kv, "pe-1")
			auth := "Authorization: " + cmp.Or(tt.auth, "Bearer "+tok)
			if tt.auth == "-" {
				auth = ""
			}
			status, body, hdr := f.do(t, cmp.Or(tt.method, "GET"), f.base+tt.path, strings.ReplaceAll(tt.body, "%s", strconv.Quote(c.Etag)),
				auth, "Content-Type: application/json", strings.ReplaceAll(tt.hdr, "%s", c.Etag))
			var e struct {
				Error struct{ Code, Message string }
			}
			_ = json.Unmarshal([]byte(body), &e)
			name, value, _ := strings.Cut(tt.header, ": ")
			if status != tt.want || (tt.code == "") != (body == "") || (status >= 400 && (e.Error.Code != tt.code || e.Error.Message == "")) ||
				(status < 400 && !strings.Contains(body, tt.code)) || (name != "" && hdr.Get(name) != value) {
				t.Errorf("%d %s %v, want %d %s %s", status, body, hdr, tt.want, tt.code, tt.header)
			}
			if after, _ := f.sim.Connection(kv, "pe-1"); tt.method == "PUT" && status != 200 && after != c {
				t.Errorf("a refused PUT changed the connection: %+v", after)
			}
		})
	}
	if changes != 3 {
		t.Errorf("%d changes reported, want 3 (one per applied PUT)", changes)
	}
}

// TestRoutesNeedOnlyRoleActions: every action the simulator checks is one the
// client declares, so the role the infra grants covers what ARM will ask for.
func TestRoutesNeedOnlyRoleActions(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t)
	_, _ = f.sim.AddKey(kv, "k", "v1", true, nil, nil)
	must(t, f.sim.AddConnection(kv, "pe-1", vault.StatusPending, "/pe"))
	for _, a := range vault.RoleActions() {
		f.sim.Deny(a)
	}
	for _, r := range []string{"GET ", "GET /privateEndpointConnections", "GET /privateEndpointConnections/pe-1", "PUT /privateEndpointConnections/pe-1", "GET /keys/k", "GET /keys/k/versions/v1"} {
		method, path, _ := strings.Cut(r, " ")
		body := `{"properties":{"privateLinkServiceConnectionState":{"status":"Approved"}}}`
		if status, b, _ := f.do(t, method, f.base+kv.String()+path+apiVersion, body, "Authorization: Bearer "+tok); status != 403 {
			t.Errorf("%s with every role action denied: %d %s", r, status, b)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
