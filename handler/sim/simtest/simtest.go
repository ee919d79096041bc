// Package simtest starts the in-repo simulators as every test and tool needs
// them: one private CA (simtls), Atlas (atlassim) with a service account, and
// ARM with its App Service managed identity endpoint (armsim), over TLS on
// loopback; it seeds healthy projects and wires the real Atlas and ARM
// clients to them as the app wires them in Azure. Tests use New (stopped by
// t.Cleanup), programs Start and Close.
//
// azidentity reads IDENTITY_ENDPOINT and IDENTITY_HEADER from the process
// environment, and MSAL caches managed identity tokens process-wide by client
// ID: New sets both variables (t.Setenv), and every Sims has its own random
// AZURE_CLIENT_ID in Env, so no test receives a token another simulator
// issued. A program running the clients in-process calls Setenv.
package simtest

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Options configure the simulators.
type Options struct {
	Atlas atlassim.Options
	ARM   armsim.Config
}

// Sims are the running simulators and what a guard needs to reach them.
type Sims struct {
	CA    *simtls.Authority
	Atlas *atlassim.Sim
	ARM   *armsim.Server

	AtlasURL, ARMURL, IdentityURL string
	// AtlasClientID and AtlasSecret are a service account Atlas accepts.
	AtlasClientID, AtlasSecret string
	// Env is what a guard reads from its environment to reach ARM:
	// IDENTITY_ENDPOINT, IDENTITY_HEADER and a fresh AZURE_CLIENT_ID.
	Env map[string]string
}

// Start starts the simulators; Close stops them.
func Start(o Options) (*Sims, error) {
	ca, err := simtls.New()
	if err != nil {
		return nil, err
	}
	s := &Sims{CA: ca, Atlas: atlassim.New(o.Atlas), ARM: armsim.New(o.ARM),
		AtlasClientID: "mdb_sa_id_" + RandHex(8), AtlasSecret: "mdb_sa_sk_" + RandHex(16)}
	var errs [3]error
	s.AtlasURL, errs[0] = s.Atlas.Start(ca)
	s.ARMURL, errs[1] = s.ARM.Start(ca)
	s.IdentityURL, errs[2] = s.ARM.StartIdentity()
	if err := errors.Join(errs[:]...); err != nil {
		s.Close()
		return nil, fmt.Errorf("simtest: %w", err)
	}
	s.Atlas.AddServiceAccount(s.AtlasClientID, s.AtlasSecret)
	s.Env = map[string]string{
		"IDENTITY_ENDPOINT": s.IdentityURL,
		"IDENTITY_HEADER":   s.ARM.IdentityHeader(),
		"AZURE_CLIENT_ID":   "guard-" + RandHex(8),
	}
	return s, nil
}

// New starts the simulators for one test, sets IDENTITY_ENDPOINT and
// IDENTITY_HEADER in the process environment and stops everything when the
// test ends. Tests using New cannot run in parallel (t.Setenv).
func New(t testing.TB, o Options) *Sims {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	t.Setenv("IDENTITY_ENDPOINT", s.IdentityURL)
	t.Setenv("IDENTITY_HEADER", s.ARM.IdentityHeader())
	return s
}

// Close stops the simulators.
func (s *Sims) Close() {
	s.Atlas.Close()
	s.ARM.Close()
}

// Setenv puts IDENTITY_ENDPOINT and IDENTITY_HEADER in the process
// environment, for programs that run the ARM client in-process.
func (s *Sims) Setenv() error {
	return errors.Join(os.Setenv("IDENTITY_ENDPOINT", s.IdentityURL), os.Setenv("IDENTITY_HEADER", s.ARM.IdentityHeader()))
}

// Credential is the guard's managed identity credential from Env, trusting
// the simulators' CA.
func (s *Sims) Credential(retry policy.RetryOptions) (azcore.TokenCredential, error) {
	return vault.Credential(func(k string) string { return s.Env[k] }, &azcore.ClientOptions{Transport: s.CA.Client(), Retry: retry})
}

