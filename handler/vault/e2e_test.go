package vault_test

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

var kv = resource.ID{SubscriptionID: "11111111-2222-3333-4444-555555555555", ResourceGroup: "rg-atlas", Name: "kv-atlas-a"}

const atlasPE = "/subscriptions/atlas-sub/resourceGroups/atlas-rg/providers/Microsoft.Network/privateEndpoints/atlas-pe-1"

// world is the simulated ARM and managed identity (simtest) and a Client
// wired to it the way the guard wires itself in Azure.
type world struct {
	sim      *armsim.Server
	client   *vault.Client
	clientID string
	changes  func() []armsim.Change
}

type worldOpts struct {
	cfg      armsim.Config
	systemMI bool // system-assigned identity (no AZURE_CLIENT_ID)
	defaults bool // the Client's own retry options
}

func newWorld(t testing.TB, o worldOpts) *world {
	t.Helper()
	if o.systemMI {
		// MSAL caches managed identity tokens process-wide by identity and
		// resource: the system-assigned identity gets its own audience.
		o.cfg.Audiences = []string{"https://armsim-" + simtest.RandHex(6) + ".example/"}
	}
	s := simtest.New(t, simtest.Options{ARM: o.cfg})
	retry := policy.RetryOptions{RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 2 * time.Second}
	if o.defaults {
		retry = policy.RetryOptions{}
	}
	var client *vault.Client
	if !o.systemMI {
		c, err := s.VaultClient(retry)
		must(t, err)
		client = c
	} else {
		delete(s.Env, "AZURE_CLIENT_ID")
		conf, _ := vault.CloudFor("AZURE", s.ARMURL)
		rm := conf.Services[cloud.ResourceManager]
		rm.Audience = o.cfg.Audiences[0]
		conf.Services[cloud.ResourceManager] = rm
		cred, err := s.Credential(retry)
		must(t, err)
		client, err = vault.New(vault.Options{Credential: cred, Cloud: conf, Transport: s.CA.Client(), Retry: retry, PollInterval: 5 * time.Millisecond})
		must(t, err)
	}
	var mu sync.Mutex
	var changes []armsim.Change
	s.ARM.OnChange(func(c armsim.Change) {
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, c)
	})
	s.ARM.AddVault(kv, map[string]string{"env": "prod"})
	return &world{sim: s.ARM, client: client, clientID: s.Env["AZURE_CLIENT_ID"], changes: func() []armsim.Change {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(changes)
	}}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestApproveEndToEnd: a pending connection approved through the simulated
// ARM (the decisions on other states are TestApproveDecisions'), and ARM's
// 204 for a connection that does not exist; as the user-assigned identity,
// and as the system-assigned one on a vault in another subscription than the
// first one the client served.
func TestApproveEndToEnd(t *testing.T) {
	const desc = "approved by atlas-akv-guard: project 6650aa, endpoint 6650bb"
	for _, systemMI := range []bool{false, true} {
		t.Run(map[bool]string{false: "user-assigned", true: "system-assigned"}[systemMI], func(t *testing.T) {
			w := newWorld(t, worldOpts{cfg: armsim.Config{SettleReads: 2}, systemMI: systemMI})
			v, clientID := kv, w.clientID
			if systemMI {
				v, clientID = resource.ID{SubscriptionID: "99999999-2222-3333-4444-555555555555", ResourceGroup: "rg-b", Name: "kv-b"}, w.sim.SystemClientID()
				w.sim.AddVault(v, nil)
				if got, err := w.client.Vault(t.Context(), kv); err != nil || !got.Found {
					t.Fatal(got, err)
				}
			}
			if _, err := w.client.Approve(t.Context(), v, "atlas-pe-1", desc); !errors.Is(err, vault.ErrConnectionNotFound) || transient.Is(err) {
				t.Errorf("missing connection: err = %v", err)
			}
			must(t, w.sim.AddConnection(v, "atlas-pe-1", vault.StatusPending, atlasPE))
			got, err := w.client.Approve(t.Context(), v, "atlas-pe-1", desc)
			stored, _ := w.sim.Connection(v, "atlas-pe-1")
			if err != nil || got.Outcome != vault.Approved || !got.Changed || stored.Status != vault.StatusApproved || stored.Description != desc ||
				got.Connection.ProvisioningState != vault.ProvisioningSucceeded {
				t.Fatalf("Approve = %+v, %v; stored %+v", got, err, stored)
			}
			// Read Succeeded, the PUT answered Updating, two reads still Updating, then Succeeded.
			if served, want := strings.Join(w.sim.ServedStates(v, "atlas-pe-1"), " "), "Succeeded Updating Updating Updating Succeeded"; served != want {
				t.Errorf("served provisioning states %s, want %s", served, want)
			}
			ch := w.changes()
			if len(ch) != 1 || ch[0].Operation != vault.ActionConnectionsWrite || ch[0].ClientID != clientID || ch[0].ObjectID != armsim.ObjectID(clientID) ||
				ch[0].ResourceURI != v.String()+"/privateEndpointConnections/atlas-pe-1" || ch[0].Before.Status != vault.StatusPending || ch[0].After.Status != vault.StatusApproved {
				t.Errorf("changes = %+v", ch)
			}
			// Approving twice is a no-op.
			if again, err := w.client.Approve(t.Context(), v, "atlas-pe-1", desc); err != nil || again.Outcome != vault.AlreadyApproved || w.sim.Count(armsim.RouteConnectionPut) != 1 {
				t.Errorf("second Approve = %+v, %v", again, err)
			}
		})
	}
}

