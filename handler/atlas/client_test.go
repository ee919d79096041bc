package atlas

import (
	"bytes"
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
	"strings"
	"sync"
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
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

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
	f := &fixture{ca: ca, simClock: newClock()}
	if o.Now == nil {
		o.Now = f.simClock.Now
	}
	f.sim = atlassim.New(o)
	f.base, err = f.sim.Start(ca)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.sim.Close() })
	f.sim.AddServiceAccount(saID, saSecret)
	f.sim.AddAPIKey(pubKey, privKey)
	return f
}

// client returns a Client for auth whose retry waits are recorded instead of
// slept (and advance the simulator's clock).
func (f *fixture) client(tb testing.TB, auth string, mod func(*Options)) (*Client, *[]time.Duration) {
	tb.Helper()
	tr := f.ca.Transport()
	tb.Cleanup(tr.CloseIdleConnections)
	o := Options{BaseURL: f.base, HTTPClient: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	switch auth {
	case authSA:
		o.ClientID, o.ClientSecret = saID, saSecret
	case authKey:
		o.PublicKey, o.PrivateKey = pubKey, privKey
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	var (
		mu    sync.Mutex
		waits []time.Duration
	)
	c.sleep = func(ctx context.Context, d time.Duration) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		f.simClock.Advance(d)
		return nil
	}
	return c, &waits
}

func boolPtr(b bool) *bool { return &b }

// seed fills the project used by most tests.
func seed(s *atlassim.Sim) {
	s.PutProject(group, atlassim.AzureKeyVault{
		AzureEnvironment:         "AZURE",
		ClientID:                 "6f1c5b9e-8d3a-4e2f-9b7c-1a2b3c4d5e6f",
		Enabled:                  true,
		KeyIdentifier:            "https://kv-guard.vault.azure.net/keys/atlas-ear/0123456789abcdef0123456789abcdef",
		KeyVaultName:             "kv-guard",
		RequirePrivateNetworking: true,
		ResourceGroupName:        "rg-guard",
		SubscriptionID:           "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
		TenantID:                 "11111111-2222-3333-4444-555555555555",
		Valid:                    boolPtr(true),
	})
	s.AddEndpoint(group, "US_EAST_2", "pe-conn-eastus2", atlassim.StatusPendingAcceptance)
	s.AddEndpoint(group, "EUROPE_WEST", "", atlassim.StatusInitiating)
	s.AddShardedCluster(group, "orders", "AZURE", 2, "US_EAST_2", "US_WEST_2")
	s.AddCluster(group, "reports", "NONE", "EUROPE_WEST")
	s.SetPaused(group, "reports", true)
}

func ctxWithMeter(t *testing.T) (context.Context, *meter.Calls) {
	calls := &meter.Calls{}
	return meter.WithCalls(t.Context(), calls), calls
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
			ctx, calls := ctxWithMeter(t)

			ear, err := c.EncryptionAtRest(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			wantEAR := EncryptionAtRest{AzureKeyVault: AzureKeyVault{
				AzureEnvironment:         "AZURE",
				ClientID:                 "6f1c5b9e-8d3a-4e2f-9b7c-1a2b3c4d5e6f",
				Enabled:                  true,
				KeyIdentifier:            "https://kv-guard.vault.azure.net/keys/atlas-ear/0123456789abcdef0123456789abcdef",
				KeyVaultName:             "kv-guard",
				RequirePrivateNetworking: true,
				ResourceGroupName:        "rg-guard",
				SubscriptionID:           "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
				TenantID:                 "11111111-2222-3333-4444-555555555555",
				Valid:                    boolPtr(true),
			}}
			if !reflect.DeepEqual(ear, wantEAR) {
				t.Errorf("EncryptionAtRest =\n%+v\nwant\n%+v", ear, wantEAR)
			}

			eps, err := c.PrivateEndpoints(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			var wantEPs []PrivateEndpoint
			for _, e := range f.sim.Endpoints(group) {
				wantEPs = append(wantEPs, PrivateEndpoint{ID: e.ID, CloudProvider: "AZURE", RegionName: e.RegionName,
					Status: e.Status, ErrorMessage: e.ErrorMessage, PrivateEndpointConnectionName: e.PrivateEndpointConnectionName})
			}
			if !reflect.DeepEqual(eps, wantEPs) {
				t.Errorf("PrivateEndpoints =\n%+v\nwant\n%+v", eps, wantEPs)
			}
			if !eps[0].Requesting() || eps[0].PrivateEndpointConnectionName != "pe-conn-eastus2" {
				t.Errorf("first endpoint = %+v", eps[0])
			}

			cls, err := c.Clusters(ctx, group)
			if err != nil {
				t.Fatal(err)
			}
			simCls := f.sim.Clusters(group)
			wantCls := []Cluster{
				{ID: simCls[0].ID, Name: "orders", StateName: "IDLE", EncryptionAtRestProvider: "AZURE", RegionConfigs: []RegionConfig{{ProviderName: "AZURE", RegionName: "US_EAST_2"}, {ProviderName: "AZURE", RegionName: "US_WEST_2"}}},
				{ID: simCls[1].ID, Name: "reports", Paused: true, StateName: "IDLE", EncryptionAtRestProvider: "NONE", RegionConfigs: []RegionConfig{{ProviderName: "AZURE", RegionName: "EUROPE_WEST"}}},
			}
			if !reflect.DeepEqual(cls, wantCls) {
				t.Errorf("Clusters =\n%+v\nwant\n%+v", cls, wantCls)
			}

			if got := calls.Atlas(); got != tc.firstTrips {
				t.Errorf("first read: %d round trips counted, want %d", got, tc.firstTrips)
			}
			if got := f.sim.Requests(); got != tc.firstTrips {
				t.Errorf("first read: simulator saw %d requests, want %d", got, tc.firstTrips)
			}

			f.sim.ResetStats()
			ctx2, calls2 := ctxWithMeter(t)
			for _, call := range []func() error{
				func() error { _, err := c.EncryptionAtRest(ctx2, group); return err },
				func() error { _, err := c.PrivateEndpoints(ctx2, group); return err },
				func() error { _, err := c.Clusters(ctx2, group); return err },
			} {
				if err := call(); err != nil {
					t.Fatal(err)
				}
			}
			if got := calls2.Atlas(); got != tc.laterTrips {
				t.Errorf("later read: %d round trips counted, want %d", got, tc.laterTrips)
			}
			if got := f.sim.Stats().ByAuth; !reflect.DeepEqual(got, tc.byAuth) {
				t.Errorf("later read: simulator saw auth kinds %v, want %v", got, tc.byAuth)
			}
		})
	}
}

