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
	"errors"
	"log/slog"
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

// Route names used by Stats.
const (
	RouteToken             = "token"
	RouteEncryptionAtRest  = "encryptionAtRest"
	RoutePrivateEndpoints  = "privateEndpoints"
	RoutePrivateEndpoint   = "privateEndpoint"
	RouteClusters          = "clusters"
	RouteUnknown           = "unknown"
	AuthNone               = "none" // no Authorization header (digest challenges among them)
	AuthDigest             = "digest"
	AuthBearer             = "bearer"
	AuthBasic              = "basic" // the token endpoint's client authentication
	AuthOther              = "other"
	defaultTokenTTL        = time.Hour
	defaultPageSize        = 100
	maxItemsPerPage        = 500
	digestRealm            = "MMS Public API"
	nonceTTL               = 5 * time.Minute
	maxNonces              = 100_000
	defaultRetryAfter429   = time.Second
	defaultClusterSize     = "M10"
	defaultMongoDBVersion  = "8.0.12"
	defaultMongoDBMajorVer = "8.0"
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
	// Logger receives the HTTP server's own errors (TLS handshakes); nil
	// discards them.
	Logger *slog.Logger
}

// AzureKeyVault is a project's Azure Key Vault EAR configuration. Valid nil
// means Atlas doesn't report validity (the field is omitted).
type AzureKeyVault struct {
	AzureEnvironment         string
	ClientID                 string
	Enabled                  bool
	KeyIdentifier            string
	KeyVaultName             string
	RequirePrivateNetworking bool
	ResourceGroupName        string
	SubscriptionID           string
	TenantID                 string
	Valid                    *bool
}

// Endpoint is an Azure EAR private endpoint as the simulator stores it.
type Endpoint struct {
	ID                            string
	RegionName                    string
	Status                        string
	ErrorMessage                  string
	PrivateEndpointConnectionName string
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
	akv       AzureKeyVault
	endpoints []Endpoint
	clusters  []Cluster
}

type tokenInfo struct {
	clientID string
	expires  time.Time
}

type nonceInfo struct {
	issued time.Time
	lastNC uint64
}

// Sim is the simulator. Create it with New.
type Sim struct {
	now         func() time.Time
	tokenTTL    time.Duration
	pageSizeCap int
	log         *slog.Logger
	mux         *http.ServeMux

	mu        sync.Mutex
	projects  map[string]*project
	accounts  map[string]string // clientID → secret
	apiKeys   map[string]string // public → private
	blocked   map[string]bool   // principal → 403
	tokens    map[string]tokenInfo
	nonces    map[string]*nonceInfo
	faults    []*Fault
	bucket    *bucket
	requests  int64
	byRoute   map[string]int64
	byAuth    map[string]int64
	byStatus  map[int]int64
	srv       *http.Server
	served    chan struct{}
	closeOnce sync.Once
}

// New returns an empty simulator: no projects, no credentials.
func New(o Options) *Sim {
	s := &Sim{
		now:         o.Now,
		tokenTTL:    o.TokenTTL,
		pageSizeCap: o.PageSizeCap,
		log:         o.Logger,
		projects:    map[string]*project{},
		accounts:    map[string]string{},
		apiKeys:     map[string]string{},
		blocked:     map[string]bool{},
		tokens:      map[string]tokenInfo{},
		nonces:      map[string]*nonceInfo{},
		byRoute:     map[string]int64{},
		byAuth:      map[string]int64{},
		byStatus:    map[int]int64{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = defaultTokenTTL
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mux = s.routes()
	return s
}

// Handler returns the simulator's HTTP handler (for callers that run their
// own server).
func (s *Sim) Handler() http.Handler { return s }

// Start serves the simulator over TLS on a free loopback port, with a
// certificate from ca, and returns its base URL ("https://127.0.0.1:port").
// Call Close to stop it. Start may be called once.
func (s *Sim) Start(ca *simtls.Authority) (string, error) {
	ln, err := ca.Listen()
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.srv != nil {
		s.mu.Unlock()
		ln.Close()
		return "", errors.New("atlassim: already started")
	}
	s.srv = srv
	s.served = make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.served)
		_ = srv.Serve(ln)
	}()
	return "https://" + ln.Addr().String(), nil
}

// Close stops the server started by Start, closing every connection, and
// waits for it to stop accepting. It is safe to call more than once, and
// without Start.
func (s *Sim) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		srv, served := s.srv, s.served
		s.mu.Unlock()
		if srv == nil {
			return
		}
		err = srv.Close()
		<-served
	})
	return err
}

// newID returns 24 lowercase hex digits, like an Atlas ObjectId.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AddServiceAccount lets clientID/secret fetch tokens at /api/oauth/token.
func (s *Sim) AddServiceAccount(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[clientID] = secret
}

// AddAPIKey lets public/private authenticate with HTTP Digest.
func (s *Sim) AddAPIKey(public, private string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiKeys[public] = private
}

// Block makes every API call of principal (a service account's client id or
// an API key's public key) answer 403 IP_ADDRESS_NOT_ON_ACCESS_LIST; false
// lifts it.
func (s *Sim) Block(principal string, blocked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if blocked {
		s.blocked[principal] = true
	} else {
		delete(s.blocked, principal)
	}
}

