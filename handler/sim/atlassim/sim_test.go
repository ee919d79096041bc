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
	"sync"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
)

const (
	grp       = "5f1e2d3c4b5a69788796a5b4"
	otherGrp  = "aaaaaaaaaaaaaaaaaaaaaaaa"
	clientID  = "mdb_sa_id_test"
	secret    = "s3cret/with+chars=&"
	pub       = "pubkey"
	priv      = "private-key-value"
	acceptEAR = "application/vnd.atlas.2023-01-01+json"
	acceptCl  = "application/vnd.atlas.2024-08-05+json"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	sim  *Sim
	base string
	hc   *http.Client
	ca   *simtls.Authority
	clk  *clock
}

func start(t *testing.T, o Options) *env {
	t.Helper()
	ca, err := simtls.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{ca: ca, clk: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	if o.Now == nil {
		o.Now = e.clk.Now
	}
	e.sim = New(o)
	e.base, err = e.sim.Start(ca)
	if err != nil {
		t.Fatal(err)
	}
	e.hc = ca.Client()
	t.Cleanup(func() {
		e.hc.CloseIdleConnections()
		if err := e.sim.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	e.sim.AddServiceAccount(clientID, secret)
	e.sim.AddAPIKey(pub, priv)
	return e
}

// do sends a request and returns the response with its body read.
func (e *env) do(t *testing.T, method, path string, h map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func (e *env) token(t *testing.T) string {
	t.Helper()
	resp, body := e.do(t, "POST", "/api/oauth/token", map[string]string{
		"Content-Type":  "application/x-www-form-urlencoded",
		"Authorization": basic(clientID, secret),
	}, "grant_type=client_credentials")
	if resp.StatusCode != 200 {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	var tj struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tj); err != nil {
		t.Fatal(err)
	}
	return tj.AccessToken
}

func basic(id, sec string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(sec))
	return req.Header.Get("Authorization")
}

func earPath(g string) string { return "/api/atlas/v2/groups/" + g + "/encryptionAtRest" }

func decodeError(t *testing.T, body []byte) apiErrorJSON {
	t.Helper()
	var ae apiErrorJSON
	if err := json.Unmarshal(body, &ae); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return ae
}

var challengeRE = regexp.MustCompile(`^Digest realm="MMS Public API", domain="", nonce="([0-9a-f]{32})", algorithm=MD5, qop="auth", stale=(true|false)$`)

func md5h(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func digestHeader(user, pass, method, uri, nonce, nc, cnonce string) string {
	ha1 := md5h(user + ":MMS Public API:" + pass)
	ha2 := md5h(method + ":" + uri)
	resp := md5h(strings.Join([]string{ha1, nonce, nc, cnonce, "auth", ha2}, ":"))
	return fmt.Sprintf(`Digest username="%s", realm="MMS Public API", nonce="%s", uri="%s", response="%s", algorithm="MD5", qop=auth, nc=%s, cnonce="%s"`,
		user, nonce, uri, resp, nc, cnonce)
}

func TestDigestVerification(t *testing.T) {
	uri := earPath(grp)
	for _, tc := range []struct {
		name string
		// auth builds the Authorization header from a fresh nonce; it may
		// send requests of its own first.
		auth      func(e *env, nonce string) string
		want      int
		wantStale bool
	}{
		{name: "valid", want: 200, auth: func(_ *env, n string) string { return digestHeader(pub, priv, "GET", uri, n, "00000001", "abcdef01") }},
		{name: "wrong password", want: 401, auth: func(_ *env, n string) string {
			return digestHeader(pub, priv+"x", "GET", uri, n, "00000001", "abcdef01")
		}},
		{name: "unknown user", want: 401, auth: func(_ *env, n string) string {
			return digestHeader("nobody", priv, "GET", uri, n, "00000001", "abcdef01")
		}},
		{name: "other uri", want: 401, auth: func(_ *env, n string) string {
			return digestHeader(pub, priv, "GET", earPath("aaaaaaaaaaaaaaaaaaaaaaaa"), n, "00000001", "abcdef01")
		}},
		{name: "other method", want: 401, auth: func(_ *env, n string) string { return digestHeader(pub, priv, "POST", uri, n, "00000001", "abcdef01") }},
		{name: "unknown nonce", want: 401, wantStale: true, auth: func(_ *env, _ string) string {
			return digestHeader(pub, priv, "GET", uri, strings.Repeat("0", 32), "00000001", "abcdef01")
		}},
		{name: "expired nonce", want: 401, wantStale: true, auth: func(e *env, n string) string {
			e.clk.Advance(6 * time.Minute)
			return digestHeader(pub, priv, "GET", uri, n, "00000001", "abcdef01")
		}},
		{name: "replayed nonce count", want: 401, auth: func(e *env, n string) string {
			h := digestHeader(pub, priv, "GET", uri, n, "00000001", "abcdef01")
			if resp, _ := e.do(t, "GET", uri, map[string]string{"Accept": acceptEAR, "Authorization": h}, ""); resp.StatusCode != 200 {
				t.Fatalf("first use: %d", resp.StatusCode)
			}
			return h
		}},
		{name: "next nonce count", want: 200, auth: func(e *env, n string) string {
			h := digestHeader(pub, priv, "GET", uri, n, "00000001", "abcdef01")
			e.do(t, "GET", uri, map[string]string{"Accept": acceptEAR, "Authorization": h}, "")
			return digestHeader(pub, priv, "GET", uri, n, "00000002", "abcdef02")
		}},
		{name: "no qop", want: 401, auth: func(_ *env, n string) string {
			return strings.Replace(digestHeader(pub, priv, "GET", uri, n, "00000001", "abcdef01"), "qop=auth, ", "", 1)
		}},
		{name: "SHA-256", want: 401, auth: func(_ *env, n string) string {
			return strings.Replace(digestHeader(pub, priv, "GET", uri, n, "00000001", "abcdef01"), `"MD5"`, `"SHA-256"`, 1)
		}},
		{name: "garbage", want: 401, auth: func(_ *env, _ string) string { return `Digest username="x", realm="unterminated` }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, Options{})
			e.sim.PutProject(grp, AzureKeyVault{})
			resp, body := e.do(t, "GET", uri, map[string]string{"Accept": acceptEAR}, "")
			m := challengeRE.FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
			if resp.StatusCode != 401 || m == nil || string(body) != `{"detail":"You are not authorized for this resource.","error":401,"errorCode":"USER_UNAUTHORIZED","parameters":[],"reason":"Unauthorized"}` {
				t.Fatalf("no challenge in Atlas's format: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
			h := tc.auth(e, m[1])
			resp, body = e.do(t, "GET", uri, map[string]string{"Accept": acceptEAR, "Authorization": h}, "")
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == 401 {
				stale := strings.HasSuffix(resp.Header.Get("WWW-Authenticate"), "stale=true")
				if stale != tc.wantStale {
					t.Errorf("challenge %q, want stale=%v", resp.Header.Get("WWW-Authenticate"), tc.wantStale)
				}
			}
		})
	}
}

func TestTokenEndpoint(t *testing.T) {
	grant := "grant_type=client_credentials"
	for _, tc := range []struct {
		name, auth, body string
		want             int
		wantCode         string
	}{
		{"valid", basic(clientID, secret), grant, 200, ""},
		{"wrong secret", basic(clientID, "x"), grant, 401, "invalid_client"},
		{"unknown client", basic("who", secret), grant, 401, "invalid_client"},
		{"credentials in body", "", grant + "&client_id=" + url.QueryEscape(clientID) + "&client_secret=" + url.QueryEscape(secret), 401, "invalid_client"},
		{"other grant", basic(clientID, secret), "grant_type=password", 400, "unsupported_grant_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, Options{TokenTTL: 30 * time.Minute})
			resp, body := e.do(t, "POST", "/api/oauth/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": tc.auth}, tc.body)
			var tj struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int    `json:"expires_in"`
				Error       string `json:"error"`
			}
			_ = json.Unmarshal(body, &tj)
			if resp.StatusCode != tc.want || resp.Header.Get("Cache-Control") != "no-store" || tj.Error != tc.wantCode ||
				(tc.want == 200) != (tj.TokenType == "Bearer" && tj.ExpiresIn == 1800 && len(tj.AccessToken) >= 32) {
				t.Errorf("%d %v %s, want %d %s", resp.StatusCode, resp.Header, body, tc.want, tc.wantCode)
			}
		})
	}
}

// TestAnswers: versioned Accept headers (406 otherwise) and Atlas's error
// bodies, byte for byte.
func TestAnswers(t *testing.T) {
	e := start(t, Options{})
	e.sim.PutProject(grp, AzureKeyVault{})
	e.sim.AddServiceAccount("blocked", "pw")
	e.sim.Block("blocked", true)
	tok := e.token(t)
	resp, body := e.do(t, "POST", "/api/oauth/token", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Authorization": basic("blocked", "pw")}, "grant_type=client_credentials")
	var blocked struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &blocked) != nil {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	const notAcceptable = `{"detail":"Invalid accept header or version date.","error":406,"errorCode":"INVALID_VERSION_DATE","parameters":[],"reason":"Not Acceptable"}`
	clusters := "/api/atlas/v2/groups/" + grp + "/clusters"
	for _, tc := range []struct {
		name, path, accept string
		want               int
		wantCT, wantBody   string // "" = not checked
		tok                string // "" = the service account's
	}{
		{"EAR 2023-01-01", earPath(grp), acceptEAR, 200, "application/vnd.atlas.2023-01-01+json;charset=utf-8", "", ""},
		{"EAR plain json", earPath(grp), "application/json", 406, "application/json", notAcceptable, ""},
		{"EAR no Accept", earPath(grp), "", 406, "", notAcceptable, ""},
		{"EAR unknown date", earPath(grp), "application/vnd.atlas.2099-01-01+json", 406, "", notAcceptable, ""},
		{"endpoints 2023-01-01", earPath(grp) + "/AZURE/privateEndpoints", acceptEAR, 200, "application/vnd.atlas.2023-01-01+json;charset=utf-8", "", ""},
		{"clusters 2024-08-05", clusters, acceptCl, 200, "application/vnd.atlas.2024-08-05+json;charset=utf-8", "", ""},
		{"clusters deprecated 2023-01-01", clusters, acceptEAR, 406, "", notAcceptable, ""},
		{"list of media types", clusters, "application/json, " + acceptCl + ";q=0.9", 200, "", "", ""},
		{"unknown group", earPath(otherGrp), acceptEAR, 404, "application/json",
			`{"detail":"No group with ID aaaaaaaaaaaaaaaaaaaaaaaa exists.","error":404,"errorCode":"GROUP_NOT_FOUND","parameters":["aaaaaaaaaaaaaaaaaaaaaaaa"],"reason":"Not Found"}`, ""},
		{"invalid group id", earPath("nothex"), acceptEAR, 400, "",
			`{"detail":"An invalid group ID nothex was specified.","error":400,"errorCode":"INVALID_GROUP_ID","parameters":["nothex"],"reason":"Bad Request"}`, ""},
		{"unknown provider", earPath(grp) + "/IBM/privateEndpoints", acceptEAR, 400, "",
			`{"detail":"No provider IBM exists.","error":400,"errorCode":"VALIDATION_ERROR","parameters":["IBM"],"reason":"Bad Request"}`, ""},
		{"unknown path", "/api/atlas/v2/nothing", acceptEAR, 404, "",
			`{"detail":"Cannot find resource /api/atlas/v2/nothing.","error":404,"errorCode":"RESOURCE_NOT_FOUND","parameters":[],"reason":"Not Found"}`, ""},
		{"blocked principal", earPath(grp), acceptEAR, 403, "", "", blocked.AccessToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(t, "GET", tc.path, map[string]string{"Accept": tc.accept, "Authorization": "Bearer " + cmp.Or(tc.tok, tok)}, "")
			if resp.StatusCode != tc.want || (tc.wantBody != "" && string(body) != tc.wantBody) {
				t.Errorf("got %d %s\nwant %d %s", resp.StatusCode, body, tc.want, tc.wantBody)
			}
			if ct := resp.Header.Get("Content-Type"); tc.wantCT != "" && ct != tc.wantCT {
				t.Errorf("Content-Type %q, want %q", ct, tc.wantCT)
			}
			if tc.want == 403 && decodeError(t, body).ErrorCode != "IP_ADDRESS_NOT_ON_ACCESS_LIST" {
				t.Errorf("blocked: %s", body)
			}
		})
	}
}

type pageJSON struct {
	Links   []linkJSON `json:"links"`
	Results []struct {
		ID, CloudProvider, Status string
	} `json:"results"`
	TotalCount *int `json:"totalCount"`
}

func TestPagination(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cap       int
		query     string
		want      int // status
		wantIDs   []int
		wantRels  []string
		wantTotal *int
	}{
		{name: "first page", query: "itemsPerPage=2&pageNum=1", want: 200, wantIDs: []int{0, 1}, wantRels: []string{"self", "next"}, wantTotal: ptr(5)},
		{name: "middle page", query: "itemsPerPage=2&pageNum=2", want: 200, wantIDs: []int{2, 3}, wantRels: []string{"previous", "self", "next"}, wantTotal: ptr(5)},
		{name: "last page", query: "itemsPerPage=2&pageNum=3", want: 200, wantIDs: []int{4}, wantRels: []string{"previous", "self"}, wantTotal: ptr(5)},
		{name: "past the end", query: "itemsPerPage=2&pageNum=9", want: 200, wantIDs: []int{}, wantRels: []string{"previous", "self"}, wantTotal: ptr(5)},
		{name: "defaults", query: "", want: 200, wantIDs: []int{0, 1, 2, 3, 4}, wantRels: []string{"self"}, wantTotal: ptr(5)},
		{name: "no count", query: "includeCount=false", want: 200, wantIDs: []int{0, 1, 2, 3, 4}, wantRels: []string{"self"}},
		{name: "server cap", cap: 2, query: "itemsPerPage=500", want: 200, wantIDs: []int{0, 1}, wantRels: []string{"self", "next"}, wantTotal: ptr(5)},
		{name: "too many per page", query: "itemsPerPage=501", want: 400},
		{name: "page zero", query: "pageNum=0", want: 400},
		{name: "bad includeCount", query: "includeCount=maybe", want: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, Options{PageSizeCap: tc.cap})
			e.sim.PutProject(grp, AzureKeyVault{})
			var ids []string
			for i := range 5 {
				ids = append(ids, e.sim.AddEndpoint(grp, "US_EAST_2", fmt.Sprintf("pe-%d", i), StatusActive))
			}
			tok := e.token(t)
			path := earPath(grp) + "/AZURE/privateEndpoints?" + tc.query
			resp, body := e.do(t, "GET", path, map[string]string{"Accept": acceptEAR, "Authorization": "Bearer " + tok}, "")
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want != 200 {
				return
			}
			var p pageJSON
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, r := range p.Results {
				got = append(got, slices.Index(ids, r.ID))
				if r.CloudProvider != "AZURE" || r.Status != StatusActive {
					t.Errorf("item %+v", r)
				}
			}
			if !slices.Equal(got, tc.wantIDs) && !(len(got) == 0 && len(tc.wantIDs) == 0) {
				t.Errorf("items %v, want %v", got, tc.wantIDs)
			}
			if p.Results == nil {
				t.Error("results is null, want []")
			}
			var rels []string
			for _, l := range p.Links {
				rels = append(rels, l.Rel)
				u, err := url.Parse(l.Href)
				if err != nil || u.Scheme != "https" || u.Path != earPath(grp)+"/AZURE/privateEndpoints" {
					t.Errorf("link %+v", l)
				}
			}
			if !slices.Equal(rels, tc.wantRels) {
				t.Errorf("link rels %v, want %v", rels, tc.wantRels)
			}
			if (p.TotalCount == nil) != (tc.wantTotal == nil) || (p.TotalCount != nil && *p.TotalCount != *tc.wantTotal) {
				t.Errorf("totalCount %v, want %v", p.TotalCount, tc.wantTotal)
			}
		})
	}
}

