// Package atlassim is a stateful simulator of the parts of the MongoDB Atlas
// Administration API v2 that atlas-akv-guard reads, speaking the real wire
// formats over TLS: the OAuth 2.0 token endpoint (client credentials, HTTP
// Basic), HTTP Digest challenges for API keys, versioned Accept headers (406
// otherwise), Atlas error bodies, pagination with links, and fault injection
// (429 with Retry-After, 5xx, latency, dropped connections, a token-bucket
// rate limiter).
//
// Its JSON shapes are written from the Atlas OpenAPI specification,
// independently of the client in package atlas, so a client bug can't hide
// behind a shared type. All methods are safe for concurrent use.
package atlassim

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
)

// Endpoint statuses (EARPrivateEndpoint.status).
const (
	StatusInitiating        = "INITIATING"
	StatusPendingAcceptance = "PENDING_ACCEPTANCE"
	StatusActive            = "ACTIVE"
	StatusFailed            = "FAILED"
	StatusPendingRecreation = "PENDING_RECREATION"
	StatusDeleting          = "DELETING"
)

// Route names, and the kinds of Authorization header Stats counts besides
// other schemes (lowercased).
const (
	RouteToken            = "token"
	RouteEncryptionAtRest = "encryptionAtRest"
	RoutePrivateEndpoints = "privateEndpoints"
	RouteClusters         = "clusters"
	RouteUnknown          = "unknown"
	AuthNone              = "none" // no Authorization header (digest challenges among them)
	AuthDigest            = "digest"
	AuthBearer            = "bearer"
)

// Options configures a Sim.
type Options struct {
	// Now is the simulator's clock (token expiry, nonce expiry, rate
	// limiter); nil means time.Now.
	Now func() time.Time
	// TokenTTL is the lifetime of access tokens; <= 0 means one hour.
	TokenTTL time.Duration
	// PageSizeCap, when > 0, serves at most that many items per page even
	// if the request asks for more (links and totalCount stay consistent),
	// so pagination can be exercised with few items.
	PageSizeCap int
}

// AzureKeyVault is a project's Azure Key Vault EAR configuration, with its
// wire names (the write-only secret never appears). Valid nil means Atlas
// doesn't report validity (the field is omitted).
type AzureKeyVault struct {
	AzureEnvironment         string `json:"azureEnvironment,omitempty"`
	ClientID                 string `json:"clientID,omitempty"`
	Enabled                  bool   `json:"enabled"`
	KeyIdentifier            string `json:"keyIdentifier,omitempty"`
	KeyVaultName             string `json:"keyVaultName,omitempty"`
	RequirePrivateNetworking bool   `json:"requirePrivateNetworking"`
	ResourceGroupName        string `json:"resourceGroupName,omitempty"`
	SubscriptionID           string `json:"subscriptionID,omitempty"`
	TenantID                 string `json:"tenantID,omitempty"`
	Valid                    *bool  `json:"valid,omitempty"`
}

// Endpoint is an Azure EAR private endpoint (EARPrivateEndpoint, without its
// constant cloudProvider).
type Endpoint struct {
	ErrorMessage                  string `json:"errorMessage,omitempty"`
	ID                            string `json:"id"`
	PrivateEndpointConnectionName string `json:"privateEndpointConnectionName,omitempty"`
	RegionName                    string `json:"regionName"`
	Status                        string `json:"status"`
}

// Cluster is a cluster as the simulator stores it. Shards repeats the region
// list in that many replication specs (sharded clusters list a region once
// per shard).
type Cluster struct {
	ID                       string
	Name                     string
	Paused                   bool
	StateName                string
	EncryptionAtRestProvider string // "AZURE" or "NONE"
	Regions                  []string
	Providers                []string // providerName of Regions[i]; AZURE when missing or ""
	Shards                   int
}

type project struct {
	akv          AzureKeyVault
	endpoints    []Endpoint
	clusters     []Cluster
	alertConfigs []AlertConfig // nil until set: defaultAlertConfigs
}