// TestRejectBetweenReadAndWrite: a person rejects the connection after the
// guard's GET and before its PUT; the connection never ends Approved. With
// If-Match honoured the PUT is refused with 412 (ChangedMeanwhile, no
// error); with only the body etag checked, 409 (a transient failure: the
// next run reads again). A provider that checked neither would apply the
// PUT: only its refusal to approve a Rejected connection (400, as Private
// Link does) stands between the Reject and an approval.
func TestRejectBetweenReadAndWrite(t *testing.T) {
	for _, tt := range []struct {
		name              string
		ifMatch, bodyEtag bool
		want              vault.Outcome
		wantErr           int // HTTP status of the refused PUT
	}{
		{"If-Match honoured", true, true, vault.ChangedMeanwhile, 0},
		{"If-Match honoured, body etag ignored", true, false, vault.ChangedMeanwhile, 0},
		{"only the body etag checked", false, true, "", 409},
		{"neither checked", false, false, "", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, worldOpts{cfg: armsim.Config{SettleReads: -1}})
			must(t, w.sim.AddConnection(kv, "atlas-pe-1", vault.StatusPending, atlasPE))
			w.sim.SetEtagChecks(tt.ifMatch, tt.bodyEtag)
			w.sim.BeforePut(func(v resource.ID, name string) {
				must(t, w.sim.SetConnectionStatus(v, name, vault.StatusRejected, "refused by a person"))
			})
			got, err := w.client.Approve(t.Context(), kv, "atlas-pe-1", "approved by the guard")
			stored, _ := w.sim.Connection(kv, "atlas-pe-1")
			if got.Outcome != tt.want || got.Changed || stored.Status != vault.StatusRejected {
				t.Errorf("Approve = %+v; stored %s", got, stored.Status)
			}
			var re *azcore.ResponseError
			errors.As(err, &re)
			if (err == nil) != (tt.wantErr == 0) || (err != nil && (re == nil || re.StatusCode != tt.wantErr || transient.Is(err) != (tt.wantErr == 409))) {
				t.Errorf("err = %v, want HTTP %d", err, tt.wantErr)
			}
		})
	}
}

func TestConnectionsPages(t *testing.T) {
	w := newWorld(t, worldOpts{cfg: armsim.Config{PageSize: 2}})
	names := []string{"atlas-pe-1", "atlas-pe-2", "foreign-1", "atlas-pe-3", "foreign-2"}
	for i, n := range names {
		must(t, w.sim.AddConnection(kv, n, []string{vault.StatusPending, vault.StatusApproved, vault.StatusRejected}[i%3], atlasPE+n))
	}
	got, err := w.client.Connections(t.Context(), kv)
	if err != nil || len(got) != len(names) {
		t.Fatalf("Connections = %d, %v; want %d", len(got), err, len(names))
	}
	for i, c := range got {
		if c.Name != names[i] || c.PrivateEndpointID != atlasPE+names[i] || c.Etag == "" || c.ProvisioningState != "Succeeded" {
			t.Errorf("connection %d = %+v", i, c)
		}
	}
	if n := w.sim.Count(armsim.RouteConnectionsList); n != 3 {
		t.Errorf("list requests = %d, want 3 pages", n)
	}
	if _, err := w.client.Connections(t.Context(), resource.ID{SubscriptionID: kv.SubscriptionID, ResourceGroup: "rg", Name: "nope"}); err == nil || transient.Is(err) {
		t.Errorf("missing vault: err = %v", err)
	}
}