func ptr(n int) *int { return &n }

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
	tok := e.token(t)
	get := func(path, accept string) map[string]any {
		resp, body := e.do(t, "GET", path, map[string]string{"Accept": accept, "Authorization": "Bearer " + tok}, "")
		var m map[string]any
		if err := json.Unmarshal(body, &m); resp.StatusCode != 200 || err != nil {
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
	if c["id"] != id || c["name"] != "orders" || c["paused"] != true || c["encryptionAtRestProvider"] != "AZURE" || c["groupId"] != grp || c["stateName"] != "IDLE" {
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

func TestFaults(t *testing.T) {
	const rateLimited = `{"detail":"You have exceeded the rate limit. Please try again later.","error":429,"errorCode":"RATE_LIMITED","parameters":[],"reason":"Too Many Requests"}`
	for _, tc := range []struct {
		name  string
		fault Fault
		want  []string // per request: "status body" (body "" = not checked; "drop" = no answer)
	}{
		{"429 like Atlas, twice", Fault{Match: "/encryptionAtRest", Status: 429, RetryAfter: 2500 * time.Millisecond, Times: 2},
			[]string{"429 " + rateLimited, "429 " + rateLimited, "200 "}},
		{"other path unaffected", Fault{Match: "/clusters", Status: 503}, []string{"200 "}},
		{"503 until cleared", Fault{Status: 503}, []string{`503 {"detail":"Service is temporarily unavailable. Please try again later.","error":503,"errorCode":"SERVICE_UNAVAILABLE","parameters":[],"reason":"Service Unavailable"}`, "503 ", "clear", "200 "}},
		{"drop once", Fault{Match: "/encryptionAtRest", Drop: true, Times: 1}, []string{"drop", "200 "}},
		{"raw body", Fault{Body: "{oops", Times: 1}, []string{"200 {oops"}},
		{"latency", Fault{Latency: 30 * time.Millisecond, Times: 1}, []string{"200 "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, Options{})
			e.sim.PutProject(grp, AzureKeyVault{})
			tok := e.token(t)
			e.sim.Inject(tc.fault)
			e.hc.CloseIdleConnections() // a fresh connection: no silent replay by net/http
			for i, want := range tc.want {
				if want == "clear" {
					e.sim.ClearFaults()
					continue
				}
				req, _ := http.NewRequestWithContext(t.Context(), "GET", e.base+earPath(grp), nil)
				req.Header.Set("Accept", acceptEAR)
				req.Header.Set("Authorization", "Bearer "+tok)
				begin := time.Now()
				resp, err := e.hc.Do(req)
				if want == "drop" {
					if err == nil {
						resp.Body.Close()
						t.Fatalf("request %d answered %d, want a dropped connection", i, resp.StatusCode)
					}
					continue
				}
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				status, body, _ := strings.Cut(want, " ")
				if fmt.Sprint(resp.StatusCode) != status || (body != "" && string(b) != body) {
					t.Errorf("request %d: %d %s, want %s", i, resp.StatusCode, b, want)
				}
				if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "3" || time.Since(begin) < tc.fault.Latency {
					t.Errorf("request %d: Retry-After %q after %v", i, resp.Header.Get("Retry-After"), time.Since(begin))
				}
			}
		})
	}
}

func TestRateLimiter(t *testing.T) {
	e := start(t, Options{})
	e.sim.PutProject(grp, AzureKeyVault{})
	tok := e.token(t)
	e.sim.SetRateLimit(1, 2)
	get := func() *http.Response {
		resp, _ := e.do(t, "GET", earPath(grp), map[string]string{"Accept": acceptEAR, "Authorization": "Bearer " + tok}, "")
		return resp
	}
	for i, want := range []int{200, 200, 429} {
		if resp := get(); resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, want)
		}
	}
	resp, body := e.do(t, "GET", earPath(grp), map[string]string{"Accept": acceptEAR, "Authorization": "Bearer " + tok}, "")
	if ae := decodeError(t, body); resp.StatusCode != 429 || ae.ErrorCode != "RATE_LIMITED_TOKEN_BUCKET" || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("%d %s %v", resp.StatusCode, body, resp.Header)
	}
	// The token endpoint is not limited.
	e.token(t)
	e.clk.Advance(time.Second)
	if resp := get(); resp.StatusCode != 200 || resp.Header.Get("RateLimit-Limit") != "2" {
		t.Errorf("after refill: %d %v", resp.StatusCode, resp.Header)
	}
	e.sim.SetRateLimit(0, 0)
	for range 5 {
		if resp := get(); resp.StatusCode != 200 {
			t.Fatalf("unlimited: %d", resp.StatusCode)
		}
	}
}

