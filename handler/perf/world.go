// Package perf produces the README's performance figures: time to react (the
// real handler against the world simulator), API calls per project, start-up
// and memory of the built binary, and reconcile wall time and memory as the
// projects grow. Everything runs on loopback, bounded in count and time. The
// tests run each measurement briefly; `make perf` (-full) runs them at full
// size and writes out/*.md. Nothing in the product imports this package.
package perf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Credentials the simulated Atlas accepts.
const (
	SAClientID = "mdb_sa_id_perf"
	SASecret   = "perf-sa-secret"
	PublicKey  = "perfpubkey"
	PrivateKey = "perf-private-key-0000-1111"
)

// Auth methods of the Atlas client.
const (
	AuthServiceAccount = "service-account"
	AuthDigest         = "api-key-digest"
)

const (
	subscription = "11111111-2222-3333-4444-555555555555"
	keyName      = "atlas-ear"
	keyVersion   = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
)

// World is Atlas and ARM (with the managed identity endpoint) simulated over
// TLS on loopback, holding Projects healthy projects in steady state: each
// has its own vault with one ACTIVE endpoint whose connection is already
// Approved, an enabled key that expires in a year and one EAR cluster. A
// reconcile of such a project changes nothing.
//
// azidentity reads IDENTITY_ENDPOINT and IDENTITY_HEADER from the process
// environment and caches managed identity tokens process-wide: use one World
// per process, set Env in the process environment before Reconciler, and keep
// the random AZURE_CLIENT_ID in Env.
type World struct {
	CA    *simtls.Authority
	Atlas *atlassim.Sim
	ARM   *armsim.Server

	AtlasURL, ARMURL string
	// Env is what the guard would read from its environment to reach ARM.
	Env      map[string]string
	Projects []string

	cred azcore.TokenCredential
}