func TestEmptyProject(t *testing.T) {
	for _, auth := range authMethods {
		t.Run(auth, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{})
			f.sim.PutProject(group, atlassim.AzureKeyVault{})
			c, _ := f.client(t, auth, nil)
			ear, err := c.EncryptionAtRest(t.Context(), group)
			if err != nil || ear.AzureKeyVault.Enabled || ear.AzureKeyVault.Valid != nil {
				t.Errorf("EncryptionAtRest = %+v, %v; want zero config", ear, err)
			}
			eps, err := c.PrivateEndpoints(t.Context(), group)
			if err != nil || eps == nil || len(eps) != 0 {
				t.Errorf("PrivateEndpoints = %#v, %v; want empty non-nil", eps, err)
			}
			cls, err := c.Clusters(t.Context(), group)
			if err != nil || cls == nil || len(cls) != 0 {
				t.Errorf("Clusters = %#v, %v; want empty non-nil", cls, err)
			}
		})
	}
}

func TestServiceAccountTokenLifecycle(t *testing.T) {
	for _, tc := range []struct {
		name string
		// act happens between two reads of the config.
		act       func(f *fixture, clientClock *clock)
		wantTrips int64 // round trips of the second read
		want401   int64
	}{
		{name: "cached token is reused", act: func(*fixture, *clock) {}, wantTrips: 1},
		{
			name: "refreshed before it expires",
			act: func(f *fixture, cc *clock) {
				cc.Advance(59*time.Minute + 30*time.Second) // past the 1-minute margin
				f.simClock.Advance(59*time.Minute + 30*time.Second)
			},
			wantTrips: 2, // token + call, no 401
		},
		{name: "revoked token", act: func(f *fixture, _ *clock) { f.sim.RevokeTokens() }, wantTrips: 3, want401: 1},
		{name: "expired early at the server", act: func(f *fixture, _ *clock) { f.simClock.Advance(2 * time.Hour) }, wantTrips: 3, want401: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{TokenTTL: time.Hour})
			seed(f.sim)
			c, _ := f.client(t, authSA, nil)
			cc := newClock()
			c.tokens.now = cc.Now

			ctx, calls := ctxWithMeter(t)
			if _, err := c.EncryptionAtRest(ctx, group); err != nil {
				t.Fatal(err)
			}
			if got := calls.Atlas(); got != 2 {
				t.Fatalf("first call: %d round trips, want 2 (token + call)", got)
			}
			tc.act(f, cc)
			f.sim.ResetStats()
			ctx2, calls2 := ctxWithMeter(t)
			if _, err := c.EncryptionAtRest(ctx2, group); err != nil {
				t.Fatalf("second call: %v", err)
			}
			if got := calls2.Atlas(); got != tc.wantTrips {
				t.Errorf("second call: %d round trips, want %d", got, tc.wantTrips)
			}
			if got := f.sim.Stats().ByStatus[http.StatusUnauthorized]; got != tc.want401 {
				t.Errorf("second call: %d answers 401, want %d", got, tc.want401)
			}
		})
	}
}