// TestKeyEndToEnd: the key states Atlas depends on, and their cost: one ARM
// call when the latest version is pinned, two otherwise.
func TestKeyEndToEnd(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	past, future := now.Add(-time.Hour), now.Add(30*24*time.Hour)
	tests := []struct {
		name     string
		versions int    // versions added, oldest first
		pin      string // the pinned version; "" pins the oldest added
		nbf, exp *time.Time
		disable  bool // the pinned version
		deleted  bool // the key
		want     func(k vault.Key, pinned string) bool
		calls    int64
	}{
		{name: "enabled", versions: 1, exp: &future, calls: 1, want: func(k vault.Key, p string) bool {
			return k.Found && k.Enabled && k.Version == p && k.Latest == p && k.LatestEnabled && k.Expires.Equal(future) && k.NotBefore == nil
		}},
		{name: "disabled", versions: 1, disable: true, calls: 1,
			want: func(k vault.Key, p string) bool { return k.Found && !k.Enabled && !k.LatestEnabled && k.Version == p }},
		{name: "expired", versions: 1, exp: &past, calls: 1,
			want: func(k vault.Key, _ string) bool {
				return k.Found && k.Enabled && k.Expires != nil && k.Expires.Equal(past)
			}},
		{name: "not yet valid", versions: 1, nbf: &future, calls: 1,
			want: func(k vault.Key, _ string) bool { return k.Found && k.NotBefore != nil && k.NotBefore.Equal(future) }},
		{name: "missing key", pin: "0123456789abcdef0123456789abcdef", calls: 1,
			want: func(k vault.Key, p string) bool { return !k.Found && k.Name == "ear-key" && k.Version == p }},
		{name: "deleted key", versions: 1, deleted: true, calls: 1, want: func(k vault.Key, _ string) bool { return !k.Found }},
		{name: "missing version", versions: 1, pin: "ffff0000000000000000000000000000", calls: 2,
			want: func(k vault.Key, _ string) bool { return !k.Found && k.Latest != "" && k.LatestEnabled }},
		{name: "rotated in Azure, pinned still enabled", versions: 2, calls: 2,
			want: func(k vault.Key, p string) bool {
				return k.Found && k.Enabled && k.Version == p && k.Latest != p && k.LatestEnabled
			}},
		{name: "rotated, pinned disabled", versions: 2, disable: true, calls: 2,
			want: func(k vault.Key, p string) bool { return k.Found && !k.Enabled && k.Version == p && k.LatestEnabled }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, worldOpts{})
			pinned := tt.pin
			for i := range tt.versions {
				v, err := w.sim.AddKey(kv, "ear-key", "", true, tt.nbf, tt.exp)
				must(t, err)
				if i == 0 && pinned == "" {
					pinned = v
				}
			}
			if tt.disable {
				must(t, w.sim.SetKeyEnabled(kv, "ear-key", pinned, false))
			}
			if tt.deleted {
				must(t, w.sim.DeleteKey(kv, "ear-key"))
			}
			calls := &meter.Calls{}
			got, err := w.client.Key(meter.WithCalls(t.Context(), calls), kv, "ear-key", pinned)
			if err != nil || !tt.want(got, pinned) || calls.ARM() != tt.calls {
				t.Errorf("Key = %+v, %v (pinned %s); %d ARM calls, want %d", got, err, pinned, calls.ARM(), tt.calls)
			}
		})
	}
}