// Sim is the simulator. Create it with New.
type Sim struct {
	now         func() time.Time
	tokenTTL    time.Duration
	pageSizeCap int
	mux         *http.ServeMux

	mu       sync.Mutex
	projects map[string]*project
	accounts map[string]string // clientID → secret
	apiKeys  map[string]string // public → private
	blocked  map[string]bool   // principal → 403
	tokens   map[string]token
	nonces   map[string]*nonce
	faults   []*Fault
	bucket   *bucket
	stats    Stats
	stop     func()
}

// New returns an empty simulator: no projects, no credentials.
func New(o Options) *Sim {
	s := &Sim{now: o.Now, tokenTTL: o.TokenTTL, pageSizeCap: o.PageSizeCap,
		projects: map[string]*project{}, accounts: map[string]string{}, apiKeys: map[string]string{},
		blocked: map[string]bool{}, tokens: map[string]token{}, nonces: map[string]*nonce{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = time.Hour
	}
	s.ResetStats()
	s.mux = s.routes()
	return s
}

// Start serves the simulator over TLS on a free loopback port, with a
// certificate from ca, and returns its base URL ("https://127.0.0.1:port").
// Call Close to stop it. Start may be called once.
func (s *Sim) Start(ca *simtls.Authority) (string, error) {
	ln, err := ca.Listen()
	if err != nil {
		return "", err
	}
	s.locked(func() { s.stop = simtls.Serve(ln, s) })
	return "https://" + ln.Addr().String(), nil
}

// Close stops the server started by Start, closing every connection. It is
// safe to call more than once, and without Start.
func (s *Sim) Close() {
	var stop func()
	s.locked(func() { stop = s.stop })
	if stop != nil {
		stop()
	}
}

// newID returns 24 lowercase hex digits, like an Atlas ObjectId.
func newID() string { return randomHex(12) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AddServiceAccount lets clientID/secret fetch tokens at /api/oauth/token.
func (s *Sim) AddServiceAccount(clientID, secret string) {
	s.locked(func() { s.accounts[clientID] = secret })
}

// AddAPIKey lets public/private authenticate with HTTP Digest.
func (s *Sim) AddAPIKey(public, private string) { s.locked(func() { s.apiKeys[public] = private }) }

// Block makes every API call of principal (a service account's client id or
// an API key's public key) answer 403 IP_ADDRESS_NOT_ON_ACCESS_LIST; false
// lifts it.
func (s *Sim) Block(principal string, blocked bool) {
	s.locked(func() { s.blocked[principal] = blocked })
}

// RevokeTokens invalidates every access token issued so far.
func (s *Sim) RevokeTokens() { s.locked(func() { clear(s.tokens) }) }

func (s *Sim) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *Sim) projectLocked(groupID string) *project {
	p := s.projects[groupID]
	if p == nil {
		p = &project{}
		s.projects[groupID] = p
	}
	return p
}

func copyBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	v := *b
	return &v
}

// PutProject creates the project groupID or replaces its Azure Key Vault
// configuration (endpoints and clusters stay).
func (s *Sim) PutProject(groupID string, akv AzureKeyVault) {
	akv.Valid = copyBool(akv.Valid)
	s.locked(func() { s.projectLocked(groupID).akv = akv })
}

// SetValid sets azureKeyVault.valid of the project (creating it if needed).
func (s *Sim) SetValid(groupID string, valid bool) {
	s.locked(func() { s.projectLocked(groupID).akv.Valid = &valid })
}

// Project returns the project's Azure Key Vault configuration and whether
// the project exists.
func (s *Sim) Project(groupID string) (akv AzureKeyVault, ok bool) {
	s.locked(func() {
		if p := s.projects[groupID]; p != nil {
			akv, ok = p.akv, true
			akv.Valid = copyBool(akv.Valid)
		}
	})
	return akv, ok
}

// AddEndpoint appends an Azure EAR private endpoint to the project (creating
// the project if needed) and returns its new id.
func (s *Sim) AddEndpoint(groupID, region, connectionName, status string) string {
	id := newID()
	s.locked(func() {
		p := s.projectLocked(groupID)
		p.endpoints = append(p.endpoints, Endpoint{ID: id, RegionName: region, Status: status, PrivateEndpointConnectionName: connectionName})
	})
	return id
}