func TestPagination(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cap       int
		items     int
		wantPages int64
	}{
		{name: "server serves 2 per page", cap: 2, items: 5, wantPages: 3},
		{name: "1001 items in pages of 500", items: 1001, wantPages: 3},
		{name: "exactly one full page", items: 500, wantPages: 1},
		{name: "empty", items: 0, wantPages: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{PageSizeCap: tc.cap})
			f.sim.PutProject(group, atlassim.AzureKeyVault{Enabled: true})
			for i := range tc.items {
				f.sim.AddEndpoint(group, "US_EAST_2", "pe-"+strings.Repeat("x", i%7), atlassim.StatusActive)
				f.sim.AddCluster(group, "c"+strings.Repeat("y", i%5), "AZURE", "US_EAST_2")
			}
			c, _ := f.client(t, authSA, nil)

			eps, err := c.PrivateEndpoints(t.Context(), group)
			if err != nil {
				t.Fatal(err)
			}
			want := f.sim.Endpoints(group)
			if len(eps) != len(want) {
				t.Fatalf("got %d endpoints, want %d", len(eps), len(want))
			}
			for i := range want {
				if eps[i].ID != want[i].ID {
					t.Fatalf("endpoint %d = %s, want %s (order lost)", i, eps[i].ID, want[i].ID)
				}
			}
			cls, err := c.Clusters(t.Context(), group)
			if err != nil {
				t.Fatal(err)
			}
			wantCls := f.sim.Clusters(group)
			if len(cls) != len(wantCls) {
				t.Fatalf("got %d clusters, want %d", len(cls), len(wantCls))
			}
			for i := range wantCls {
				if cls[i].ID != wantCls[i].ID {
					t.Fatalf("cluster %d = %s, want %s", i, cls[i].ID, wantCls[i].ID)
				}
			}
			st := f.sim.Stats()
			if got := st.ByRoute[atlassim.RoutePrivateEndpoints]; got != tc.wantPages {
				t.Errorf("endpoint pages fetched = %d, want %d", got, tc.wantPages)
			}
			if got := st.ByRoute[atlassim.RouteClusters]; got != tc.wantPages {
				t.Errorf("cluster pages fetched = %d, want %d", got, tc.wantPages)
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
		{name: "empty page stops", got: 0, total: 10, totalCount: n(20), haveLinks: true, next: true, want: false},
		{name: "links: next", got: 2, total: 2, haveLinks: true, next: true, want: true},
		{name: "links: no next despite count", got: 2, total: 2, totalCount: n(9), haveLinks: true, want: false},
		{name: "count only: more", got: 500, total: 500, totalCount: n(501), want: true},
		{name: "count only: done", got: 1, total: 501, totalCount: n(501), want: false},
		{name: "nothing: full page", got: 500, total: 500, want: true},
		{name: "nothing: short page", got: 499, total: 999, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := morePages(tc.got, tc.total, tc.totalCount, tc.haveLinks, tc.next); got != tc.want {
				t.Errorf("morePages = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(f *fixture)
		opts     func(o *Options)
		timeout  time.Duration
		wantErr  string // "" = success; else a substring
		wantCode string
		// waits: exact when checkWaits is nil
		wantWaits  []time.Duration
		checkWaits func(t *testing.T, w []time.Duration)
		wantCalls  int64 // EAR requests the simulator saw
	}{
		{
			name: "429 waits Retry-After",
			setup: func(f *fixture) {
				f.sim.Inject(atlassim.Fault{Match: "/encryptionAtRest", Status: 429, RetryAfter: 7 * time.Second, Times: 1})
			},
			wantWaits: []time.Duration{7 * time.Second},
			wantCalls: 2,
		},
		{
			name: "Retry-After capped by MaxRetryWait",
			setup: func(f *fixture) {
				f.sim.Inject(atlassim.Fault{Match: "/encryptionAtRest", Status: 429, RetryAfter: 90 * time.Second, Times: 2})
			},
			opts:      func(o *Options) { o.MaxRetryWait = 20 * time.Second },
			wantWaits: []time.Duration{20 * time.Second, 20 * time.Second},
			wantCalls: 3,
		},
		{
			name: "token bucket 429 then refilled",
			setup: func(f *fixture) {
				f.sim.SetRateLimit(2, 2)
				drain(f, 2) // the simulator's clock stands still: no refill
			},
			wantWaits: []time.Duration{time.Second},
			wantCalls: 2,
		},
		{
			name:  "503 backs off exponentially",
			setup: func(f *fixture) { f.sim.Inject(atlassim.Fault{Match: "/encryptionAtRest", Status: 503, Times: 2}) },
			checkWaits: func(t *testing.T, w []time.Duration) {
				if len(w) != 2 || w[0] < 125*time.Millisecond || w[0] > 250*time.Millisecond || w[1] < 250*time.Millisecond || w[1] > 500*time.Millisecond {
					t.Errorf("waits = %v, want one in [125ms,250ms] then one in [250ms,500ms]", w)
				}
			},
			wantCalls: 3,
		},
		{
			name: "wait would pass the deadline",
			setup: func(f *fixture) {
				f.sim.Inject(atlassim.Fault{Match: "/encryptionAtRest", Status: 429, RetryAfter: 7 * time.Second})
			},
			timeout:    2 * time.Second,
			wantErr:    "would pass the deadline",
			wantCode:   "RATE_LIMITED",
			wantCalls:  1,
			checkWaits: func(t *testing.T, w []time.Duration) { noWaits(t, w) },
		},
		{
			name:      "gives up after MaxAttempts",
			setup:     func(f *fixture) { f.sim.Inject(atlassim.Fault{Match: "/encryptionAtRest", Status: 500}) },
			opts:      func(o *Options) { o.MaxAttempts = 3 },
			wantErr:   "gave up after 3 attempts",
			wantCode:  "UNEXPECTED_ERROR",
			wantCalls: 3,
			checkWaits: func(t *testing.T, w []time.Duration) {
				if len(w) != 2 {
					t.Errorf("waits = %v, want 2", w)
				}
			},
		},
		{
			// On a reused connection net/http itself may replay the GET
			// once, so the client may see no failure at all.
			name:  "dropped connection is retried",
			setup: func(f *fixture) { f.sim.Inject(atlassim.Fault{Match: "/encryptionAtRest", Drop: true, Times: 1}) },
			checkWaits: func(t *testing.T, w []time.Duration) {
				if len(w) > 1 {
					t.Errorf("waits = %v, want at most 1", w)
				}
			},
		},
		{
			name:    "dropped connections until the last attempt",
			setup:   func(f *fixture) { f.sim.Inject(atlassim.Fault{Match: "/encryptionAtRest", Drop: true}) },
			opts:    func(o *Options) { o.MaxAttempts = 2 },
			wantErr: "gave up after 2 attempts",
			checkWaits: func(t *testing.T, w []time.Duration) {
				if len(w) != 1 {
					t.Errorf("waits = %v, want 1", w)
				}
			},
		},
	} {
		for _, auth := range authMethods {
			t.Run(tc.name+"/"+auth, func(t *testing.T) {
				f := newFixture(t, atlassim.Options{})
				seed(f.sim)
				c, waits := f.client(t, auth, tc.opts)
				// Fetch the token first so that faults only meet API calls.
				if auth == authSA {
					if _, err := c.Clusters(t.Context(), group); err != nil {
						t.Fatal(err)
					}
				}
				tc.setup(f)
				f.sim.ResetStats()
				ctx := t.Context()
				if tc.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				_, err := c.EncryptionAtRest(ctx, group)
				switch {
				case tc.wantErr == "" && err != nil:
					t.Fatalf("err = %v", err)
				case tc.wantErr != "":
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
					}
					if !transient.Is(err) {
						t.Errorf("IsTransient(%v) = false", err)
					}
					if tc.wantCode != "" {
						ae, ok := errors.AsType[*Error](err)
						if !ok || ae.ErrorCode != tc.wantCode {
							t.Errorf("err = %#v, want an *Error with code %s", err, tc.wantCode)
						}
					}
				}
				if tc.checkWaits != nil {
					tc.checkWaits(t, *waits)
				} else if !reflect.DeepEqual(*waits, tc.wantWaits) {
					t.Errorf("waits = %v, want %v", *waits, tc.wantWaits)
				}
				if tc.wantCalls > 0 {
					// Digest: only authenticated requests reach the route
					// handler, but every attempt counts on the route.
					got := f.sim.Stats().ByRoute[atlassim.RouteEncryptionAtRest]
					if auth == authKey {
						got = f.sim.Stats().ByAuth[atlassim.AuthNone]
					}
					if got != tc.wantCalls {
						t.Errorf("attempts seen by the simulator = %d, want %d", got, tc.wantCalls)
					}
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
		resp, err := hc.Get(f.base + "/api/atlas/v2/groups/" + group + "/encryptionAtRest")
		if err == nil {
			resp.Body.Close()
		}
	}
}

func noWaits(t *testing.T, w []time.Duration) {
	t.Helper()
	if len(w) != 0 {
		t.Errorf("waits = %v, want none", w)
	}
}

func TestServiceUnavailableUntilDeadline(t *testing.T) {
	for _, auth := range authMethods {
		t.Run(auth, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{})
			seed(f.sim)
			tr := f.ca.Transport()
			c, err := New(Options{
				BaseURL: f.base, HTTPClient: &http.Client{Transport: tr},
				ClientID: map[string]string{authSA: saID}[auth], ClientSecret: map[string]string{authSA: saSecret}[auth],
				PublicKey: pubKey, PrivateKey: privKey,
				MaxAttempts: 1000, MaxRetryWait: 5 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			before := runtime.NumGoroutine()
			f.sim.Inject(atlassim.Fault{Status: 503}) // token endpoint too

			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err = c.PrivateEndpoints(ctx, group)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("want an error")
			}
			if !transient.Is(err) {
				t.Errorf("IsTransient(%v) = false", err)
			}
			if !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "PrivateEndpoints") {
				t.Errorf("error %q should name the call and the 503", err)
			}
			if elapsed > 2*time.Second {
				t.Errorf("returned %s after start, long past the deadline", elapsed)
			}
			if f.sim.Requests() < 5 {
				t.Errorf("only %d attempts before the deadline", f.sim.Requests())
			}
			tr.CloseIdleConnections()
			waitGoroutines(t, before)
		})
	}
}

// waitGoroutines waits until no more goroutines run than before.
func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPermanentErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		auth      string
		opts      func(o *Options)
		setup     func(f *fixture)
		call      func(ctx context.Context, c *Client) error
		status    int
		code      string
		op        string
		wantTrips int64
	}{
		{name: "wrong client secret", auth: authSA, opts: func(o *Options) { o.ClientSecret = "wrong-" + saSecret },
			status: 401, code: "invalid_client", op: "EncryptionAtRest token", wantTrips: 1},
		{name: "unknown client id", auth: authSA, opts: func(o *Options) { o.ClientID = "nobody" },
			status: 401, code: "invalid_client", op: "EncryptionAtRest token", wantTrips: 1},
		{name: "wrong private key", auth: authKey, opts: func(o *Options) { o.PrivateKey = "wrong-" + privKey },
			status: 401, code: "USER_UNAUTHORIZED", op: "EncryptionAtRest", wantTrips: 2},
		{name: "403 service account", auth: authSA, setup: func(f *fixture) { f.sim.Block(saID, true) },
			status: 403, code: "IP_ADDRESS_NOT_ON_ACCESS_LIST", op: "EncryptionAtRest", wantTrips: 2},
		{name: "403 API key", auth: authKey, setup: func(f *fixture) { f.sim.Block(pubKey, true) },
			status: 403, code: "IP_ADDRESS_NOT_ON_ACCESS_LIST", op: "EncryptionAtRest", wantTrips: 2},
		{name: "404 unknown project", auth: authKey,
			call:   func(ctx context.Context, c *Client) error { _, err := c.Clusters(ctx, otherGrp); return err },
			status: 404, code: "GROUP_NOT_FOUND", op: "Clusters", wantTrips: 2},
		{name: "404 unknown project endpoints", auth: authSA,
			call:   func(ctx context.Context, c *Client) error { _, err := c.PrivateEndpoints(ctx, otherGrp); return err },
			status: 404, code: "GROUP_NOT_FOUND", op: "PrivateEndpoints", wantTrips: 2},
		{name: "406 unversioned Accept", auth: authSA,
			call: func(ctx context.Context, c *Client) error {
				var v any
				return c.get(ctx, "EncryptionAtRest", "/api/atlas/v2/groups/"+group+"/encryptionAtRest", nil, "application/json", &v)
			},
			status: 406, code: "INVALID_VERSION_DATE", op: "EncryptionAtRest", wantTrips: 2},
		{name: "406 version of another route", auth: authKey,
			call: func(ctx context.Context, c *Client) error {
				var v any
				return c.get(ctx, "Clusters", "/api/atlas/v2/groups/"+group+"/clusters", nil, acceptEAR, &v)
			},
			status: 406, code: "INVALID_VERSION_DATE", op: "Clusters", wantTrips: 2},
		{name: "invalid group id", auth: authSA,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.EncryptionAtRest(ctx, "../../orgs")
				return err
			},
			status: 0, op: "EncryptionAtRest", wantTrips: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{})
			seed(f.sim)
			if tc.setup != nil {
				tc.setup(f)
			}
			c, waits := f.client(t, tc.auth, tc.opts)
			call := tc.call
			if call == nil {
				call = func(ctx context.Context, c *Client) error { _, err := c.EncryptionAtRest(ctx, group); return err }
			}
			ctx, calls := ctxWithMeter(t)
			err := call(ctx, c)
			ae, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if ae.StatusCode != tc.status || ae.ErrorCode != tc.code || ae.Op != tc.op {
				t.Errorf("got %+v, want status %d code %q op %q", ae, tc.status, tc.code, tc.op)
			}
			if transient.Is(err) {
				t.Errorf("IsTransient(%v) = true", err)
			}
			if !strings.Contains(err.Error(), tc.op) {
				t.Errorf("error %q doesn't name the call", err)
			}
			noWaits(t, *waits)
			if got := calls.Atlas(); got != tc.wantTrips {
				t.Errorf("%d round trips, want %d (no retries)", got, tc.wantTrips)
			}
		})
	}
}

