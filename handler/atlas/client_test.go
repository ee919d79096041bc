package atlas

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

const (
	group    = "5f1e2d3c4b5a69788796a5b4"
	otherGrp = "aaaaaaaaaaaaaaaaaaaaaaaa"
	saID     = "mdb_sa_id_65f0c0ffee0123456789abcd"
	saSecret = "mdb_sa_sk_Sup3r/Secret+value=0123456789"
	pubKey   = "qwertyui"
	privKey  = "PRIVATE-7e3f0c1a-4b2d-4c8e-9f10-1234567890ab"

	authSA  = "service account"
	authKey = "API key"
)

var authMethods = []string{authSA, authKey}

// clock is a settable clock shared by a test and the code under test.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock        { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type fixture struct {
	sim      *atlassim.Sim
	ca       *simtls.Authority
	base     string
	simClock *clock
}

func newFixture(tb testing.TB, o atlassim.Options) *fixture {
	tb.Helper()
	ca, err := simtls.New()
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{ca: ca, simClock: newClock(time.Now())}
	o.Now = f.simClock.Now
	f.sim = atlassim.New(o)
	if f.base, err = f.sim.Start(ca); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.sim.Close() })
	f.sim.AddServiceAccount(saID, saSecret)
	f.sim.AddAPIKey(pubKey, privKey)
	return f
}

// client returns a Client for auth whose retry waits are recorded instead of
// slept (and advance the simulator's clock); mod may change its options.
func (f *fixture) client(tb testing.TB, auth string, mod func(*Options)) (*Client, *[]time.Duration) {
	tb.Helper()
	tr := f.ca.Transport()
	tb.Cleanup(tr.CloseIdleConnections)
	o := Options{BaseURL: f.base, HTTPClient: &http.Client{Transport: tr, Timeout: 10 * time.Second}, ClientID: saID, ClientSecret: saSecret}
	if auth == authKey {
		o.ClientID, o.ClientSecret, o.PublicKey, o.PrivateKey = "", "", pubKey, privKey
	}
	var mu sync.Mutex
	var waits []time.Duration
	o.Sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		f.simClock.Advance(d)
		return ctx.Err()
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	return c, &waits
}

var seededEAR = AzureKeyVault{
	AzureEnvironment: "AZURE", ClientID: "6f1c5b9e-8d3a-4e2f-9b7c-1a2b3c4d5e6f", Enabled: true,
	KeyIdentifier: "https://kv-guard.vault.azure.net/keys/atlas-ear/0123456789abcdef0123456789abcdef",
	KeyVaultName:  "kv-guard", RequirePrivateNetworking: true, ResourceGroupName: "rg-guard",
	SubscriptionID: "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", TenantID: "11111111-2222-3333-4444-555555555555", Valid: new(true),
}

// seed fills the project used by most tests.
func seed(s *atlassim.Sim) {
	s.PutProject(group, atlassim.AzureKeyVault(seededEAR))
	s.AddEndpoint(group, "US_EAST_2", "pe-conn-eastus2", atlassim.StatusPendingAcceptance)
	s.AddEndpoint(group, "EUROPE_WEST", "", atlassim.StatusInitiating)
	s.AddShardedCluster(group, "orders", "AZURE", 2, "US_EAST_2", "US_WEST_2")
	s.AddCluster(group, "reports", "NONE", "EUROPE_WEST")
	s.SetPaused(group, "reports", true)
}

// readAll reads the project's three documents.
func readAll(ctx context.Context, c *Client, groupID string) (ear EncryptionAtRest, eps []PrivateEndpoint, cls []Cluster, err error) {
	ear, err = c.EncryptionAtRest(ctx, groupID)
	if err == nil {
		eps, err = c.PrivateEndpoints(ctx, groupID)
	}
	if err == nil {
		cls, err = c.Clusters(ctx, groupID)
	}
	return ear, eps, cls, err
}

