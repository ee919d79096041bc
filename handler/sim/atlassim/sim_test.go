package atlassim

import (
	"cmp"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
)

// These tests check the wire details the guard's client tests (package
// atlas, through this simulator) do not reach: exact error bodies, digest
// edge cases, pagination links and the cluster shape.

const (
	grp       = "5f1e2d3c4b5a69788796a5b4"
	clientID  = "mdb_sa_id_test"
	secret    = "s3cret/with+chars=&"
	pub       = "pubkey"
	priv      = "private-key-value"
	acceptEAR = "application/vnd.atlas.2023-01-01+json"
	acceptCl  = "application/vnd.atlas.2024-08-05+json"
)

// clock is a settable clock shared by a test and the code under test.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock        { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	sim  *Sim
	base string
	hc   *http.Client
	clk  *clock
}

func start(t *testing.T, o Options) *env {
	t.Helper()
	ca, err := simtls.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{clk: newClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)), hc: ca.Client()}
	o.Now = e.clk.Now
	e.sim = New(o)
	if e.base, err = e.sim.Start(ca); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.hc.CloseIdleConnections(); e.sim.Close() })
	e.sim.AddServiceAccount(clientID, secret)
	e.sim.AddAPIKey(pub, priv)
	e.sim.PutProject(grp, AzureKeyVault{})
	return e
}

// do sends a request; a dropped connection answers status 0.
func (e *env) do(t *testing.T, method, path, auth, accept, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", accept)
	if method == "POST" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return &http.Response{Header: http.Header{}}, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// token returns "Bearer <a token of id>".
func (e *env) token(t *testing.T, id, sec string) string {
	t.Helper()
	resp, body := e.do(t, "POST", "/api/oauth/token", basic(id, sec), "", "grant_type=client_credentials")
	var tj struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(body), &tj); err != nil || resp.StatusCode != 200 || tj.ExpiresIn != 3600 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	return "Bearer " + tj.AccessToken
}

func basic(id, sec string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
	return req.Header.Get("Authorization")
}

func earPath(g string) string { return "/api/atlas/v2/groups/" + g + "/encryptionAtRest" }

func apiError(status int, code, detail string, params ...string) string {
	b, _ := json.Marshal(map[string]any{"detail": detail, "error": status, "errorCode": code, "parameters": append([]string{}, params...), "reason": http.StatusText(status)})
	return string(b)
}