// RevokeTokens invalidates every access token issued so far.
func (s *Sim) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

func (s *Sim) projectLocked(groupID string) *project {
	p := s.projects[groupID]
	if p == nil {
		p = &project{}
		s.projects[groupID] = p
	}
	return p
}

// PutProject creates the project groupID or replaces its Azure Key Vault
// configuration (endpoints and clusters stay).
func (s *Sim) PutProject(groupID string, akv AzureKeyVault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if akv.Valid != nil {
		v := *akv.Valid
		akv.Valid = &v
	}
	s.projectLocked(groupID).akv = akv
}

// DeleteProject removes the project; later calls about it answer 404.
func (s *Sim) DeleteProject(groupID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.projects, groupID)
}

// SetValid sets azureKeyVault.valid of the project (creating it if needed).
func (s *Sim) SetValid(groupID string, valid bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projectLocked(groupID).akv.Valid = &valid
}

// Project returns the project's Azure Key Vault configuration and whether
// the project exists.
func (s *Sim) Project(groupID string) (AzureKeyVault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[groupID]
	if p == nil {
		return AzureKeyVault{}, false
	}
	akv := p.akv
	if akv.Valid != nil {
		v := *akv.Valid
		akv.Valid = &v
	}
	return akv, true
}

// AddEndpoint appends an Azure EAR private endpoint to the project (creating
// the project if needed) and returns its new id.
func (s *Sim) AddEndpoint(groupID, region, connectionName, status string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := newID()
	p := s.projectLocked(groupID)
	p.endpoints = append(p.endpoints, Endpoint{ID: id, RegionName: region, Status: status, PrivateEndpointConnectionName: connectionName})
	return id
}

// SetEndpoint changes an endpoint's status and error message; false when
// the project or the endpoint doesn't exist.
func (s *Sim) SetEndpoint(groupID, id, status, errorMessage string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[groupID]
	if p == nil {
		return false
	}
	for i := range p.endpoints {
		if p.endpoints[i].ID == id {
			p.endpoints[i].Status = status
			p.endpoints[i].ErrorMessage = errorMessage
			return true
		}
	}
	return false
}

// SetConnectionName changes the privateEndpointConnectionName of an endpoint
// (Atlas fills it in once Azure created the endpoint); false when unknown.
func (s *Sim) SetConnectionName(groupID, id, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[groupID]
	if p == nil {
		return false
	}
	for i := range p.endpoints {
		if p.endpoints[i].ID == id {
			p.endpoints[i].PrivateEndpointConnectionName = name
			return true
		}
	}
	return false
}

// RemoveEndpoint deletes an endpoint; false when it didn't exist.
func (s *Sim) RemoveEndpoint(groupID, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[groupID]
	if p == nil {
		return false
	}
	for i := range p.endpoints {
		if p.endpoints[i].ID == id {
			p.endpoints = slices.Delete(p.endpoints, i, i+1)
			return true
		}
	}
	return false
}

// Endpoints returns a copy of the project's endpoints in order (nil for an
// unknown project).
func (s *Sim) Endpoints(groupID string) []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[groupID]
	if p == nil {
		return nil
	}
	return slices.Clone(p.endpoints)
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if shards < 1 {
		shards = 1
	}
	id := newID()
	p := s.projectLocked(groupID)
	p.clusters = append(p.clusters, Cluster{
		ID: id, Name: name, StateName: "IDLE", EncryptionAtRestProvider: provider,
		Regions: slices.Clone(regions), Shards: shards,
	})
	return id
}

// SetPaused pauses or resumes a cluster by name; false when unknown.
func (s *Sim) SetPaused(groupID, name string, paused bool) bool {
	return s.withCluster(groupID, name, func(c *Cluster) { c.Paused = paused })
}

// Clusters returns a copy of the project's clusters in order (nil for an
// unknown project).
func (s *Sim) Clusters(groupID string) []Cluster {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[groupID]
	if p == nil {
		return nil
	}
	out := slices.Clone(p.clusters)
	for i := range out {
		out[i].Regions, out[i].Providers = slices.Clone(out[i].Regions), slices.Clone(out[i].Providers)
	}
	return out
}

// Stats is a snapshot of the simulator's request counters.
type Stats struct {
	// Requests counts every HTTP request received.
	Requests int64
	// ByRoute counts requests per Route* name.
	ByRoute map[string]int64
	// ByAuth counts requests per Auth* kind of Authorization header.
	ByAuth map[string]int64
	// ByStatus counts answers per HTTP status (dropped connections: 0).
	ByStatus map[int]int64
}

// Requests returns how many HTTP requests the simulator received.
func (s *Sim) Requests() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Requests: s.requests, ByRoute: map[string]int64{}, ByAuth: map[string]int64{}, ByStatus: map[int]int64{}}
	for k, v := range s.byRoute {
		st.ByRoute[k] = v
	}
	for k, v := range s.byAuth {
		st.ByAuth[k] = v
	}
	for k, v := range s.byStatus {
		st.ByStatus[k] = v
	}
	return st
}

// ResetStats zeroes the counters.
func (s *Sim) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = 0
	clear(s.byRoute)
	clear(s.byAuth)
	clear(s.byStatus)
}
