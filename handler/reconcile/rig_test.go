package reconcile_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify/notifytest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

const (
	project  = "65a1b2c3d4e5f60718293a4b"
	saID     = "mdb_sa_id_guard"
	saSecret = "mdb_sa_sk_do-not-print-me"
	keyName  = "atlas-ear"
	peConn   = "atlas-pe-eastus2-65a1b2c3d4e5f60718293a4b.1c2d3e4f-aaaa-bbbb-cccc-0123456789ab"
	peID     = "/subscriptions/atlas-sub/resourceGroups/atlas-rg/providers/Microsoft.Network/privateEndpoints/atlas-pe-1"
)

var kv = resource.ID{SubscriptionID: "8f3c2a1e-4b7d-4e9a-9c1f-2d6b5a7e0c34", ResourceGroup: "rg-atlas-ear", Name: "kv-atlas-ear"}

// blobURL is the Azurite instance shared by the package's tests (each test
// uses its own container).
var blobConn string

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	in, err := azurite.StartProcess(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "reconcile tests need Azurite (run `make test`, which installs it):", err)
		os.Exit(1)
	}
	blobConn = in.ConnectionString
	code := m.Run()
	in.Close()
	os.Exit(code)
}

// rig is one Atlas project with EAR on one vault, the Atlas and ARM
// simulators over TLS, real Azurite storage, a webhook receiver and a log
// buffer — and the real clients wired as the app wires them.
type rig struct {
	t       testing.TB
	atlas   *atlassim.Sim
	arm     *armsim.Server
	ca      *simtls.Authority
	store   state.Store
	hook    *notifytest.WebhookRecorder
	hookURL string
	azure   reconcile.AzureFor
	ac      *atlas.Client
	keyVer  string
	endpt   string

	mu       sync.Mutex
	log      bytes.Buffer
	approved int // connections ARM changed from Pending to Approved
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newRig(t testing.TB) *rig {
	t.Helper()
	ca, err := simtls.New()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, ca: ca, hook: notifytest.NewWebhookRecorder()}

	r.atlas = atlassim.New(atlassim.Options{})
	atlasURL, err := r.atlas.Start(ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.atlas.Close() })
	r.atlas.AddServiceAccount(saID, saSecret)
	r.arm = armsim.New(armsim.Config{})
	armURL, err := r.arm.Start(ca)
	if err != nil {
		t.Fatal(err)
	}
	idURL, err := r.arm.StartIdentity()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.arm.Close)
	r.arm.AddVault(kv, map[string]string{"env": "prod"})
	r.arm.OnChange(func(c armsim.Change) {
		if c.Before.Status == vault.StatusPending && c.After.Status == vault.StatusApproved {
			r.mu.Lock()
			r.approved++
			r.mu.Unlock()
		}
	})
	r.keyVer, r.endpt = r.addProject(project, kv, peConn, false)

	// MSAL caches managed identity tokens process-wide by client id: a
	// fresh user-assigned id per rig keeps simulators apart.
	t.Setenv("IDENTITY_ENDPOINT", idURL)
	t.Setenv("IDENTITY_HEADER", r.arm.IdentityHeader())
	clientID := "guard-" + randHex(6)
	env := map[string]string{"IDENTITY_ENDPOINT": idURL, "IDENTITY_HEADER": r.arm.IdentityHeader(), "AZURE_CLIENT_ID": clientID}
	cred, err := vault.Credential(func(k string) string { return env[k] }, &azcore.ClientOptions{
		Transport: ca.Client(),
		Retry:     policy.RetryOptions{MaxRetries: 1, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	cloudCfg, err := vault.CloudFor("AZURE", armURL)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := vault.New(vault.Options{Credential: cred, Cloud: cloudCfg, Transport: ca.Client(),
		Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond}, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.azure = func(string) (reconcile.Azure, error) { return vc, nil }
	r.ac, err = atlas.New(atlas.Options{BaseURL: atlasURL, ClientID: saID, ClientSecret: saSecret, HTTPClient: ca.Client(), MaxRetryWait: 50 * time.Millisecond, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}

	r.store, err = state.NewBlob(t.Context(), state.BlobOptions{ConnectionString: blobConn, Container: "t" + randHex(8)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.hook)
	t.Cleanup(srv.Close)
	r.hookURL = srv.URL + "/hook"
	return r
}

func ptr[T any](v T) *T { return &v }

// addProject adds an Atlas project with EAR on vault v (added to ARM unless
// sharedVault), one cluster, and one endpoint waiting for its Pending
// connection conn. It returns the key version and the endpoint id.
func (r *rig) addProject(id string, v resource.ID, conn string, sharedVault bool) (keyVer, endpoint string) {
	r.t.Helper()
	if !sharedVault {
		r.arm.AddVault(v, map[string]string{"env": "prod"})
	}
	keyVer, err := r.arm.AddKey(v, keyName, "", true, nil, ptr(time.Now().Add(365*24*time.Hour)))
	if err != nil {
		r.t.Fatal(err)
	}
	r.atlas.PutProject(id, atlassim.AzureKeyVault{
		AzureEnvironment: "AZURE", ClientID: "0b1c2d3e-0000-4000-8000-000000000001", Enabled: true,
		KeyIdentifier: "https://" + v.Name + ".vault.azure.net/keys/" + keyName + "/" + keyVer,
		KeyVaultName:  v.Name, RequirePrivateNetworking: true, ResourceGroupName: v.ResourceGroup,
		SubscriptionID: v.SubscriptionID, TenantID: "0b1c2d3e-0000-4000-8000-000000000002", Valid: ptr(true),
	})
	r.atlas.AddCluster(id, "orders", "AZURE", "US_EAST_2")
	endpoint = r.atlas.AddEndpoint(id, "US_EAST_2", conn, atlas.StatusPendingAcceptance)
	if err := r.arm.AddConnection(v, conn, vault.StatusPending, peID); err != nil {
		r.t.Fatal(err)
	}
	return keyVer, endpoint
}

type options struct {
	mode     plan.Mode
	store    state.Store
	instance string
	noHook   bool
	projects []string        // default: the rig's project
	atlas    reconcile.Atlas // default: the rig's Atlas client
	timeout  time.Duration
}

// guard builds a Reconciler over the rig, as app.Wire does.
func (r *rig) guard(o options) *reconcile.Reconciler {
	r.t.Helper()
	if o.mode == "" {
		o.mode = plan.ModeEnforce
	}
	if o.store == nil {
		o.store = r.store
	}
	if o.projects == nil {
		o.projects = []string{project}
	}
	if o.atlas == nil {
		o.atlas = r.ac
	}
	var sinks []reconcile.Sink
	if !o.noHook {
		wh, err := notify.NewWebhook(notify.WebhookOptions{URL: r.hookURL, Format: notify.FormatGeneric})
		if err != nil {
			r.t.Fatal(err)
		}
		sinks = append(sinks, wh)
	}
	g, err := reconcile.New(reconcile.Options{
		Projects: o.projects, Atlas: o.atlas, Azure: r.azure, Store: o.store, Timeout: o.timeout,
		Log: notify.NewLog(logging.New(lockedWriter{r}, slog.LevelInfo)), Sinks: sinks,
		Policy: plan.Policy{Mode: o.mode, RenotifyAfter: time.Hour}, Instance: o.instance,
		Logger: logging.New(lockedWriter{r}, slog.LevelInfo),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return g
}

type lockedWriter struct{ r *rig }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.log.Write(p)
}

func (r *rig) logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// approvals counts the connections ARM approved (PUTs that lost a race on
// the etag do not count).
func (r *rig) approvals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.approved
}

// puts counts the approval PUTs ARM received.
func (r *rig) puts() int { return r.arm.Count(armsim.RouteConnectionPut) }

// noticeCount counts webhook notices by kind and action.
func (r *rig) noticeCount(kind, action string) int {
	n := 0
	for _, x := range r.hook.Notices() {
		if string(x.Alert.Kind) == kind && string(x.Action) == action {
			n++
		}
	}
	return n
}