// SetEndpoint changes an endpoint's status and error message; false when
// the project or the endpoint doesn't exist.
func (s *Sim) SetEndpoint(groupID, id, status, errorMessage string) bool {
	return s.endpoint(groupID, id, func(p *project, i int) {
		p.endpoints[i].Status, p.endpoints[i].ErrorMessage = status, errorMessage
	})
}

// RemoveEndpoint deletes an endpoint; false when it didn't exist.
func (s *Sim) RemoveEndpoint(groupID, id string) bool {
	return s.endpoint(groupID, id, func(p *project, i int) { p.endpoints = slices.Delete(p.endpoints, i, i+1) })
}

func (s *Sim) endpoint(groupID, id string, f func(p *project, i int)) (found bool) {
	s.locked(func() {
		if p := s.projects[groupID]; p != nil {
			if i := slices.IndexFunc(p.endpoints, func(e Endpoint) bool { return e.ID == id }); i >= 0 {
				f(p, i)
				found = true
			}
		}
	})
	return found
}

// Endpoints returns a copy of the project's endpoints in order (nil for an
// unknown project).
func (s *Sim) Endpoints(groupID string) (out []Endpoint) {
	s.locked(func() {
		if p := s.projects[groupID]; p != nil {
			out = slices.Clone(p.endpoints)
		}
	})
	return out
}

// AddCluster appends an unpaused, IDLE, single-shard cluster to the project
// (creating it if needed) with one region config per region, and returns its
// id. provider is its encryptionAtRestProvider ("AZURE" or "NONE").
func (s *Sim) AddCluster(groupID, name, provider string, regions ...string) string {
	return s.AddShardedCluster(groupID, name, provider, 1, regions...)
}

// AddShardedCluster is AddCluster with shards replication specs, each
// listing every region (so regions repeat across specs, as in Atlas).
func (s *Sim) AddShardedCluster(groupID, name, provider string, shards int, regions ...string) string {
	c := Cluster{ID: newID(), Name: name, StateName: "IDLE", EncryptionAtRestProvider: provider, Regions: slices.Clone(regions), Shards: max(shards, 1)}
	s.locked(func() {
		p := s.projectLocked(groupID)
		p.clusters = append(p.clusters, c)
	})
	return c.ID
}

// SetPaused pauses or resumes a cluster by name; false when unknown.
func (s *Sim) SetPaused(groupID, name string, paused bool) bool {
	return s.withCluster(groupID, name, func(c *Cluster) { c.Paused = paused })
}

// Clusters returns a copy of the project's clusters in order (nil for an
// unknown project).
func (s *Sim) Clusters(groupID string) (out []Cluster) {
	s.locked(func() {
		if p := s.projects[groupID]; p != nil {
			out = slices.Clone(p.clusters)
			for i := range out {
				out[i].Regions, out[i].Providers = slices.Clone(out[i].Regions), slices.Clone(out[i].Providers)
			}
		}
	})
	return out
}

// Stats is a snapshot of the simulator's request counters.
type Stats struct {
	// Requests counts every HTTP request received.
	Requests int64
	// ByRoute counts requests per Route* name.
	ByRoute map[string]int64
	// ByAuth counts requests per Authorization scheme (lowercased; AuthNone
	// without the header).
	ByAuth map[string]int64
	// ByStatus counts answers per HTTP status (dropped connections: 0).
	ByStatus map[int]int64
}

// Requests returns how many HTTP requests the simulator received.
func (s *Sim) Requests() int64 { return s.Stats().Requests }

// Stats returns a copy of the counters.
func (s *Sim) Stats() (st Stats) {
	s.locked(func() {
		st = Stats{Requests: s.stats.Requests, ByRoute: maps.Clone(s.stats.ByRoute), ByAuth: maps.Clone(s.stats.ByAuth), ByStatus: maps.Clone(s.stats.ByStatus)}
	})
	return st
}

// ResetStats zeroes the counters.
func (s *Sim) ResetStats() {
	s.locked(func() {
		s.stats = Stats{ByRoute: map[string]int64{}, ByAuth: map[string]int64{}, ByStatus: map[int]int64{}}
	})
}