func TestReadsAProjectWithEitherCredential(t *testing.T) {
	for _, tc := range []struct {
		auth string
		// round trips of the first and of a later full read (config +
		// endpoints + clusters)
		firstTrips, laterTrips int64
		byAuth                 map[string]int64 // simulator's view of one later read
	}{
		{auth: authSA, firstTrips: 4, laterTrips: 3, byAuth: map[string]int64{atlassim.AuthBearer: 3}},
		{auth: authKey, firstTrips: 6, laterTrips: 6, byAuth: map[string]int64{atlassim.AuthNone: 3, atlassim.AuthDigest: 3}},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{})
			seed(f.sim)
			c, _ := f.client(t, tc.auth, nil)
			calls := &meter.Calls{}
			ear, eps, cls, err := readAll(meter.WithCalls(t.Context(), calls), c, group)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ear, EncryptionAtRest{AzureKeyVault: seededEAR}) {
				t.Errorf("EncryptionAtRest = %+v", ear)
			}
			var wantEPs []PrivateEndpoint
			for _, e := range f.sim.Endpoints(group) {
				wantEPs = append(wantEPs, PrivateEndpoint{ID: e.ID, CloudProvider: "AZURE", RegionName: e.RegionName,
					Status: e.Status, ErrorMessage: e.ErrorMessage, PrivateEndpointConnectionName: e.PrivateEndpointConnectionName})
			}
			if !reflect.DeepEqual(eps, wantEPs) || !eps[0].Requesting() {
				t.Errorf("PrivateEndpoints = %+v, want %+v", eps, wantEPs)
			}
			simCls := f.sim.Clusters(group)
			wantCls := []Cluster{
				{ID: simCls[0].ID, Name: "orders", StateName: "IDLE", EncryptionAtRestProvider: "AZURE", RegionConfigs: []RegionConfig{{ProviderName: "AZURE", RegionName: "US_EAST_2"}, {ProviderName: "AZURE", RegionName: "US_WEST_2"}}},
				{ID: simCls[1].ID, Name: "reports", Paused: true, StateName: "IDLE", EncryptionAtRestProvider: "NONE", RegionConfigs: []RegionConfig{{ProviderName: "AZURE", RegionName: "EUROPE_WEST"}}},
			}
			if !reflect.DeepEqual(cls, wantCls) || !cls[0].UsesAzureKeys() {
				t.Errorf("Clusters = %+v, want %+v", cls, wantCls)
			}
			if calls.Atlas() != tc.firstTrips || f.sim.Requests() != tc.firstTrips {
				t.Errorf("first read: %d round trips counted, %d seen; want %d", calls.Atlas(), f.sim.Requests(), tc.firstTrips)
			}

			f.sim.ResetStats()
			calls = &meter.Calls{}
			if _, _, _, err := readAll(meter.WithCalls(t.Context(), calls), c, group); err != nil {
				t.Fatal(err)
			}
			if got := f.sim.Stats().ByAuth; calls.Atlas() != tc.laterTrips || !reflect.DeepEqual(got, tc.byAuth) {
				t.Errorf("later read: %d round trips, auth kinds %v; want %d, %v", calls.Atlas(), got, tc.laterTrips, tc.byAuth)
			}

			// An empty project: zero config, empty non-nil lists.
			f.sim.PutProject(otherGrp, atlassim.AzureKeyVault{})
			ear, eps, cls, err = readAll(t.Context(), c, otherGrp)
			if err != nil || ear.AzureKeyVault.Enabled || ear.AzureKeyVault.Valid != nil || eps == nil || len(eps) != 0 || cls == nil || len(cls) != 0 {
				t.Errorf("empty project: %+v, %#v, %#v, %v", ear, eps, cls, err)
			}
		})
	}
}