// NewWorld starts the simulators with n projects.
func NewWorld(n int) (*World, error) {
	ca, err := simtls.New()
	if err != nil {
		return nil, err
	}
	w := &World{CA: ca, Atlas: atlassim.New(atlassim.Options{}), ARM: armsim.New(armsim.Config{SettleReads: -1})}
	if w.AtlasURL, err = w.Atlas.Start(ca); err != nil {
		return nil, err
	}
	if w.ARMURL, err = w.ARM.Start(ca); err != nil {
		w.Close()
		return nil, err
	}
	idEndpoint, err := w.ARM.StartIdentity()
	if err != nil {
		w.Close()
		return nil, err
	}
	b := make([]byte, 8)
	rand.Read(b)
	w.Env = map[string]string{
		"IDENTITY_ENDPOINT": idEndpoint,
		"IDENTITY_HEADER":   w.ARM.IdentityHeader(),
		"AZURE_CLIENT_ID":   "perf-" + hex.EncodeToString(b),
	}
	w.Atlas.AddServiceAccount(SAClientID, SASecret)
	w.Atlas.AddAPIKey(PublicKey, PrivateKey)
	if err := w.AddProjects(n); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// Close stops the simulators.
func (w *World) Close() {
	w.Atlas.Close()
	w.ARM.Close()
}

// ProjectID returns the Atlas project id of the i-th simulated project.
func ProjectID(i int) string { return fmt.Sprintf("65f0c0ffee%014x", i) }

// VaultOf returns the vault of the i-th simulated project.
func VaultOf(i int) resource.ID {
	return resource.ID{SubscriptionID: subscription, ResourceGroup: "rg-atlas-ear", Name: fmt.Sprintf("kv-perf-%05d", i)}
}

// AddProjects adds healthy projects until the world holds n.
func (w *World) AddProjects(n int) error {
	exp := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	valid := true
	atlasPE := "/subscriptions/atlas-sub/resourceGroups/atlas-rg/providers/Microsoft.Network/privateEndpoints/"
	for i := len(w.Projects); i < n; i++ {
		p, kv := ProjectID(i), VaultOf(i)
		conn := fmt.Sprintf("atlas-pe-westeurope-%05d", i)
		w.Atlas.PutProject(p, atlassim.AzureKeyVault{
			AzureEnvironment: "AZURE", Enabled: true, ClientID: "app-client-id", TenantID: "tenant-id",
			KeyIdentifier: "https://" + kv.Name + ".vault.azure.net/keys/" + keyName + "/" + keyVersion,
			KeyVaultName:  kv.Name, ResourceGroupName: kv.ResourceGroup, SubscriptionID: kv.SubscriptionID,
			RequirePrivateNetworking: true, Valid: &valid,
		})
		w.Atlas.AddEndpoint(p, "EUROPE_WEST", conn, atlassim.StatusActive)
		w.Atlas.AddCluster(p, "orders", "AZURE", "EUROPE_WEST")
		w.ARM.AddVault(kv, map[string]string{"env": "perf"})
		if err := w.ARM.AddConnection(kv, conn, vault.StatusApproved, atlasPE+fmt.Sprintf("pe-%05d", i)); err != nil {
			return err
		}
		if _, err := w.ARM.AddKey(kv, keyName, keyVersion, true, nil, &exp); err != nil {
			return err
		}
		w.Projects = append(w.Projects, p)
	}
	return nil
}

// SetLatency makes every Atlas and ARM call (token fetches included, the
// managed identity endpoint excluded) take at least d; 0 removes it.
func (w *World) SetLatency(d time.Duration) {
	w.Atlas.ClearFaults()
	w.ARM.ClearFaults()
	if d > 0 {
		w.Atlas.Inject(atlassim.Fault{Latency: d})
		w.ARM.Inject(armsim.Fault{Latency: d})
	}
}

// ReconcilerOptions choose how the guard is wired to the world.
type ReconcilerOptions struct {
	// Projects default to all of the world's.
	Projects []string
	// Auth is AuthServiceAccount (default) or AuthDigest.
	Auth string
	// Concurrency as in reconcile.Options (0: the guard's default, 8).
	Concurrency int
	// Store defaults to a fresh state.NewMemory().
	Store state.Store
}

// Reconciler wires a reconciler to the world the way app.Wire does in
// production: an Atlas client and an ARM client over transports shaped like
// the production defaults (8 idle connections per host for Atlas, azcore's 10
// for ARM), managed identity from Env, enforce mode. The caller must have put
// Env's IDENTITY_ENDPOINT and IDENTITY_HEADER in the process environment.
func (w *World) Reconciler(o ReconcilerOptions) (*reconcile.Reconciler, error) {
	ao := atlas.Options{BaseURL: w.AtlasURL, HTTPClient: w.atlasHTTP()}
	switch o.Auth {
	case "", AuthServiceAccount:
		ao.ClientID, ao.ClientSecret = SAClientID, SASecret
	case AuthDigest:
		ao.PublicKey, ao.PrivateKey = PublicKey, PrivateKey
	default:
		return nil, fmt.Errorf("unknown auth %q", o.Auth)
	}
	ac, err := atlas.New(ao)
	if err != nil {
		return nil, err
	}
	armTransport := w.CA.Transport()
	armTransport.MaxIdleConnsPerHost = 10
	armClient := &http.Client{Transport: armTransport}
	if w.cred == nil {
		w.cred, err = vault.Credential(func(k string) string { return w.Env[k] }, &azcore.ClientOptions{Transport: armClient})
		if err != nil {
			return nil, err
		}
	}
	cloudCfg, err := vault.CloudFor("AZURE", w.ARMURL)
	if err != nil {
		return nil, err
	}
	vc, err := vault.New(vault.Options{
		Credential: w.cred, Cloud: cloudCfg, Transport: armClient,
		Retry: policy.RetryOptions{RetryDelay: 50 * time.Millisecond}, PollInterval: 5 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	projects := o.Projects
	if projects == nil {
		projects = w.Projects
	}
	store := o.Store
	if store == nil {
		store = state.NewMemory()
	}
	return reconcile.New(reconcile.Options{
		Projects: projects, Atlas: ac,
		Azure: func(string) (reconcile.Azure, error) { return vc, nil },
		Store: store, Log: notify.NewLog(logging.Discard()),
		Policy:      plan.DefaultPolicy(plan.ModeEnforce),
		Concurrency: o.Concurrency,
		Timeout:     10 * time.Minute,
	})
}

func (w *World) atlasHTTP() *http.Client {
	t := w.CA.Transport()
	t.MaxIdleConnsPerHost = 8 // as atlas's default transport
	t.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: t, Timeout: 60 * time.Second}
}

// Warm runs one reconcile of the world's first project so that tokens
// (Atlas service account, managed identity) and connections exist.
func (w *World) Warm(ctx context.Context, r *reconcile.Reconciler) error {
	_, err := r.Project(ctx, w.Projects[0], nil)
	return err
}