func TestUnusableResponses(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fault     atlassim.Fault
		call      func(ctx context.Context, c *Client) error
		transient bool
		want      []string
	}{
		{name: "truncated JSON", fault: atlassim.Fault{Match: "/encryptionAtRest", Body: `{"azureKeyVault":{"enabled":tr`, Times: 1},
			want: []string{"EncryptionAtRest", "200", "malformed JSON"}},
		{name: "wrong type", fault: atlassim.Fault{Match: "/encryptionAtRest", Body: `{"azureKeyVault":{"enabled":"yes"}}`, Times: 1},
			want: []string{"EncryptionAtRest", "malformed JSON", "bool"}},
		{name: "empty 200", fault: atlassim.Fault{Match: "/encryptionAtRest", Body: " ", Times: 1},
			want: []string{"EncryptionAtRest", "malformed JSON"}},
		{name: "results not an array", fault: atlassim.Fault{Match: "/privateEndpoints", Body: `{"results":5}`, Times: 1},
			call: func(ctx context.Context, c *Client) error { _, err := c.PrivateEndpoints(ctx, group); return err },
			want: []string{"PrivateEndpoints", "malformed JSON"}},
		{name: "no results", fault: atlassim.Fault{Match: "/clusters", Body: `{"totalCount":3}`, Times: 1},
			call: func(ctx context.Context, c *Client) error { _, err := c.Clusters(ctx, group); return err },
			want: []string{"Clusters", "no results array"}},
		{name: "HTML 502", fault: atlassim.Fault{Match: "/encryptionAtRest", Status: 502, Body: "<html><body>Bad gateway</body></html>", ContentType: "text/html"},
			transient: true, want: []string{"EncryptionAtRest", "502", "text/html", "gave up"}},
		{name: "plain 404", fault: atlassim.Fault{Match: "/encryptionAtRest", Status: 404, Body: "not here", ContentType: "text/plain", Times: 1},
			want: []string{"EncryptionAtRest", "404", "text/plain", "not an Atlas error"}},
		{name: "JSON 400 of another shape", fault: atlassim.Fault{Match: "/encryptionAtRest", Status: 400, Body: `{"message":"nope"}`, Times: 1},
			want: []string{"400", "no Atlas error fields"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, atlassim.Options{})
			seed(f.sim)
			c, _ := f.client(t, authSA, func(o *Options) { o.MaxAttempts = 2 })
			f.sim.Inject(tc.fault)
			call := tc.call
			if call == nil {
				call = func(ctx context.Context, c *Client) error { _, err := c.EncryptionAtRest(ctx, group); return err }
			}
			err := call(t.Context(), c)
			if err == nil {
				t.Fatal("want an error")
			}
			if got := transient.Is(err); got != tc.transient {
				t.Errorf("IsTransient(%v) = %v, want %v", err, got, tc.transient)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q should contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "Bad gateway") || strings.Contains(err.Error(), "not here") {
				t.Errorf("error %q repeats a raw non-JSON body", err)
			}
		})
	}
}