func TestServiceAccountTokenLifecycle(t *testing.T) {
	for _, tc := range []struct {
		name      string
		act       func(f *fixture, clientClock *clock) // between two reads
		wantTrips int64                                // round trips of the second read
		want401   int64
	}{
		{name: "cached token is reused", act: func(*fixture, *clock) {}, wantTrips: 1},
		{name: "refreshed before it expires", act: func(f *fixture, cc *clock) {
			cc.Advance(59*time.Minute + 30*time.Second) // past the 1-minute margin
			f.simClock.Advance(59*time.Minute + 30*time.Second)
		}, wantTrips: 2}, // token + call, no 401
		{name: "revoked token", act: func(f *fixture, _ *clock) { f.sim.RevokeTokens() }, wantTrips: 3, want401: 1},
		{name: "expired early at the server", act: func(f *fixture, _ *clock) { f.simClock.Advance(2 * time.Hour) }, wantTrips: 3, want401: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{TokenTTL: time.Hour})
			seed(f.sim)
			cc := newClock(time.Now())
			c, _ := f.client(t, authSA, func(o *Options) { o.Now = cc.Now })
			calls := &meter.Calls{}
			if _, err := c.EncryptionAtRest(meter.WithCalls(t.Context(), calls), group); err != nil || calls.Atlas() != 2 {
				t.Fatalf("first call: %v, %d round trips, want 2 (token + call)", err, calls.Atlas())
			}
			tc.act(f, cc)
			f.sim.ResetStats()
			calls = &meter.Calls{}
			if _, err := c.EncryptionAtRest(meter.WithCalls(t.Context(), calls), group); err != nil {
				t.Fatalf("second call: %v", err)
			}
			if got := f.sim.Stats().ByStatus[http.StatusUnauthorized]; calls.Atlas() != tc.wantTrips || got != tc.want401 {
				t.Errorf("second call: %d round trips, %d answers 401; want %d, %d", calls.Atlas(), got, tc.wantTrips, tc.want401)
			}
		})
	}
}

func TestPagination(t *testing.T) {
	for _, tc := range []struct {
		name              string
		cap, items, pages int
	}{
		{name: "server serves 2 per page", cap: 2, items: 5, pages: 3},
		{name: "1001 items in pages of 500", items: 1001, pages: 3},
		{name: "exactly one full page", items: 500, pages: 1},
		{name: "empty", items: 0, pages: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{PageSizeCap: tc.cap})
			f.sim.PutProject(group, atlassim.AzureKeyVault{Enabled: true})
			for i := range tc.items {
				f.sim.AddEndpoint(group, "US_EAST_2", "pe-"+strings.Repeat("x", i%7), atlassim.StatusActive)
				f.sim.AddCluster(group, "c"+strings.Repeat("y", i%5), "AZURE", "US_EAST_2")
			}
			c, _ := f.client(t, authSA, nil)
			_, eps, cls, err := readAll(t.Context(), c, group)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs, wantIDs []string
			for _, e := range eps {
				gotIDs = append(gotIDs, e.ID)
			}
			for _, c := range cls {
				gotIDs = append(gotIDs, c.ID)
			}
			for _, e := range f.sim.Endpoints(group) {
				wantIDs = append(wantIDs, e.ID)
			}
			for _, c := range f.sim.Clusters(group) {
				wantIDs = append(wantIDs, c.ID)
			}
			if !reflect.DeepEqual(gotIDs, wantIDs) {
				t.Errorf("read %d items, want %d in the simulator's order", len(gotIDs), len(wantIDs))
			}
			st := f.sim.Stats()
			if p := int64(tc.pages); st.ByRoute[atlassim.RoutePrivateEndpoints] != p || st.ByRoute[atlassim.RouteClusters] != p {
				t.Errorf("pages fetched %v, want %d of each", st.ByRoute, tc.pages)
			}
		})
	}
}