// VaultClient is the ARM client wired to the simulator as the app wires it:
// managed identity from Env, the ARM endpoint override, the given retries
// (for the token fetches too) and a 5ms provisioning poll.
func (s *Sims) VaultClient(retry policy.RetryOptions) (*vault.Client, error) {
	cred, err := s.Credential(retry)
	if err != nil {
		return nil, err
	}
	cloudCfg, err := vault.CloudFor("AZURE", s.ARMURL)
	if err != nil {
		return nil, err
	}
	return vault.New(vault.Options{Credential: cred, Cloud: cloudCfg, Transport: s.CA.Client(), Retry: retry, PollInterval: 5 * time.Millisecond})
}

// AtlasClient is the Atlas client wired to the simulator: o with the base
// URL, the CA-trusting HTTP client and (when o names no credentials) the
// service account filled in.
func (s *Sims) AtlasClient(o atlas.Options) (*atlas.Client, error) {
	o.BaseURL = s.AtlasURL
	if o.HTTPClient == nil {
		o.HTTPClient = s.CA.Client()
	}
	if o.ClientID == "" && o.PublicKey == "" {
		o.ClientID = s.AtlasClientID
		if o.ClientSecret == "" {
			o.ClientSecret = s.AtlasSecret
		}
	}
	return atlas.New(o)
}

// Project is a healthy Atlas project with EAR on its own vault.
type Project struct {
	ID    string
	Vault resource.ID
	Tags  map[string]string // the vault's tags
	// Key is the key name ("" means atlas-ear); KeyVersion "" means a new
	// random version. The key is enabled and expires in a year.
	Key, KeyVersion string
	// Clusters are EAR clusters (provider AZURE) in Regions ("" means
	// US_EAST_2).
	Clusters []string
	Regions  []string
}

// AddProject creates p: the vault and its key in ARM, the project's valid EAR
// configuration (requirePrivateNetworking, pinning that key version) and its
// clusters in Atlas. It returns the key version.
func (s *Sims) AddProject(p Project) (string, error) {
	p.Key = cmp.Or(p.Key, "atlas-ear")
	if len(p.Regions) == 0 {
		p.Regions = []string{"US_EAST_2"}
	}
	s.ARM.AddVault(p.Vault, p.Tags)
	exp := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	ver, err := s.ARM.AddKey(p.Vault, p.Key, p.KeyVersion, true, nil, &exp)
	if err != nil {
		return "", err
	}
	valid := true
	s.Atlas.PutProject(p.ID, atlassim.AzureKeyVault{
		AzureEnvironment: "AZURE", ClientID: "0b1c2d3e-0000-4000-8000-000000000001", Enabled: true, TenantID: "0b1c2d3e-0000-4000-8000-000000000002",
		KeyIdentifier: "https://" + p.Vault.Name + ".vault.azure.net/keys/" + p.Key + "/" + ver,
		KeyVaultName:  p.Vault.Name, ResourceGroupName: p.Vault.ResourceGroup, SubscriptionID: p.Vault.SubscriptionID,
		RequirePrivateNetworking: true, Valid: &valid,
	})
	for _, c := range p.Clusters {
		s.Atlas.AddCluster(p.ID, c, "AZURE", p.Regions...)
	}
	return ver, nil
}

// AddEndpoint adds Atlas's EAR private endpoint in region with status
// atlasStatus and its connection on v with connStatus, and returns the Atlas
// endpoint id.
func (s *Sims) AddEndpoint(project string, v resource.ID, region, conn, atlasStatus, connStatus string) (string, error) {
	id := s.Atlas.AddEndpoint(project, region, conn, atlasStatus)
	return id, s.ARM.AddConnection(v, conn, connStatus, "/subscriptions/atlas-sub/resourceGroups/atlas-rg/providers/Microsoft.Network/privateEndpoints/pe-"+id)
}

// RandHex returns n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
