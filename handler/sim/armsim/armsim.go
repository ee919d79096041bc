// Package armsim simulates the parts of Azure Resource Manager the guard uses —
// Key Vault vaults, their private endpoint connections and keys
// (Microsoft.KeyVault, the api-versions armkeyvault sends) — and the App
// Service managed identity endpoint that issues the tokens it accepts.
//
// It speaks the real wire formats over TLS: ARM error bodies
// {"error":{"code","message"}}, paging with nextLink, api-version checks,
// bearer tokens, 403 AuthorizationFailed naming the missing action, a PUT on a
// connection that reports provisioningState Updating before it settles to
// Succeeded, etags, 429 with Retry-After and injected faults. Tests and the
// world simulator drive it through the mutators; writes made through the API
// are reported to OnChange hooks. A Server is safe for concurrent use.
package armsim

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// APIVersions are the Microsoft.KeyVault api-versions the simulator accepts;
// armkeyvault v1.5.0 sends 2024-11-01. The response shapes the guard reads are
// the same in all of them.
var APIVersions = []string{"2019-09-01", "2021-10-01", "2022-07-01", "2023-02-01", "2023-07-01", "2024-11-01"}

// IdentityAPIVersion is the App Service managed identity protocol version.
const IdentityAPIVersion = "2019-08-01"

// Route names, used by counters and to match faults.
const (
	RouteVaultGet        = "vaults/get"
	RouteConnectionsList = "privateEndpointConnections/list"
	RouteConnectionGet   = "privateEndpointConnections/get"
	RouteConnectionPut   = "privateEndpointConnections/put"
	RouteKeyGet          = "keys/get"
	RouteKeyVersionGet   = "keys/versions/get"
	RouteIdentity        = "identity"
)