func TestMorePages(t *testing.T) {
	n := func(v int) *int { return &v }
	for _, tc := range []struct {
		name            string
		got, total      int
		totalCount      *int
		haveLinks, next bool
		want            bool
	}{
		{name: "empty page stops", got: 0, total: 10, totalCount: n(20), haveLinks: true, next: true},
		{name: "links: next", got: 2, total: 2, haveLinks: true, next: true, want: true},
		{name: "links: no next despite count", got: 2, total: 2, totalCount: n(9), haveLinks: true},
		{name: "count only: more", got: 500, total: 500, totalCount: n(501), want: true},
		{name: "count only: done", got: 1, total: 501, totalCount: n(501)},
		{name: "nothing: full page", got: 500, total: 500, want: true},
		{name: "nothing: short page", got: 499, total: 999},
	} {
		if got := morePages(tc.got, tc.total, tc.totalCount, tc.haveLinks, tc.next); got != tc.want {
			t.Errorf("%s: morePages = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRetries(t *testing.T) {
	ear := "/encryptionAtRest"
	for _, tc := range []struct {
		name     string
		fault    *atlassim.Fault // injected after the first call
		setup    func(f *fixture)
		opts     func(o *Options)
		timeout  time.Duration
		wantErr  string // "" = success; else a substring of a transient error
		wantCode string
		waits    []time.Duration // exact, unless checkWaits is set
		check    func(w []time.Duration) bool
		attempts int64 // EAR requests the simulator saw (0: not checked)
	}{
		{name: "429 waits Retry-After", fault: &atlassim.Fault{Match: ear, Status: 429, RetryAfter: 7 * time.Second, Times: 1}, waits: []time.Duration{7 * time.Second}, attempts: 2},
		{name: "Retry-After capped by MaxRetryWait", fault: &atlassim.Fault{Match: ear, Status: 429, RetryAfter: 90 * time.Second, Times: 2}, opts: func(o *Options) { o.MaxRetryWait = 20 * time.Second }, waits: []time.Duration{20 * time.Second, 20 * time.Second}, attempts: 3},
		{name: "token bucket 429 then refilled", setup: func(f *fixture) {
			f.sim.SetRateLimit(2, 2)
			drain(f, 2) // the simulator's clock stands still: no refill
		}, waits: []time.Duration{time.Second}, attempts: 2},
		{name: "503 backs off exponentially", fault: &atlassim.Fault{Match: ear, Status: 503, Times: 2},
			check: func(w []time.Duration) bool {
				return len(w) == 2 && w[0] >= 125*time.Millisecond && w[0] <= 250*time.Millisecond && w[1] >= 250*time.Millisecond && w[1] <= 500*time.Millisecond
			}, attempts: 3},
		{name: "wait would pass the deadline", fault: &atlassim.Fault{Match: ear, Status: 429, RetryAfter: 7 * time.Second},
			timeout: 2 * time.Second, wantErr: "would pass the deadline", wantCode: "RATE_LIMITED", attempts: 1},
		{name: "gives up after MaxAttempts", fault: &atlassim.Fault{Match: ear, Status: 500},
			opts: func(o *Options) { o.MaxAttempts = 3 }, wantErr: "gave up after 3 attempts", wantCode: "UNEXPECTED_ERROR",
			check: func(w []time.Duration) bool { return len(w) == 2 }, attempts: 3},
		// On a reused connection net/http itself may replay the GET once,
		// so the client may see no failure at all.
		{name: "dropped connection is retried", fault: &atlassim.Fault{Match: ear, Drop: true, Times: 1},
			check: func(w []time.Duration) bool { return len(w) <= 1 }},
		{name: "dropped connections until the last attempt", fault: &atlassim.Fault{Match: ear, Drop: true},
			opts: func(o *Options) { o.MaxAttempts = 2 }, wantErr: "gave up after 2 attempts", check: func(w []time.Duration) bool { return len(w) == 1 }},
	} {
		for _, auth := range authMethods {
			t.Run(tc.name+"/"+auth, func(t *testing.T) {
				f := newFixture(t, atlassim.Options{})
				seed(f.sim)
				c, waits := f.client(t, auth, tc.opts)
				// Fetch the token first so that faults only meet API calls.
				if _, err := c.Clusters(t.Context(), group); err != nil {
					t.Fatal(err)
				}
				if tc.fault != nil {
					f.sim.Inject(*tc.fault)
				} else {
					tc.setup(f)
				}
				f.sim.ResetStats()
				ctx, cancel := context.WithTimeout(t.Context(), cmp.Or(tc.timeout, time.Minute))
				defer cancel()
				_, err := c.EncryptionAtRest(ctx, group)
				var ae *Error
				if (err != nil) != (tc.wantErr != "") || (err != nil && (!strings.Contains(err.Error(), tc.wantErr) || !transient.Is(err))) ||
					(tc.wantCode != "" && (!errors.As(err, &ae) || ae.ErrorCode != tc.wantCode)) {
					t.Fatalf("err = %v, want a transient one with %q %s", err, tc.wantErr, tc.wantCode)
				}
				if tc.check != nil && !tc.check(*waits) || tc.check == nil && !reflect.DeepEqual(*waits, tc.waits) {
					t.Errorf("waits = %v, want %v", *waits, tc.waits)
				}
				// Digest: only authenticated requests reach the route
				// handler, but every attempt starts unauthenticated.
				got := f.sim.Stats().ByRoute[atlassim.RouteEncryptionAtRest]
				if auth == authKey {
					got = f.sim.Stats().ByAuth[atlassim.AuthNone]
				}
				if tc.attempts > 0 && got != tc.attempts {
					t.Errorf("attempts seen by the simulator = %d, want %d", got, tc.attempts)
				}
			})
		}
	}
}

// drain spends n tokens of the simulator's rate limiter with unauthenticated
// requests.
func drain(f *fixture, n int) {
	hc := f.ca.Client()
	defer hc.CloseIdleConnections()
	for range n {
		if resp, err := hc.Get(f.base + "/api/atlas/v2/groups/" + group + "/encryptionAtRest"); err == nil {
			resp.Body.Close()
		}
	}
}

// TestServiceUnavailableUntilDeadline: real waits, many attempts, and the
// context deadline ends them all without leaking a goroutine.
func TestServiceUnavailableUntilDeadline(t *testing.T) {
	for _, auth := range authMethods {
		t.Run(auth, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{})
			seed(f.sim)
			var tr *http.Transport
			c, _ := f.client(t, auth, func(o *Options) {
				o.MaxAttempts, o.MaxRetryWait, o.Sleep = 1000, 5*time.Millisecond, nil // real waits
				tr = o.HTTPClient.Transport.(*http.Transport)
			})
			before := runtime.NumGoroutine()
			f.sim.Inject(atlassim.Fault{Status: 503}) // token endpoint too
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := c.PrivateEndpoints(ctx, group)
			if err == nil || !transient.Is(err) || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "PrivateEndpoints") {
				t.Errorf("err = %v, want a transient one naming the call and the 503", err)
			}
			if d := time.Since(start); d > 2*time.Second || f.sim.Requests() < 5 {
				t.Errorf("returned after %s and %d attempts", d, f.sim.Requests())
			}
			tr.CloseIdleConnections()
			for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("goroutines: %d before, %d after", before, runtime.NumGoroutine())
				}
			}
		})
	}
}