// TestVaultAndMeter: the vault's tags (hold), 404 as not found, and the
// economy of a quiet read: vault, connections and key cost 3 ARM round
// trips; the token fetch is not one of them.
func TestVaultAndMeter(t *testing.T) {
	w := newWorld(t, worldOpts{})
	ver, err := w.sim.AddKey(kv, "ear-key", "", true, nil, nil)
	must(t, err)
	calls := &meter.Calls{}
	ctx := meter.WithCalls(t.Context(), calls)
	got, err := w.client.Vault(ctx, kv)
	if err != nil || !got.Found || got.Hold() || got.Tags["env"] != "prod" || got.PublicNetworkAccess != "Disabled" || got.URI != "https://kv-atlas-a.vault.azure.net/" ||
		got.Location != "westeurope" {
		t.Errorf("Vault = %+v, %v", got, err)
	}
	_, err1 := w.client.Connections(ctx, kv)
	_, err2 := w.client.Key(ctx, kv, "ear-key", ver)
	if err1 != nil || err2 != nil || calls.ARM() != 3 || calls.Atlas() != 0 || w.sim.Count(armsim.RouteIdentity) != 1 {
		t.Errorf("errors %v, %v; metered ARM %d, Atlas %d, token fetches %d; want 3, 0, 1", err1, err2, calls.ARM(), calls.Atlas(), w.sim.Count(armsim.RouteIdentity))
	}
	if !got.EnablePurgeProtection || !got.EnableSoftDelete {
		t.Errorf("Vault = %+v", got)
	}
	must(t, w.sim.SetProtection(kv, false, true))
	if got, err = w.client.Vault(t.Context(), kv); err != nil || got.EnablePurgeProtection || !got.EnableSoftDelete {
		t.Errorf("unprotected vault: %+v, %v", got, err)
	}
	must(t, w.sim.SetTag(kv, "Atlas-AKV-Guard", "Hold"))
	if got, err = w.client.Vault(t.Context(), kv); err != nil || !got.Hold() {
		t.Errorf("held vault: %+v, %v", got, err)
	}
	must(t, w.sim.DeleteVault(kv))
	if got, err = w.client.Vault(t.Context(), kv); err != nil || got.Found {
		t.Errorf("deleted vault: %+v, %v", got, err)
	}
}

func TestForbidden(t *testing.T) {
	approve := func(ctx context.Context, c *vault.Client) error {
		_, err := c.Approve(ctx, kv, "atlas-pe-1", "d")
		return err
	}
	tests := []struct {
		deny   string
		call   func(ctx context.Context, c *vault.Client) error
		route  string
		wantOp string
	}{
		{vault.ActionConnectionsWrite, approve, armsim.RouteConnectionPut, "approve atlas-pe-1"},
		{vault.ActionConnectionsApproval, approve, armsim.RouteConnectionPut, "approve atlas-pe-1"}, // LinkedAuthorizationFailed
		{vault.ActionConnectionsRead, func(ctx context.Context, c *vault.Client) error { _, err := c.Connections(ctx, kv); return err },
			armsim.RouteConnectionsList, "list connections of kv-atlas-a"},
		{vault.ActionVaultRead, func(ctx context.Context, c *vault.Client) error { _, err := c.Vault(ctx, kv); return err },
			armsim.RouteVaultGet, "get vault kv-atlas-a"},
		{vault.ActionKeyVersionsRead, func(ctx context.Context, c *vault.Client) error {
			_, err := c.Key(ctx, kv, "ear-key", "aaaa0000000000000000000000000001")
			return err
		}, armsim.RouteKeyVersionGet, "get key ear-key version aaaa0000000000000000000000000001"},
	}
	for _, tt := range tests {
		t.Run(tt.deny, func(t *testing.T) {
			w := newWorld(t, worldOpts{})
			must(t, w.sim.AddConnection(kv, "atlas-pe-1", vault.StatusPending, atlasPE))
			_, err := w.sim.AddKey(kv, "ear-key", "aaaa0000000000000000000000000001", true, nil, nil)
			must(t, err)
			_, err = w.sim.AddKey(kv, "ear-key", "", true, nil, nil)
			must(t, err)
			w.sim.Deny(tt.deny)
			err = tt.call(t.Context(), w.client)
			var fe *vault.ForbiddenError
			if !errors.As(err, &fe) || fe.Action != tt.deny || fe.Op != tt.wantOp || !strings.Contains(err.Error(), tt.deny) || transient.Is(err) {
				t.Fatalf("error = %v (%T), want a permanent *ForbiddenError naming %s", err, err, tt.deny)
			}
			if n := w.sim.Count(tt.route); n != 1 {
				t.Errorf("%s requests = %d, want 1 (403 is not retried)", tt.route, n)
			}
			if c, _ := w.sim.Connection(kv, "atlas-pe-1"); c.Status != vault.StatusPending || strings.Contains(err.Error(), "armsim.") {
				t.Errorf("connection %s; error %v (must not leak a token)", c.Status, err)
			}
		})
	}
}