// Config tunes a Server. The zero value is usable.
type Config struct {
	// PageSize is the number of connections per list page; 0 means 100.
	PageSize int
	// SettleReads is how many reads (GET or list) of a connection after a PUT
	// still report provisioningState Updating; 0 means 1, negative means none
	// (the PUT answers Succeeded at once).
	SettleReads int
	// TokenLifetime of issued tokens; 0 means one hour.
	TokenLifetime time.Duration
	// Audiences are the token resources the identity endpoint issues tokens
	// for; empty means the ARM audiences of the public and China clouds.
	Audiences []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// The vaults' location and DNS suffix.
const (
	location       = "westeurope"
	vaultDNSSuffix = "vault.azure.net"
)

// Change is a write made through the ARM API, as Azure would report it in a
// Microsoft.Resources.ResourceWriteSuccess event.
type Change struct {
	Time time.Time
	// ClientID and ObjectID identify the caller (from its bearer token).
	ClientID, ObjectID string
	// ResourceURI is the ARM ID of the written resource.
	ResourceURI string
	// Operation is the ARM operation name, e.g.
	// Microsoft.KeyVault/vaults/privateEndpointConnections/write.
	Operation string
	Vault     resource.ID
	// Before and After are the connection before and right after the write.
	Before, After vault.Connection
}

// Fault is a failure injected into matching requests.
type Fault struct {
	// Match is a route name (RouteVaultGet, …, RouteIdentity); empty matches
	// every ARM route (not the identity endpoint).
	Match string
	// Status, when not 0, is answered instead of the real response, with an
	// ARM error body (code Code, or one derived from the status).
	Status int
	Code   string
	// RetryAfter is sent as Retry-After (whole seconds, rounded up); a
	// sub-second remainder is also sent as retry-after-ms, which azcore prefers.
	RetryAfter time.Duration
	// Times is how many requests the fault applies to; 0 means all.
	Times int
	// Latency delays the request (then the fault or the real answer follows).
	Latency time.Duration
	// Drop closes the connection without an answer.
	Drop bool
}

// Server is the simulator. Create it with New.
type Server struct {
	cfg     Config
	now     func() time.Time
	idHdr   string
	systemC string

	mu                    sync.Mutex
	vaults                map[string]*vaultState
	tokens                map[string]*token
	denied                map[string]bool
	faults                []*Fault
	counts                map[string]int
	hooks                 []func(Change)
	identityDown          bool
	beforePut             func(vault resource.ID, connection string)
	noIfMatch, noBodyEtag bool
	providers             map[string]string // SetProvider's registration states, by "sub/namespace"
	stops                 []func()
}

type vaultState struct {
	id   resource.ID
	tags map[string]string
	// unprotected turns enablePurgeProtection and enableSoftDelete off.
	unprotected struct{ purge, softDelete bool }
	conns       []*connState
	keys        map[string]*keyState
}

type connState struct {
	name, status, desc, actions, peID, prov, etag string
	readsLeft                                     int
	served                                        []string
}

type keyState struct {
	name     string
	versions []*keyVersion // oldest first; the last is the latest
}

type keyVersion struct {
	version          string
	enabled          bool
	nbf, exp         *time.Time
	created, updated time.Time
}

type token struct {
	clientID, objectID, resource string
	expires                      time.Time
}

// New returns a Server with no vaults.
func New(cfg Config) *Server {
	if cfg.PageSize <= 0 {
		cfg.PageSize = 100
	}
	if cfg.SettleReads == 0 {
		cfg.SettleReads = 1
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if len(cfg.Audiences) == 0 {
		cfg.Audiences = []string{"https://management.core.windows.net/", "https://management.azure.com/", "https://management.core.chinacloudapi.cn/", "https://management.chinacloudapi.cn/"}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Server{cfg: cfg, now: now, idHdr: randHex(16), systemC: guid("system-assigned"),
		vaults: map[string]*vaultState{}, tokens: map[string]*token{}, denied: map[string]bool{}, counts: map[string]int{}}
}

// Start serves the ARM routes over TLS with a certificate of ca on a free
// loopback port and returns the base URL (https://127.0.0.1:port), to be used
// as the ResourceManager endpoint.
func (s *Server) Start(ca *simtls.Authority) (baseURL string, err error) {
	ln, err := ca.Listen()
	return s.serve(ln, err, s.serveARM, "https://", "")
}

// StartIdentity serves the App Service managed identity endpoint (see
// serveIdentity) over plain HTTP on loopback, as App Service does, and returns
// the value for IDENTITY_ENDPOINT; IDENTITY_HEADER is IdentityHeader().
func (s *Server) StartIdentity() (endpoint string, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	return s.serve(ln, err, s.serveIdentity, "http://", "/msi/token")
}

func (s *Server) serve(ln net.Listener, err error, h http.HandlerFunc, scheme, path string) (string, error) {
	if err != nil {
		return "", fmt.Errorf("armsim: listen: %w", err)
	}
	s.locked(func() { s.stops = append(s.stops, simtls.Serve(ln, h)) })
	return scheme + ln.Addr().String() + path, nil
}

// Close stops the listeners started by Start and StartIdentity and closes
// their connections at once (requests in flight fail: it is a simulator).
func (s *Server) Close() {
	var stops []func()
	s.locked(func() { stops, s.stops = s.stops, nil })
	for _, stop := range stops {
		stop()
	}
}

func (s *Server) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// IdentityHeader returns the value IDENTITY_HEADER must carry.
func (s *Server) IdentityHeader() string { return s.idHdr }

// SystemClientID returns the client ID of the system-assigned identity.
func (s *Server) SystemClientID() string { return s.systemC }

// ObjectID returns the object (principal) ID the simulator gives an identity.
func ObjectID(clientID string) string { return guid("object:" + strings.ToLower(clientID)) }

// ---- permissions, faults, hooks, counters -------------------------------

// Deny makes every request needing action (case-insensitive) answer 403.
func (s *Server) Deny(action string) { s.locked(func() { s.denied[strings.ToLower(action)] = true }) }

// Allow undoes Deny.
func (s *Server) Allow(action string) { s.locked(func() { delete(s.denied, strings.ToLower(action)) }) }

// Inject adds a fault; faults are tried in the order they were added.
func (s *Server) Inject(f Fault) { s.locked(func() { s.faults = append(s.faults, &f) }) }

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() { s.locked(func() { s.faults = nil }) }

// OnChange registers a hook called (outside the simulator's lock, in the
// request's goroutine) after each write made through the ARM API. Writes made
// with the mutators are not reported: their caller knows about them.
func (s *Server) OnChange(f func(Change)) { s.locked(func() { s.hooks = append(s.hooks, f) }) }

// SetEtagChecks switches the PUT's concurrency checks: ifMatch, the If-Match
// header (412 when it matches no current etag); bodyEtag, the etag in the
// body (409 when it differs). Both are on by default, as ARM resource
// providers do; turning both off simulates a provider that checks neither.
func (s *Server) SetEtagChecks(ifMatch, bodyEtag bool) {
	s.locked(func() { s.noIfMatch, s.noBodyEtag = !ifMatch, !bodyEtag })
}

// BeforePut sets (nil: removes) a hook called, outside the simulator's lock,
// when a connection PUT arrives and before it is checked and applied: after
// the caller's GET, before its write. A test injects a concurrent change
// there, e.g. a person's Reject through SetConnectionStatus.
func (s *Server) BeforePut(f func(vault resource.ID, connection string)) {
	s.locked(func() { s.beforePut = f })
}

// Count returns how many requests reached route (see the Route constants).
func (s *Server) Count(route string) (n int) { s.locked(func() { n = s.counts[route] }); return n }

// Counts returns a copy of the request counts per route.
func (s *Server) Counts() (out map[string]int) {
	s.locked(func() { out = maps.Clone(s.counts) })
	return out
}

// ResetCounts zeroes the request counts.
func (s *Server) ResetCounts() { s.locked(func() { clear(s.counts) }) }

// SetIdentityDown switches the managed identity endpoint's outage on or off:
// while down it answers 503.
func (s *Server) SetIdentityDown(down bool) { s.locked(func() { s.identityDown = down }) }

// ExpireTokens makes every token issued so far expired.
func (s *Server) ExpireTokens() {
	s.locked(func() {
		for _, t := range s.tokens {
			t.expires = s.now().Add(-time.Second)
		}
	})
}

// ---- mutators -----------------------------------------------------------

// ErrNotFound is returned by mutators for a missing vault, connection or key.
var ErrNotFound = errors.New("armsim: not found")

// AddVault creates the vault (public network access Disabled) or, if it
// exists, replaces its tags.
func (s *Server) AddVault(id resource.ID, tags map[string]string) {
	s.locked(func() {
		if v := s.vaults[id.Key()]; v != nil {
			v.tags = maps.Clone(tags)
		} else {
			s.vaults[id.Key()] = &vaultState{id: id, tags: maps.Clone(tags), keys: map[string]*keyState{}}
		}
	})
}

// DeleteVault removes the vault with its connections and keys.
func (s *Server) DeleteVault(id resource.ID) error {
	return s.withVault(id, func(*vaultState) error { delete(s.vaults, id.Key()); return nil })
}

// SetTag sets a tag on the vault; an empty value removes it.
func (s *Server) SetTag(id resource.ID, key, value string) error {
	return s.withVault(id, func(v *vaultState) error {
		for k := range v.tags {
			if resource.EqualFold(k, key) {
				delete(v.tags, k)
			}
		}
		if value != "" {
			v.tags[key] = value
		}
		return nil
	})
}

// SetProtection sets the vault's enablePurgeProtection and enableSoftDelete
// (both true for a new vault).
func (s *Server) SetProtection(id resource.ID, purgeProtection, softDelete bool) error {
	return s.withVault(id, func(v *vaultState) error {
		v.unprotected.purge, v.unprotected.softDelete = !purgeProtection, !softDelete
		return nil
	})
}

// AddConnection adds a private endpoint connection (provisioned) with status
// (Pending, Approved, …) from the private endpoint privateEndpointID — Atlas's
// or a foreign one.
func (s *Server) AddConnection(id resource.ID, name, status, privateEndpointID string) error {
	return s.withVault(id, func(v *vaultState) error {
		if v.conn(name) != nil {
			return fmt.Errorf("armsim: connection %s exists", name)
		}
		v.conns = append(v.conns, &connState{
			name: name, status: status, actions: "None", peID: privateEndpointID,
			prov: vault.ProvisioningSucceeded, etag: newEtag(),
		})
		return nil
	})
}

// SetConnectionStatus changes a connection's state as someone in the portal
// would (reject, disconnect, approve); the connection is provisioned at once.
func (s *Server) SetConnectionStatus(id resource.ID, name, status, description string) error {
	return s.withVault(id, func(v *vaultState) error {
		c := v.conn(name)
		if c == nil {
			return ErrNotFound
		}
		c.status, c.desc, c.prov, c.etag, c.readsLeft = status, description, vault.ProvisioningSucceeded, newEtag(), 0
		return nil
	})
}

// RemoveConnection deletes a connection.
func (s *Server) RemoveConnection(id resource.ID, name string) error {
	return s.withVault(id, func(v *vaultState) error {
		i := slices.IndexFunc(v.conns, func(c *connState) bool { return c.name == name })
		if i < 0 {
			return ErrNotFound
		}
		v.conns = slices.Delete(v.conns, i, i+1)
		return nil
	})
}

// Connection returns a connection as stored (without counting as a read).
func (s *Server) Connection(id resource.ID, name string) (c vault.Connection, ok bool) {
	_ = s.withVault(id, func(v *vaultState) error {
		if cs := v.conn(name); cs != nil {
			c, ok = cs.public(v.id), true
		}
		return nil
	})
	return c, ok
}

// Connections returns the vault's connections as stored.
func (s *Server) Connections(id resource.ID) (out []vault.Connection) {
	_ = s.withVault(id, func(v *vaultState) error {
		for _, c := range v.conns {
			out = append(out, c.public(v.id))
		}
		return nil
	})
	return out
}

// ServedStates returns the provisioningState values the API served for a
// connection, in order (PUT answers and reads), e.g. [Updating Updating
// Succeeded] for an approval that was polled until it settled.
func (s *Server) ServedStates(id resource.ID, name string) (out []string) {
	_ = s.withVault(id, func(v *vaultState) error {
		if c := v.conn(name); c != nil {
			out = slices.Clone(c.served)
		}
		return nil
	})
	return out
}

// AddKey adds a version of key keyName (creating the key) and makes it the
// latest. An empty version gets a random 32-hex one. It returns the version.
func (s *Server) AddKey(id resource.ID, keyName, version string, enabled bool, notBefore, expires *time.Time) (string, error) {
	if version == "" {
		version = randHex(16)
	}
	err := s.withVault(id, func(v *vaultState) error {
		k := v.keys[strings.ToLower(keyName)]
		if k == nil {
			k = &keyState{name: keyName}
			v.keys[strings.ToLower(keyName)] = k
		}
		if k.version(version) != nil {
			return fmt.Errorf("armsim: key %s version %s exists", keyName, version)
		}
		now := s.now().UTC().Truncate(time.Second)
		k.versions = append(k.versions, &keyVersion{
			version: version, enabled: enabled, nbf: copyTime(notBefore), exp: copyTime(expires), created: now, updated: now,
		})
		return nil
	})
	return version, err
}

// SetKeyEnabled enables or disables a key version (empty: the latest).
func (s *Server) SetKeyEnabled(id resource.ID, keyName, version string, enabled bool) error {
	return s.withKeyVersion(id, keyName, version, func(kv *keyVersion) { kv.enabled = enabled })
}

// SetKeyExpiry sets (nil: removes) a key version's expiry (empty version: the latest).
func (s *Server) SetKeyExpiry(id resource.ID, keyName, version string, expires *time.Time) error {
	return s.withKeyVersion(id, keyName, version, func(kv *keyVersion) { kv.exp = copyTime(expires) })
}

// DeleteKey deletes a key with all its versions.
func (s *Server) DeleteKey(id resource.ID, keyName string) error {
	return s.withVault(id, func(v *vaultState) error {
		if v.keys[strings.ToLower(keyName)] == nil {
			return ErrNotFound
		}
		delete(v.keys, strings.ToLower(keyName))
		return nil
	})
}

func (s *Server) withVault(id resource.ID, f func(*vaultState) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vaults[id.Key()]
	if v == nil {
		return fmt.Errorf("vault %s: %w", id, ErrNotFound)
	}
	return f(v)
}

func (s *Server) withKeyVersion(id resource.ID, keyName, version string, f func(*keyVersion)) error {
	return s.withVault(id, func(v *vaultState) error {
		k := v.keys[strings.ToLower(keyName)]
		if k == nil || len(k.versions) == 0 {
			return fmt.Errorf("key %s: %w", keyName, ErrNotFound)
		}
		kv := k.versions[len(k.versions)-1]
		if version != "" {
			kv = k.version(version)
		}
		if kv == nil {
			return fmt.Errorf("key %s version %s: %w", keyName, version, ErrNotFound)
		}
		f(kv)
		kv.updated = s.now().UTC().Truncate(time.Second)
		return nil
	})
}

func (v *vaultState) conn(name string) *connState {
	for _, c := range v.conns {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (k *keyState) version(version string) *keyVersion {
	for _, kv := range k.versions {
		if resource.EqualFold(kv.version, version) {
			return kv
		}
	}
	return nil
}

func (c *connState) public(id resource.ID) vault.Connection {
	return vault.Connection{
		Name: c.name, ID: id.String() + "/privateEndpointConnections/" + c.name, Status: c.status,
		Description: c.desc, ActionsRequired: c.actions, PrivateEndpointID: c.peID,
		ProvisioningState: c.prov, Etag: c.etag,
	}
}

func copyTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := t.UTC()
	return &c
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newEtag() string { return `"` + randHex(8) + `"` }

// guid derives a stable GUID-shaped string from seed.
func guid(seed string) string {
	h := sha256.Sum256([]byte(seed))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