// TestErrors: answers no retry can fix are permanent *Errors naming the call,
// and cost no retries; unusable bodies are described, never repeated.
func TestErrors(t *testing.T) {
	ear := func(ctx context.Context, c *Client) error { _, err := c.EncryptionAtRest(ctx, group); return err }
	get := func(op, path, accept string) func(ctx context.Context, c *Client) error {
		return func(ctx context.Context, c *Client) error {
			var v any
			return c.get(ctx, op, "/api/atlas/v2/groups/"+group+path, nil, accept, &v)
		}
	}
	for _, tc := range []struct {
		name      string
		auth      string
		opts      func(o *Options)
		fault     *atlassim.Fault
		setup     func(f *fixture)
		call      func(ctx context.Context, c *Client) error
		status    int
		code, op  string
		want      []string // substrings of the message
		trips     int64    // -1: not checked
		transient bool
	}{
		{name: "wrong client secret", auth: authSA, opts: func(o *Options) { o.ClientSecret = "wrong-" + saSecret }, status: 401, code: "invalid_client", op: "EncryptionAtRest token", trips: 1},
		{name: "unknown client id", auth: authSA, opts: func(o *Options) { o.ClientID = "nobody" }, status: 401, code: "invalid_client", op: "EncryptionAtRest token", trips: 1},
		{name: "wrong private key", auth: authKey, opts: func(o *Options) { o.PrivateKey = "wrong-" + privKey }, status: 401, code: "USER_UNAUTHORIZED", op: "EncryptionAtRest", trips: 2},
		{name: "403 service account", auth: authSA, setup: func(f *fixture) { f.sim.Block(saID, true) }, status: 403, code: "IP_ADDRESS_NOT_ON_ACCESS_LIST", op: "EncryptionAtRest", trips: 2},
		{name: "403 API key", auth: authKey, setup: func(f *fixture) { f.sim.Block(pubKey, true) }, status: 403, code: "IP_ADDRESS_NOT_ON_ACCESS_LIST", op: "EncryptionAtRest", trips: 2},
		{name: "404 unknown project", auth: authKey, call: func(ctx context.Context, c *Client) error { _, err := c.Clusters(ctx, otherGrp); return err },
			status: 404, code: "GROUP_NOT_FOUND", op: "Clusters", trips: 2},
		{name: "404 unknown project endpoints", auth: authSA, call: func(ctx context.Context, c *Client) error { _, err := c.PrivateEndpoints(ctx, otherGrp); return err },
			status: 404, code: "GROUP_NOT_FOUND", op: "PrivateEndpoints", trips: 2},
		{name: "403 alert configs", auth: authSA, setup: func(f *fixture) { f.sim.Block(saID, true) }, call: func(ctx context.Context, c *Client) error { _, err := c.AlertConfigs(ctx, group); return err },
			status: 403, code: "IP_ADDRESS_NOT_ON_ACCESS_LIST", op: "AlertConfigs", trips: 2},
		{name: "404 alert configs", auth: authKey, call: func(ctx context.Context, c *Client) error { _, err := c.AlertConfigs(ctx, otherGrp); return err },
			status: 404, code: "GROUP_NOT_FOUND", op: "AlertConfigs", trips: 2},
		{name: "406 unversioned Accept", auth: authSA, call: get("EncryptionAtRest", "/encryptionAtRest", "application/json"), status: 406, code: "INVALID_VERSION_DATE", op: "EncryptionAtRest", trips: 2},
		{name: "406 version of another route", auth: authKey, call: get("Clusters", "/clusters", acceptEAR), status: 406, code: "INVALID_VERSION_DATE", op: "Clusters", trips: 2},
		{name: "invalid group id", auth: authSA, call: func(ctx context.Context, c *Client) error {
			_, err := c.EncryptionAtRest(ctx, "../../orgs")
			return err
		}, op: "EncryptionAtRest", trips: 0},
		{name: "truncated JSON", auth: authSA, fault: &atlassim.Fault{Match: "/encryptionAtRest", Body: `{"azureKeyVault":{"enabled":tr`, Times: 1}, status: 200, op: "EncryptionAtRest", want: []string{"200", "malformed JSON"}, trips: -1},
		{name: "wrong type", auth: authSA, fault: &atlassim.Fault{Match: "/encryptionAtRest", Body: `{"azureKeyVault":{"enabled":"yes"}}`, Times: 1}, status: 200, op: "EncryptionAtRest", want: []string{"malformed JSON", "bool"}, trips: -1},
		{name: "results not an array", auth: authSA, fault: &atlassim.Fault{Match: "/privateEndpoints", Body: `{"results":5}`, Times: 1}, call: func(ctx context.Context, c *Client) error { _, err := c.PrivateEndpoints(ctx, group); return err }, status: 200, op: "PrivateEndpoints", want: []string{"malformed JSON"}, trips: -1},
		{name: "no results", auth: authSA, fault: &atlassim.Fault{Match: "/clusters", Body: `{"totalCount":3}`, Times: 1},
			call: func(ctx context.Context, c *Client) error { _, err := c.Clusters(ctx, group); return err }, status: 200, op: "Clusters", want: []string{"no results array"}, trips: -1},
		{name: "HTML 502", auth: authSA, opts: func(o *Options) { o.MaxAttempts = 2 },
			fault: &atlassim.Fault{Match: "/encryptionAtRest", Status: 502, Body: "<html><body>Bad gateway</body></html>", ContentType: "text/html"}, status: 502, op: "EncryptionAtRest", want: []string{"text/html", "gave up"}, trips: -1, transient: true},
		{name: "plain 404", auth: authSA, fault: &atlassim.Fault{Match: "/encryptionAtRest", Status: 404, Body: "not here", ContentType: "text/plain", Times: 1}, status: 404, op: "EncryptionAtRest", want: []string{"text/plain", "not an Atlas error"}, trips: -1},
		{name: "JSON 400 of another shape", auth: authSA, fault: &atlassim.Fault{Match: "/encryptionAtRest", Status: 400, Body: `{"message":"nope"}`, Times: 1}, status: 400, op: "EncryptionAtRest", want: []string{"no Atlas error fields"}, trips: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{})
			seed(f.sim)
			c, waits := f.client(t, tc.auth, tc.opts)
			if tc.fault != nil {
				f.sim.Inject(*tc.fault)
			}
			if tc.setup != nil {
				tc.setup(f)
			}
			call := tc.call
			if call == nil {
				call = ear
			}
			calls := &meter.Calls{}
			err := call(meter.WithCalls(t.Context(), calls), c)
			var ae *Error
			if !errors.As(err, &ae) || ae.StatusCode != tc.status || ae.ErrorCode != tc.code || ae.Op != tc.op || transient.Is(err) != tc.transient {
				t.Fatalf("err = %v (%+v), want status %d code %q op %q transient %v", err, ae, tc.status, tc.code, tc.op, tc.transient)
			}
			for _, w := range append(tc.want, tc.op) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q should contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "Bad gateway") || strings.Contains(err.Error(), "not here") {
				t.Errorf("error %q repeats a raw non-JSON body", err)
			}
			if tc.trips >= 0 && (calls.Atlas() != tc.trips || len(*waits) != 0) {
				t.Errorf("%d round trips, waits %v; want %d, no retries", calls.Atlas(), *waits, tc.trips)
			}
		})
	}
	t.Run("untrusted certificate", func(t *testing.T) {
		f := newFixture(t, atlassim.Options{})
		c, err := New(Options{BaseURL: f.base, PublicKey: pubKey, PrivateKey: privKey})
		if err != nil {
			t.Fatal(err)
		}
		if _, err = c.EncryptionAtRest(t.Context(), group); err == nil || transient.Is(err) || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a permanent certificate error", err)
		}
	})
}