// TestAnswers runs requests in order against one simulator: versioned
// Accept headers (406 otherwise), Atlas's and OAuth's error bodies byte for
// byte, faults and the token bucket.
func TestAnswers(t *testing.T) {
	e := start(t, Options{})
	e.sim.AddServiceAccount("blocked", "pw")
	e.sim.Block("blocked", true)
	tok, blocked := e.token(t, clientID, secret), e.token(t, "blocked", "pw")
	clusters := "/api/atlas/v2/groups/" + grp + "/clusters"
	notAcceptable := apiError(406, "INVALID_VERSION_DATE", "Invalid accept header or version date.")
	for _, tc := range []struct {
		name               string
		setup              func()
		method, path, auth string // method "" = GET, auth "" = the service account's token
		accept, body       string
		want               int    // 0: a dropped connection
		wantHdr, wantBody  string // wantHdr "Name: value"; "" = not checked
	}{
		{name: "EAR 2023-01-01", path: earPath(grp), accept: acceptEAR, want: 200, wantHdr: "Content-Type: application/vnd.atlas.2023-01-01+json;charset=utf-8"},
		{name: "plain json", path: earPath(grp), accept: "application/json", want: 406, wantHdr: "Content-Type: application/json", wantBody: notAcceptable},
		{name: "no Accept", path: earPath(grp), want: 406, wantBody: notAcceptable},
		{name: "clusters at the EAR version", path: clusters, accept: acceptEAR, want: 406, wantBody: notAcceptable},
		{name: "list of media types", path: clusters, accept: "application/json, " + acceptCl + ";q=0.9", want: 200, wantHdr: "Content-Type: application/vnd.atlas.2024-08-05+json;charset=utf-8"},
		{name: "unknown group", path: earPath("aaaaaaaaaaaaaaaaaaaaaaaa"), accept: acceptEAR, want: 404,
			wantBody: apiError(404, "GROUP_NOT_FOUND", "No group with ID aaaaaaaaaaaaaaaaaaaaaaaa exists.", "aaaaaaaaaaaaaaaaaaaaaaaa")},
		{name: "invalid group id", path: earPath("nothex"), accept: acceptEAR, want: 400, wantBody: apiError(400, "INVALID_GROUP_ID", "An invalid group ID nothex was specified.", "nothex")},
		{name: "unknown provider", path: earPath(grp) + "/IBM/privateEndpoints", accept: acceptEAR, want: 400, wantBody: apiError(400, "VALIDATION_ERROR", "No provider IBM exists.", "IBM")},
		{name: "unknown path", path: "/api/atlas/v2/nothing", accept: acceptEAR, want: 404, wantBody: apiError(404, "RESOURCE_NOT_FOUND", "Cannot find resource /api/atlas/v2/nothing.")},
		{name: "blocked principal", path: earPath(grp), auth: blocked, accept: acceptEAR, want: 403,
			wantBody: apiError(403, "IP_ADDRESS_NOT_ON_ACCESS_LIST", "IP address 127.0.0.1 is not allowed to access this resource.", "127.0.0.1")},
		{name: "unknown token", path: earPath(grp), auth: "Bearer nope", accept: acceptEAR, want: 401, wantBody: apiError(401, "INVALID_OR_EXPIRED_TOKEN", "Invalid or expired access token.")},
		{name: "token: credentials in the body", method: "POST", path: "/api/oauth/token", auth: "none",
			body: "grant_type=client_credentials&client_id=" + url.QueryEscape(clientID) + "&client_secret=" + url.QueryEscape(secret), want: 401,
			wantHdr: `WWW-Authenticate: Basic realm="oauth"`, wantBody: `{"error":"invalid_client","error_description":"invalid client credentials (HTTP Basic is required)"}`},
		{name: "token: other grant", method: "POST", path: "/api/oauth/token", auth: basic(clientID, secret), body: "grant_type=password", want: 400,
			wantBody: `{"error":"unsupported_grant_type","error_description":"only client_credentials is supported"}`},
		{name: "429 fault", setup: func() {
			e.sim.Inject(Fault{Match: "/encryptionAtRest", Status: 429, RetryAfter: 2500 * time.Millisecond, Times: 1})
		},
			path: earPath(grp), accept: acceptEAR, want: 429, wantHdr: "Retry-After: 3",
			wantBody: apiError(429, "RATE_LIMITED", "You have exceeded the rate limit. Please try again later.")},
		{name: "fault used up", path: earPath(grp), accept: acceptEAR, want: 200},
		{name: "fault on another path", setup: func() { e.sim.Inject(Fault{Match: "/clusters", Status: 500, Times: 1}) }, path: earPath(grp), accept: acceptEAR, want: 200},
		{name: "500 fault", path: clusters, accept: acceptCl, want: 500, wantBody: apiError(500, "UNEXPECTED_ERROR", "Unexpected error.")},
		{name: "503 fault", setup: func() { e.sim.Inject(Fault{Status: 503, Times: 1}) }, path: earPath(grp), accept: acceptEAR, want: 503,
			wantBody: apiError(503, "SERVICE_UNAVAILABLE", "Service is temporarily unavailable. Please try again later.")},
		{name: "raw body", setup: func() { e.sim.Inject(Fault{Body: "{oops", Times: 1}) }, path: earPath(grp), want: 200, wantBody: "{oops"},
		{name: "latency", setup: func() { e.sim.Inject(Fault{Latency: 10 * time.Millisecond, Times: 1}) }, path: earPath(grp), accept: acceptEAR, want: 200},
		{name: "drop", setup: func() { e.sim.Inject(Fault{Drop: true}); e.hc.CloseIdleConnections() }, path: earPath(grp), accept: acceptEAR, want: 0},
		{name: "cleared", setup: e.sim.ClearFaults, path: earPath(grp), accept: acceptEAR, want: 200},
		{name: "bucket", setup: func() { e.sim.SetRateLimit(1, 1) }, path: earPath(grp), accept: acceptEAR, want: 200, wantHdr: "RateLimit-Limit: 1"},
		{name: "bucket empty", path: earPath(grp), accept: acceptEAR, want: 429, wantHdr: "Retry-After: 1",
			wantBody: apiError(429, "RATE_LIMITED_TOKEN_BUCKET", "You have exceeded the rate limit of 1 requests per second. Please try again later.")},
		{name: "token endpoint not limited", method: "POST", path: "/api/oauth/token", auth: basic(clientID, secret), body: "grant_type=client_credentials", want: 200},
		{name: "bucket refilled", setup: func() { e.clk.Advance(time.Second) }, path: earPath(grp), accept: acceptEAR, want: 200},
		{name: "no limit", setup: func() { e.sim.SetRateLimit(0, 0) }, path: earPath(grp), accept: acceptEAR, want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			resp, body := e.do(t, cmp.Or(tc.method, "GET"), tc.path, cmp.Or(tc.auth, tok), tc.accept, tc.body)
			name, value, _ := strings.Cut(tc.wantHdr, ": ")
			if resp.StatusCode != tc.want || (tc.wantBody != "" && body != tc.wantBody) || (name != "" && resp.Header.Get(name) != value) {
				t.Errorf("got %d %v %s\nwant %d %s %s", resp.StatusCode, resp.Header, body, tc.want, tc.wantHdr, tc.wantBody)
			}
		})
	}
}