// TestMutators: copies out, false for what is unknown.
func TestMutators(t *testing.T) {
	s := New(Options{})
	id := s.AddEndpoint(grp, "US_EAST_2", "", StatusInitiating)
	s.AddCluster(grp, "c1", "AZURE", "US_EAST_2")
	if _, ok := s.Project(grp); !ok || !hex24.MatchString(id) || !s.SetEndpoint(grp, id, StatusFailed, "boom") {
		t.Fatalf("AddEndpoint: id %q, project created %v", id, ok)
	}
	eps, cl := s.Endpoints(grp), s.Clusters(grp)
	eps[0].Status, cl[0].Regions[0] = "CHANGED", "X"
	if eps = s.Endpoints(grp); eps[0].Status != StatusFailed || eps[0].ErrorMessage != "boom" || s.Clusters(grp)[0].Regions[0] != "US_EAST_2" {
		t.Errorf("Endpoints and Clusters must return deep copies: %+v %+v", eps, s.Clusters(grp))
	}
	if s.SetEndpoint(grp, "nope", StatusActive, "") || s.SetEndpoint(otherGrp, id, StatusActive, "") || s.RemoveEndpoint(grp, "nope") ||
		s.SetPaused(grp, "nope", true) || s.Endpoints(otherGrp) != nil || s.Clusters(otherGrp) != nil {
		t.Error("an unknown endpoint, cluster or project was found")
	}
	if !s.RemoveEndpoint(grp, id) || len(s.Endpoints(grp)) != 0 {
		t.Error("RemoveEndpoint")
	}
}