// recorder keeps the Authorization headers a client sent, and the
// User-Agents other than the guard's.
type recorder struct {
	next         http.RoundTripper
	mu           sync.Mutex
	seen, badUAs []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	if a := req.Header.Get("Authorization"); a != "" {
		r.seen = append(r.seen, a)
	}
	if ua := req.Header.Get("User-Agent"); !strings.HasPrefix(ua, "atlas-akv-guard/") {
		r.badUAs = append(r.badUAs, ua)
	}
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func TestNoSecretInErrorsOrLogs(t *testing.T) {
	f := newFixture(t, atlassim.Options{})
	seed(f.sim)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &recorder{next: f.ca.Transport()}
	t.Cleanup(rec.next.(*http.Transport).CloseIdleConnections)
	var errs []string
	read := func(auth string, wrong bool) *Client {
		c, _ := f.client(t, auth, func(o *Options) {
			o.HTTPClient, o.Logger, o.MaxAttempts, o.MaxRetryWait, o.Sleep = &http.Client{Transport: rec}, logger, 2, time.Millisecond, nil
			if wrong && auth == authSA {
				o.ClientSecret += "x"
			} else if wrong {
				o.PrivateKey += "x"
			}
		})
		for _, g := range []string{group, otherGrp} {
			if _, _, _, err := readAll(t.Context(), c, g); err != nil {
				errs = append(errs, err.Error())
				logger.Error("call failed", "err", err)
			}
		}
		return c
	}
	for _, auth := range authMethods {
		read(auth, true)
		for _, fault := range []atlassim.Fault{
			{Status: 429, RetryAfter: time.Millisecond}, {Status: 503}, {Drop: true},
			{Status: 500, Body: `{"detail":"boom","error":500,"errorCode":"UNEXPECTED_ERROR"}`},
		} {
			f.sim.Inject(fault)
			read(auth, false)
			f.sim.ClearFaults()
		}
		f.sim.RevokeTokens()
		read(auth, false)
	}
	for _, o := range []Options{ // configuration errors
		{BaseURL: "http://" + strings.TrimPrefix(f.base, "https://"), ClientID: saID, ClientSecret: saSecret, PublicKey: pubKey, PrivateKey: privKey},
		{BaseURL: "https://user:" + saSecret + "@example.com", ClientID: saID, ClientSecret: saSecret},
		{ClientSecret: saSecret},
		{PrivateKey: privKey},
	} {
		if _, err := New(o); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) < 10 {
		t.Fatalf("only %d errors collected; the scenarios didn't fail as planned: %q", len(errs), errs)
	}
	secrets := []string{saSecret, url.QueryEscape(saSecret), privKey,
		base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(saID) + ":" + url.QueryEscape(saSecret)))}
	for _, a := range rec.seen {
		scheme, cred, _ := strings.Cut(a, " ")
		if scheme == "Bearer" {
			secrets = append(secrets, cred)
		}
		if _, resp, ok := strings.Cut(cred, `response="`); scheme == "Digest" && ok {
			secrets = append(secrets, resp[:32])
		}
	}
	all := strings.Join(errs, "\n") + "\n" + logs.String()
	if len(rec.badUAs) > 0 {
		t.Errorf("requests without the guard's User-Agent: %q", rec.badUAs)
	}
	if len(secrets) < 6 || !strings.Contains(all, "retrying") {
		t.Fatalf("recorded %d credentials; logs show retries: %v", len(secrets), strings.Contains(all, "retrying"))
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("secret %.6s… appears in errors or logs", s)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name, wantErr string
		o             Options
		wantSA        bool
	}{
		{name: "http base", o: Options{BaseURL: "http://cloud.mongodb.com", PublicKey: "p", PrivateKey: privKey}, wantErr: "https"},
		{name: "no host", o: Options{BaseURL: "https:///x", PublicKey: "p", PrivateKey: privKey}, wantErr: "https URL with a host"},
		{name: "user info", o: Options{BaseURL: "https://u:" + privKey + "@h", PublicKey: "p", PrivateKey: privKey}, wantErr: "user info"},
		{name: "no credentials", wantErr: "no credentials"},
		{name: "half service account", o: Options{ClientSecret: saSecret, PublicKey: "p", PrivateKey: privKey}, wantErr: "client id"},
		{name: "half API key", o: Options{PrivateKey: privKey}, wantErr: "public and a private key"},
		{name: "service account preferred", o: Options{ClientID: saID, ClientSecret: saSecret, PublicKey: "p", PrivateKey: privKey}, wantSA: true},
		{name: "API key", o: Options{PublicKey: "p", PrivateKey: privKey}},
		{name: "default base", o: Options{ClientID: saID, ClientSecret: saSecret}, wantSA: true},
	} {
		c, err := New(tc.o)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), privKey) || strings.Contains(err.Error(), saSecret)):
			t.Errorf("%s: err = %v, want %q without secrets", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || (c.tokens != nil) != tc.wantSA):
			t.Errorf("%s: New = %+v, %v", tc.name, c, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for err, want := range map[error]bool{
		nil: false, &Error{StatusCode: 429}: true, &url.Error{Op: "Get", URL: "u", Err: &Error{StatusCode: 503}}: true,
		&Error{StatusCode: 401}: false, &Error{StatusCode: 404}: false, &Error{StatusCode: 409}: false, &Error{StatusCode: 200}: false,
		context.DeadlineExceeded: true, context.Canceled: true, &url.Error{Op: "Get", URL: "u", Err: io.EOF}: true,
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}: true, &net.DNSError{IsTimeout: true}: true,
		errors.New("bad"): false,
	} {
		if got := transient.Is(classify(err)); got != want {
			t.Errorf("classify(%v) transient = %v, want %v", err, got, want)
		}
	}
}