func TestUntrustedCertificateIsPermanent(t *testing.T) {
	f := newFixture(t, atlassim.Options{})
	seed(f.sim)
	c, err := New(Options{BaseURL: f.base, PublicKey: pubKey, PrivateKey: privKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.EncryptionAtRest(t.Context(), group)
	if err == nil || transient.Is(err) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a permanent certificate error", err)
	}
}

// recorder keeps the Authorization headers a client sent.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if a := req.Header.Get("Authorization"); a != "" {
		r.mu.Lock()
		r.seen = append(r.seen, a)
		r.mu.Unlock()
	}
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

	mk := func(auth string, mod func(o *Options)) *Client {
		o := Options{BaseURL: f.base, HTTPClient: &http.Client{Transport: rec}, Logger: logger, MaxAttempts: 2, MaxRetryWait: time.Millisecond}
		if auth == authSA {
			o.ClientID, o.ClientSecret = saID, saSecret
		} else {
			o.PublicKey, o.PrivateKey = pubKey, privKey
		}
		if mod != nil {
			mod(&o)
		}
		c, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	read := func(c *Client) {
		for _, err := range []error{
			func() error { _, err := c.EncryptionAtRest(t.Context(), group); return err }(),
			func() error { _, err := c.PrivateEndpoints(t.Context(), group); return err }(),
			func() error { _, err := c.Clusters(t.Context(), otherGrp); return err }(),
		} {
			if err != nil {
				errs = append(errs, err.Error())
				logger.Error("call failed", "err", err)
			}
		}
	}
	for _, auth := range authMethods {
		read(mk(auth, nil))
		read(mk(auth, func(o *Options) {
			if auth == authSA {
				o.ClientSecret += "x"
			} else {
				o.PrivateKey += "x"
			}
		}))
		c := mk(auth, nil)
		for _, fault := range []atlassim.Fault{
			{Status: 429, RetryAfter: time.Millisecond},
			{Status: 503},
			{Drop: true},
			{Status: 500, Body: `{"detail":"boom","error":500,"errorCode":"UNEXPECTED_ERROR"}`},
		} {
			f.sim.Inject(fault)
			read(c)
			f.sim.ClearFaults()
		}
		f.sim.RevokeTokens()
		read(c)
	}
	// Configuration errors.
	for _, o := range []Options{
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
		_, cred, _ := strings.Cut(a, " ")
		if strings.HasPrefix(a, "Bearer ") {
			secrets = append(secrets, cred)
		}
		if strings.HasPrefix(a, "Digest ") {
			if _, resp, ok := strings.Cut(cred, `response="`); ok {
				secrets = append(secrets, resp[:32])
			}
		}
	}
	if len(secrets) < 6 {
		t.Fatalf("recorded only %d credentials", len(secrets))
	}
	all := strings.Join(errs, "\n") + "\n" + logs.String()
	if !strings.Contains(all, "retrying") {
		t.Errorf("logs show no retries; the test doesn't exercise logging:\n%s", logs.String())
	}
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Errorf("secret %.6s… appears in errors or logs", s)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name     string
		o        Options
		wantErr  string
		wantAuth string
	}{
		{name: "http base", o: Options{BaseURL: "http://cloud.mongodb.com", PublicKey: "p", PrivateKey: privKey}, wantErr: "https"},
		{name: "no host", o: Options{BaseURL: "https:///x", PublicKey: "p", PrivateKey: privKey}, wantErr: "https URL with a host"},
		{name: "user info", o: Options{BaseURL: "https://u:" + privKey + "@h", PublicKey: "p", PrivateKey: privKey}, wantErr: "user info"},
		{name: "no credentials", o: Options{}, wantErr: "no credentials"},
		{name: "half service account", o: Options{ClientSecret: saSecret, PublicKey: "p", PrivateKey: privKey}, wantErr: "client id"},
		{name: "half API key", o: Options{PrivateKey: privKey}, wantErr: "public and a private key"},
		{name: "service account preferred", o: Options{ClientID: saID, ClientSecret: saSecret, PublicKey: "p", PrivateKey: privKey}, wantAuth: authSA},
		{name: "API key", o: Options{PublicKey: "p", PrivateKey: privKey}, wantAuth: authKey},
		{name: "default base", o: Options{ClientID: saID, ClientSecret: saSecret}, wantAuth: authSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), privKey) || strings.Contains(err.Error(), saSecret) {
					t.Errorf("error %q contains a secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (c.tokens != nil) != (tc.wantAuth == authSA) {
				t.Errorf("service account used: %v, want %s", c.tokens != nil, tc.wantAuth)
			}
			if !strings.HasPrefix(c.userAgent, "atlas-akv-guard/") {
				t.Errorf("User-Agent = %q", c.userAgent)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"429", &Error{StatusCode: 429}, true},
		{"500", &Error{StatusCode: 500}, true},
		{"503 wrapped", &url.Error{Op: "Get", URL: "u", Err: &Error{StatusCode: 503}}, true},
		{"401", &Error{StatusCode: 401}, false},
		{"403", &Error{StatusCode: 403}, false},
		{"404", &Error{StatusCode: 404}, false},
		{"406", &Error{StatusCode: 406}, false},
		{"409", &Error{StatusCode: 409}, false},
		{"malformed 200", &Error{StatusCode: 200}, false},
		{"deadline", context.DeadlineExceeded, true},
		{"canceled", context.Canceled, true},
		{"EOF", &url.Error{Op: "Get", URL: "u", Err: io.EOF}, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{"timeout", &net.DNSError{IsTimeout: true}, true},
		{"plain", errors.New("bad"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := transient.Is(classify(tc.err)); got != tc.want {
				t.Errorf("classify(%v) transient = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