// TestFailures: what ARM and the network do when they are unwell, how many
// round trips the client spends on it, and which failures come marked
// transient (a 403 names its action).
func TestFailures(t *testing.T) {
	tests := []struct {
		name     string
		fault    armsim.Fault
		defaults bool // the Client's own retry options
		timeout  time.Duration
		wantErr  bool
		calls    int64
		final    bool // the error is permanent
	}{
		{name: "429 twice, Retry-After honoured", fault: armsim.Fault{Match: armsim.RouteVaultGet, Status: 429, RetryAfter: 30 * time.Millisecond, Times: 2}, calls: 3},
		{name: "503 until retries are exhausted", fault: armsim.Fault{Status: 503}, wantErr: true, calls: 4},
		{name: "500: the deadline bounds the default retries", fault: armsim.Fault{Status: 500}, defaults: true, timeout: 300 * time.Millisecond, wantErr: true},
		{name: "dropped connections", fault: armsim.Fault{Drop: true}, wantErr: true},
		{name: "408 retried", fault: armsim.Fault{Status: 408}, wantErr: true, calls: 4},
		{name: "409 (a concurrent operation) not retried here, transient", fault: armsim.Fault{Status: 409}, wantErr: true, calls: 1},
		{name: "400", fault: armsim.Fault{Status: 400}, wantErr: true, final: true, calls: 1},
		{name: "401", fault: armsim.Fault{Status: 401}, wantErr: true, final: true, calls: 1},
		{name: "403", fault: armsim.Fault{Status: 403}, wantErr: true, final: true, calls: 1},
		{name: "412", fault: armsim.Fault{Status: 412}, wantErr: true, final: true, calls: 1},
		{name: "slow ARM, past the deadline", fault: armsim.Fault{Latency: 2 * time.Second}, timeout: 200 * time.Millisecond, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, worldOpts{defaults: tt.defaults})
			w.sim.Inject(tt.fault)
			ctx, cancel := context.WithTimeout(t.Context(), cmp.Or(tt.timeout, time.Minute))
			defer cancel()
			calls := &meter.Calls{}
			start := time.Now()
			got, err := w.client.Vault(meter.WithCalls(ctx, calls), kv)
			if d := time.Since(start); d > 2*time.Second || (tt.fault.RetryAfter > 0 && d < 2*tt.fault.RetryAfter) {
				t.Errorf("took %v", d)
			}
			_, forbidden := errors.AsType[*vault.ForbiddenError](err)
			if tt.wantErr != (err != nil) || (err != nil && (transient.Is(err) == tt.final || !strings.HasPrefix(err.Error(), "get vault kv-atlas-a: "))) ||
				(err == nil && !got.Found) || forbidden != (tt.fault.Status == 403) {
				t.Errorf("Vault = %+v, %v; want an error %v, permanent %v", got, err, tt.wantErr, tt.final)
			}
			if tt.calls > 0 && (calls.ARM() != tt.calls || int64(w.sim.Count(armsim.RouteVaultGet)) != tt.calls) {
				t.Errorf("ARM calls metered %d, served %d; want %d", calls.ARM(), w.sim.Count(armsim.RouteVaultGet), tt.calls)
			}
		})
	}
}

func TestTokenFailures(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.sim.SetIdentityDown(true)
	_, err := w.client.Vault(t.Context(), kv)
	var af *azidentity.AuthenticationFailedError
	if !errors.As(err, &af) || !transient.Is(err) || strings.Contains(err.Error(), w.sim.IdentityHeader()) ||
		err.Error() != "get vault kv-atlas-a: cannot get an ARM token: the managed identity endpoint answered 503 The managed identity endpoint is unavailable." {
		t.Fatalf("identity down: err = %v, want one transient line", err)
	}
	if n := w.sim.Count(armsim.RouteVaultGet); n != 0 {
		t.Errorf("ARM reached %d times without a token", n)
	}
	w.sim.SetIdentityDown(false)
	if got, err := w.client.Vault(t.Context(), kv); err != nil || !got.Found {
		t.Errorf("after outage: %+v, %v", got, err)
	}
	w.sim.ExpireTokens()
	_, err = w.client.Vault(t.Context(), kv)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 401 || re.ErrorCode != "ExpiredAuthenticationToken" || transient.Is(err) {
		t.Errorf("expired token: err = %v, want a permanent 401", err)
	}
}