// TestAlertConfigs: every page is read (the simulator serving 2 per page),
// in Atlas's order, with each configuration's event type and enabled flag
// (TestErrors has its 403 and 404).
func TestAlertConfigs(t *testing.T) {
	f := newFixture(t, atlassim.Options{PageSizeCap: 2})
	f.sim.PutProject(group, atlassim.AzureKeyVault{Enabled: true})
	ids := f.sim.SetAlertConfigs(group, atlassim.EventEARKMSNetworkAccessDenied, false, true, false)
	c, _ := f.client(t, authSA, nil)
	got, err := c.AlertConfigs(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	// Three defaults stay (the network-denied one was replaced), then ours.
	if len(got) != 6 || f.sim.Stats().ByRoute[atlassim.RouteAlertConfigs] != 3 {
		t.Fatalf("read %d configurations in %d pages, want 6 in 3: %+v", len(got), f.sim.Stats().ByRoute[atlassim.RouteAlertConfigs], got)
	}
	want := []AlertConfig{{ids[0], atlassim.EventEARKMSNetworkAccessDenied, false}, {ids[1], atlassim.EventEARKMSNetworkAccessDenied, true},
		{ids[2], atlassim.EventEARKMSNetworkAccessDenied, false}}
	if !slices.Equal(got[3:], want) || !slices.ContainsFunc(got, func(a AlertConfig) bool {
		return a.EventTypeName == atlassim.EventEARConfigNoLongerValid && a.Enabled && len(a.ID) == 24
	}) {
		t.Errorf("configurations %+v, want the defaults then %+v", got, want)
	}
}