var challengeRE = regexp.MustCompile(`^Digest realm="MMS Public API", domain="", nonce="([0-9a-f]{32})", algorithm=MD5, qop="auth", stale=(true|false)$`)

func md5h(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// digestHeader answers a challenge as RFC 7616 says, for cnonce "c<nc>".
func digestHeader(user, pass, method, uri, nonce, nc string) string {
	ha1, ha2 := md5h(user+":MMS Public API:"+pass), md5h(method+":"+uri)
	resp := md5h(strings.Join([]string{ha1, nonce, nc, "c" + nc, "auth", ha2}, ":"))
	return fmt.Sprintf(`Digest username="%s", realm="MMS Public API", nonce="%s", uri="%s", response="%s", algorithm="MD5", qop=auth, nc=%s, cnonce="c%s"`,
		user, nonce, uri, resp, nc, nc)
}

func TestDigestVerification(t *testing.T) {
	uri := earPath(grp)
	valid := func(n string) string { return digestHeader(pub, priv, "GET", uri, n, "00000001") }
	for _, tc := range []struct {
		name string
		// auth builds the Authorization header from a fresh nonce; it may
		// send requests of its own first.
		auth      func(e *env, nonce string) string
		want      int
		wantStale bool
	}{
		{name: "valid", want: 200, auth: func(_ *env, n string) string { return valid(n) }},
		{name: "wrong password", want: 401, auth: func(_ *env, n string) string { return digestHeader(pub, priv+"x", "GET", uri, n, "00000001") }},
		{name: "unknown user", want: 401, auth: func(_ *env, n string) string { return digestHeader("nobody", priv, "GET", uri, n, "00000001") }},
		{name: "other uri", want: 401, auth: func(_ *env, n string) string {
			return digestHeader(pub, priv, "GET", earPath(strings.Repeat("a", 24)), n, "00000001")
		}},
		{name: "other method", want: 401, auth: func(_ *env, n string) string { return digestHeader(pub, priv, "POST", uri, n, "00000001") }},
		{name: "unknown nonce", want: 401, wantStale: true, auth: func(_ *env, _ string) string { return valid(strings.Repeat("0", 32)) }},
		{name: "expired nonce", want: 401, wantStale: true, auth: func(e *env, n string) string { e.clk.Advance(6 * time.Minute); return valid(n) }},
		{name: "replayed nonce count", want: 401, auth: func(e *env, n string) string {
			if resp, _ := e.do(t, "GET", uri, valid(n), acceptEAR, ""); resp.StatusCode != 200 {
				t.Fatalf("first use: %d", resp.StatusCode)
			}
			return valid(n)
		}},
		{name: "next nonce count", want: 200, auth: func(e *env, n string) string {
			e.do(t, "GET", uri, valid(n), acceptEAR, "")
			return digestHeader(pub, priv, "GET", uri, n, "00000002")
		}},
		{name: "no qop", want: 401, auth: func(_ *env, n string) string { return strings.Replace(valid(n), "qop=auth, ", "", 1) }},
		{name: "SHA-256", want: 401, auth: func(_ *env, n string) string { return strings.Replace(valid(n), `"MD5"`, `"SHA-256"`, 1) }},
		{name: "garbage", want: 401, auth: func(_ *env, _ string) string { return `Digest username="x", realm="unterminated` }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, Options{})
			resp, body := e.do(t, "GET", uri, "", acceptEAR, "")
			m := challengeRE.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
			if resp.StatusCode != 401 || m == nil || body != apiError(401, "USER_UNAUTHORIZED", "You are not authorized for this resource.") {
				t.Fatalf("no challenge in Atlas's format: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
			resp, body = e.do(t, "GET", uri, tc.auth(e, m[1]), acceptEAR, "")
			stale := strings.HasSuffix(resp.Header.Get("WWW-Authenticate"), "stale=true")
			if resp.StatusCode != tc.want || stale != tc.wantStale {
				t.Fatalf("%d (%s), stale %v; want %d, stale %v", resp.StatusCode, body, stale, tc.want, tc.wantStale)
			}
		})
	}
}

func TestPagination(t *testing.T) {
	e := start(t, Options{PageSizeCap: 3})
	var ids []string
	for i := range 5 {
		ids = append(ids, e.sim.AddEndpoint(grp, "US_EAST_2", fmt.Sprintf("pe-%d", i), StatusActive))
	}
	tok := e.token(t, clientID, secret)
	for _, tc := range []struct {
		query, want string // want: status, item indexes, link rels, totalCount
	}{
		{"itemsPerPage=2&pageNum=1", "200 [0 1] [self next] 5"},
		{"itemsPerPage=2&pageNum=2", "200 [2 3] [previous self next] 5"},
		{"itemsPerPage=2&pageNum=3", "200 [4] [previous self] 5"},
		{"itemsPerPage=2&pageNum=9", "200 [] [previous self] 5"},
		{"", "200 [0 1 2] [self next] 5"}, // 100 asked, 3 served
		{"includeCount=false&pageNum=2", "200 [3 4] [previous self] <nil>"},
		{"itemsPerPage=501", "400"},
		{"pageNum=0", "400"},
		{"includeCount=maybe", "400"},
	} {
		resp, body := e.do(t, "GET", earPath(grp)+"/AZURE/privateEndpoints?"+tc.query, tok, acceptEAR, "")
		got := fmt.Sprint(resp.StatusCode)
		var p struct {
			Links []struct {
				Href, Rel string
			} `json:"links"`
			Results []struct {
				ID, CloudProvider, Status string
			} `json:"results"`
			TotalCount *int `json:"totalCount"`
		}
		if resp.StatusCode == 200 && json.Unmarshal([]byte(body), &p) == nil && p.Results != nil {
			idx, rels := []int{}, []string{}
			for _, r := range p.Results {
				idx = append(idx, slices.Index(ids, r.ID))
				if r.CloudProvider != "AZURE" || r.Status != StatusActive {
					t.Errorf("%s: item %+v", tc.query, r)
				}
			}
			for _, l := range p.Links {
				rels = append(rels, l.Rel)
				if u, err := url.Parse(l.Href); err != nil || u.Scheme != "https" || u.Path != earPath(grp)+"/AZURE/privateEndpoints" {
					t.Errorf("%s: link %+v", tc.query, l)
				}
			}
			total := any("<nil>")
			if p.TotalCount != nil {
				total = *p.TotalCount
			}
			got = fmt.Sprint(resp.StatusCode, " ", idx, " ", rels, " ", total)
		}
		if got != tc.want {
			t.Errorf("%s: got %s (%s), want %s", tc.query, got, body, tc.want)
		}
	}
}

// TestShapes decodes answers into generic maps to check the wire names
// against the OpenAPI schemas, not against our own structs.
func TestShapes(t *testing.T) {
	e := start(t, Options{})
	valid := false
	e.sim.PutProject(grp, AzureKeyVault{AzureEnvironment: "AZURE", Enabled: true, KeyVaultName: "kv", RequirePrivateNetworking: true, Valid: &valid})
	valid = true // PutProject copied it
	id := e.sim.AddShardedCluster(grp, "orders", "AZURE", 2, "US_EAST_2", "US_WEST_2")
	e.sim.SetPaused(grp, "orders", true)
	if !e.sim.AddRegion(grp, "orders", "AWS", "US_EAST_1") || e.sim.AddRegion(grp, "nope", "AWS", "US_EAST_1") {
		t.Fatal("AddRegion")
	}
	tok := e.token(t, clientID, secret)
	get := func(path, accept string) map[string]any {
		resp, body := e.do(t, "GET", path, tok, accept, "")
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); resp.StatusCode != 200 || err != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		return m
	}
	akv, _ := get(earPath(grp), acceptEAR)["azureKeyVault"].(map[string]any)
	if _, secret := akv["secret"]; secret || akv["keyVaultName"] != "kv" || akv["enabled"] != true || akv["valid"] != false || akv["requirePrivateNetworking"] != true {
		t.Errorf("azureKeyVault %v", akv)
	}
	e.sim.SetValid(grp, true)
	if akv, _ := get(earPath(grp), acceptEAR)["azureKeyVault"].(map[string]any); akv["valid"] != true {
		t.Errorf("after SetValid: %v", akv)
	}
	c := get("/api/atlas/v2/groups/"+grp+"/clusters", acceptCl)["results"].([]any)[0].(map[string]any)
	if c["id"] != id || c["name"] != "orders" || c["paused"] != true || c["encryptionAtRestProvider"] != "AZURE" || c["groupId"] != grp || c["stateName"] != "IDLE" || c["clusterType"] != "SHARDED" {
		t.Errorf("cluster %v", c)
	}
	var regions []string
	for _, rs := range c["replicationSpecs"].([]any) {
		for _, rc := range rs.(map[string]any)["regionConfigs"].([]any) {
			m := rc.(map[string]any)
			regions = append(regions, m["providerName"].(string)+":"+m["regionName"].(string))
		}
	}
	if want := []string{"AZURE:US_EAST_2", "AZURE:US_WEST_2", "AWS:US_EAST_1", "AZURE:US_EAST_2", "AZURE:US_WEST_2", "AWS:US_EAST_1"}; !slices.Equal(regions, want) {
		t.Errorf("regions %v, want %v", regions, want)
	}
}
