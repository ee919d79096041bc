package atlassim

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Wire shapes, from the OpenAPI schemas (names in comments).

// apiErrorJSON is ApiError; field order matches what Atlas sends.
type apiErrorJSON struct {
	Detail     string `json:"detail"`
	Error      int    `json:"error"`
	ErrorCode  string `json:"errorCode"`
	Parameters []any  `json:"parameters"`
	Reason     string `json:"reason"`
}

type linkJSON struct {
	Href string `json:"href"`
	Rel  string `json:"rel"`
}

// encryptionAtRestJSON is EncryptionAtRest.
type encryptionAtRestJSON struct {
	AwsKms                *kmsJSON           `json:"awsKms,omitempty"`
	AzureKeyVault         *azureKeyVaultJSON `json:"azureKeyVault,omitempty"`
	EnabledForSearchNodes bool               `json:"enabledForSearchNodes"`
	GoogleCloudKms        *kmsJSON           `json:"googleCloudKms,omitempty"`
}

type kmsJSON struct {
	Enabled bool  `json:"enabled"`
	Valid   *bool `json:"valid,omitempty"`
}

// azureKeyVaultJSON is AzureKeyVault (the write-only secret never appears).
type azureKeyVaultJSON struct {
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

// earPrivateEndpointJSON is EARPrivateEndpoint.
type earPrivateEndpointJSON struct {
	CloudProvider                 string `json:"cloudProvider"`
	ErrorMessage                  string `json:"errorMessage,omitempty"`
	ID                            string `json:"id"`
	PrivateEndpointConnectionName string `json:"privateEndpointConnectionName,omitempty"`
	RegionName                    string `json:"regionName"`
	Status                        string `json:"status"`
}

// clusterJSON is (a realistic subset of) ClusterDescription20240805.
type clusterJSON struct {
	BackupEnabled                bool                  `json:"backupEnabled"`
	ClusterType                  string                `json:"clusterType"`
	ConnectionStrings            map[string]string     `json:"connectionStrings"`
	CreateDate                   string                `json:"createDate"`
	EncryptionAtRestProvider     string                `json:"encryptionAtRestProvider"`
	GroupID                      string                `json:"groupId"`
	ID                           string                `json:"id"`
	Links                        []linkJSON            `json:"links"`
	MongoDBMajorVersion          string                `json:"mongoDBMajorVersion"`
	MongoDBVersion               string                `json:"mongoDBVersion"`
	Name                         string                `json:"name"`
	Paused                       bool                  `json:"paused"`
	PitEnabled                   bool                  `json:"pitEnabled"`
	ReplicationSpecs             []replicationSpecJSON `json:"replicationSpecs"`
	StateName                    string                `json:"stateName"`
	TerminationProtectionEnabled bool                  `json:"terminationProtectionEnabled"`
	VersionReleaseSystem         string                `json:"versionReleaseSystem"`
}

type replicationSpecJSON struct {
	ID            string             `json:"id"`
	RegionConfigs []regionConfigJSON `json:"regionConfigs"`
	ZoneID        string             `json:"zoneId"`
	ZoneName      string             `json:"zoneName"`
}

type regionConfigJSON struct {
	ElectableSpecs hardwareSpecJSON `json:"electableSpecs"`
	Priority       int              `json:"priority"`
	ProviderName   string           `json:"providerName"`
	RegionName     string           `json:"regionName"`
}

type hardwareSpecJSON struct {
	DiskSizeGB   float64 `json:"diskSizeGB"`
	InstanceSize string  `json:"instanceSize"`
	NodeCount    int     `json:"nodeCount"`
}

type paginatedJSON struct {
	Links      []linkJSON `json:"links"`
	Results    []any      `json:"results"`
	TotalCount *int       `json:"totalCount,omitempty"`
}

// route describes one API operation: its name and the Accept versions it
// serves (the newest first).
type route struct {
	name     string
	versions []string
	api      bool // needs authentication
}

var routeTable = map[string]route{
	"POST /api/oauth/token":                                                                             {name: RouteToken},
	"GET /api/atlas/v2/groups/{groupId}/encryptionAtRest":                                               {name: RouteEncryptionAtRest, versions: []string{"2023-01-01"}, api: true},
	"GET /api/atlas/v2/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints":              {name: RoutePrivateEndpoints, versions: []string{"2023-01-01"}, api: true},
	"GET /api/atlas/v2/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints/{endpointId}": {name: RoutePrivateEndpoint, versions: []string{"2023-01-01"}, api: true},
	"GET /api/atlas/v2/groups/{groupId}/clusters":                                                       {name: RouteClusters, versions: []string{"2024-08-05"}, api: true},
}

func (s *Sim) routes() *http.ServeMux {
	mux := http.NewServeMux()
	handlers := map[string]http.HandlerFunc{
		RouteToken:            s.handleToken,
		RouteEncryptionAtRest: s.handleEncryptionAtRest,
		RoutePrivateEndpoints: s.handlePrivateEndpoints,
		RoutePrivateEndpoint:  s.handlePrivateEndpoint,
		RouteClusters:         s.handleClusters,
	}
	for pattern, rt := range routeTable {
		mux.HandleFunc(pattern, handlers[rt.name])
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "RESOURCE_NOT_FOUND", fmt.Sprintf("Cannot find resource %s.", r.URL.Path))
	})
	return mux
}

// ServeHTTP counts the request, applies faults and the rate limiter,
// authenticates API calls, checks the Accept version, then serves it.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	rt, known := routeTable[pattern]
	name := rt.name
	if !known {
		name = RouteUnknown
	}
	sw := &statusWriter{ResponseWriter: w}
	s.count(name, authKind(r))
	defer func() { s.countStatus(sw.status) }()

	if s.applyFault(sw, r) {
		return
	}
	if known && rt.api {
		if s.rateLimited(sw) {
			return
		}
		principal, ok := s.authenticate(sw, r)
		if !ok {
			return
		}
		s.mu.Lock()
		blocked := s.blocked[principal]
		s.mu.Unlock()
		if blocked {
			host := r.RemoteAddr
			if h, _, err := splitHostPort(host); err == nil {
				host = h
			}
			writeError(sw, http.StatusForbidden, "IP_ADDRESS_NOT_ON_ACCESS_LIST",
				fmt.Sprintf("IP address %s is not allowed to access this resource.", host), host)
			return
		}
		version, ok := acceptedVersion(r.Header.Get("Accept"), rt.versions)
		if !ok {
			writeError(sw, http.StatusNotAcceptable, "INVALID_VERSION_DATE", "Invalid accept header or version date.")
			return
		}
		sw.Header().Set("Content-Type", "application/vnd.atlas."+version+"+json;charset=utf-8")
	}
	s.mux.ServeHTTP(sw, r) // again through the mux, which sets the path values
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Sim) count(route, auth string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.byRoute[route]++
	s.byAuth[auth]++
}

func (s *Sim) countStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byStatus[status]++
}

func authKind(r *http.Request) string {
	a := r.Header.Get("Authorization")
	scheme, _, _ := strings.Cut(a, " ")
	switch {
	case a == "":
		return AuthNone
	case strings.EqualFold(scheme, "Digest"):
		return AuthDigest
	case strings.EqualFold(scheme, "Bearer"):
		return AuthBearer
	case strings.EqualFold(scheme, "Basic"):
		return AuthBasic
	}
	return AuthOther
}

// acceptedVersion finds, among the media ranges of an Accept header, an
// application/vnd.atlas.YYYY-MM-DD+json whose date the route serves.
func acceptedVersion(accept string, versions []string) (string, bool) {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		date, ok := strings.CutPrefix(mt, "application/vnd.atlas.")
		if !ok {
			continue
		}
		if date, ok = strings.CutSuffix(date, "+json"); !ok {
			continue
		}
		for _, v := range versions {
			if v == date {
				return v, true
			}
		}
	}
	return "", false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError answers with an Atlas ApiError body.
func writeError(w http.ResponseWriter, status int, code, detail string, params ...any) {
	if params == nil {
		params = []any{}
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, status, apiErrorJSON{Detail: detail, Error: status, ErrorCode: code, Parameters: params, Reason: http.StatusText(status)})
}

var hex24 = regexp.MustCompile(`^[a-f0-9]{24}$`)

// lookupProject answers 400/404 and returns nil when groupId is invalid or
// unknown; else a snapshot taken under the lock.
func (s *Sim) lookupProject(w http.ResponseWriter, r *http.Request) *project {
	id := r.PathValue("groupId")
	if !hex24.MatchString(id) {
		writeError(w, http.StatusBadRequest, "INVALID_GROUP_ID", fmt.Sprintf("An invalid group ID %s was specified.", id), id)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.projects[id]
	if p == nil {
		writeError(w, http.StatusNotFound, "GROUP_NOT_FOUND", fmt.Sprintf("No group with ID %s exists.", id), id)
		return nil
	}
	cp := &project{akv: p.akv, endpoints: append([]Endpoint(nil), p.endpoints...), clusters: append([]Cluster(nil), p.clusters...)}
	if cp.akv.Valid != nil {
		v := *cp.akv.Valid
		cp.akv.Valid = &v
	}
	return cp
}

func (s *Sim) handleEncryptionAtRest(w http.ResponseWriter, r *http.Request) {
	p := s.lookupProject(w, r)
	if p == nil {
		return
	}
	a := p.akv
	writeJSON(w, http.StatusOK, encryptionAtRestJSON{
		AwsKms: &kmsJSON{Enabled: false},
		AzureKeyVault: &azureKeyVaultJSON{
			AzureEnvironment:         a.AzureEnvironment,
			ClientID:                 a.ClientID,
			Enabled:                  a.Enabled,
			KeyIdentifier:            a.KeyIdentifier,
			KeyVaultName:             a.KeyVaultName,
			RequirePrivateNetworking: a.RequirePrivateNetworking,
			ResourceGroupName:        a.ResourceGroupName,
			SubscriptionID:           a.SubscriptionID,
			TenantID:                 a.TenantID,
			Valid:                    a.Valid,
		},
		GoogleCloudKms: &kmsJSON{Enabled: false},
	})
}

// checkProvider answers 400 for an unknown cloudProvider path segment.
func checkProvider(w http.ResponseWriter, r *http.Request) (string, bool) {
	cp := r.PathValue("cloudProvider")
	switch cp {
	case "AZURE", "AWS", "GCP":
		return cp, true
	}
	writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("No provider %s exists.", cp), cp)
	return "", false
}

func endpointJSON(e Endpoint) earPrivateEndpointJSON {
	return earPrivateEndpointJSON{
		CloudProvider: "AZURE", ErrorMessage: e.ErrorMessage, ID: e.ID,
		PrivateEndpointConnectionName: e.PrivateEndpointConnectionName, RegionName: e.RegionName, Status: e.Status,
	}
}

func (s *Sim) handlePrivateEndpoints(w http.ResponseWriter, r *http.Request) {
	cp, ok := checkProvider(w, r)
	if !ok {
		return
	}
	p := s.lookupProject(w, r)
	if p == nil {
		return
	}
	var items []any
	if cp == "AZURE" {
		for _, e := range p.endpoints {
			items = append(items, endpointJSON(e))
		}
	}
	s.writePage(w, r, items)
}

func (s *Sim) handlePrivateEndpoint(w http.ResponseWriter, r *http.Request) {
	cp, ok := checkProvider(w, r)
	if !ok {
		return
	}
	p := s.lookupProject(w, r)
	if p == nil {
		return
	}
	id := r.PathValue("endpointId")
	if cp == "AZURE" {
		for _, e := range p.endpoints {
			if e.ID == id {
				writeJSON(w, http.StatusOK, endpointJSON(e))
				return
			}
		}
	}
	writeError(w, http.StatusNotFound, "RESOURCE_NOT_FOUND", fmt.Sprintf("Cannot find resource %s.", id), id)
}

func (s *Sim) handleClusters(w http.ResponseWriter, r *http.Request) {
	p := s.lookupProject(w, r)
	if p == nil {
		return
	}
	groupID := r.PathValue("groupId")
	created := time.Date(2025, 1, 15, 9, 0, 0, 0, time.UTC).Format(time.RFC3339)
	items := make([]any, 0, len(p.clusters))
	for _, c := range p.clusters {
		cj := clusterJSON{
			ClusterType:              "REPLICASET",
			ConnectionStrings:        map[string]string{"standardSrv": "mongodb+srv://" + strings.ToLower(c.Name) + ".sim.mongodb.net"},
			CreateDate:               created,
			EncryptionAtRestProvider: c.EncryptionAtRestProvider,
			GroupID:                  groupID,
			ID:                       c.ID,
			Links:                    []linkJSON{{Href: baseURL(r) + "/api/atlas/v2/groups/" + groupID + "/clusters/" + url.PathEscape(c.Name), Rel: "self"}},
			MongoDBMajorVersion:      defaultMongoDBMajorVer,
			MongoDBVersion:           defaultMongoDBVersion,
			Name:                     c.Name,
			Paused:                   c.Paused,
			StateName:                c.StateName,
			VersionReleaseSystem:     "LTS",
		}
		if c.Shards > 1 {
			cj.ClusterType = "SHARDED"
		}
		for shard := 0; shard < c.Shards; shard++ {
			spec := replicationSpecJSON{ID: derivedID(c.ID, shard), ZoneID: derivedID(c.ID, 100), ZoneName: "Zone 1", RegionConfigs: []regionConfigJSON{}}
			for i, region := range c.Regions {
				spec.RegionConfigs = append(spec.RegionConfigs, regionConfigJSON{
					ElectableSpecs: hardwareSpecJSON{DiskSizeGB: 32, InstanceSize: defaultClusterSize, NodeCount: 3},
					Priority:       max(7-i, 0),
					ProviderName:   c.provider(i),
					RegionName:     region,
				})
			}
			cj.ReplicationSpecs = append(cj.ReplicationSpecs, spec)
		}
		items = append(items, cj)
	}
	s.writePage(w, r, items)
}

// derivedID makes a stable 24-hex id from another one.
func derivedID(id string, n int) string {
	if len(id) != 24 {
		return id
	}
	return id[:18] + fmt.Sprintf("%06x", n)
}

func baseURL(r *http.Request) string {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// writePage answers one page of items, honouring itemsPerPage (1…500,
// default 100, capped by PageSizeCap), pageNum (≥ 1, default 1) and
// includeCount (default true), with self/previous/next links as Atlas does.
func (s *Sim) writePage(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	perPage, ok := intParam(w, q, "itemsPerPage", defaultPageSize, 1, maxItemsPerPage)
	if !ok {
		return
	}
	pageNum, ok := intParam(w, q, "pageNum", 1, 1, 1<<30)
	if !ok {
		return
	}
	includeCount := true
	if v := q.Get("includeCount"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "INVALID_QUERY_PARAMETER", fmt.Sprintf("Invalid query parameter includeCount: %s.", v), "includeCount")
			return
		}
		includeCount = b
	}
	served := perPage
	if s.pageSizeCap > 0 && served > s.pageSizeCap {
		served = s.pageSizeCap
	}
	start := min((pageNum-1)*served, len(items))
	end := min(start+served, len(items))

	link := func(n int) string {
		u := url.URL{Path: r.URL.Path}
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("pageNum", strconv.Itoa(n))
		v.Set("itemsPerPage", strconv.Itoa(perPage))
		u.RawQuery = v.Encode()
		return baseURL(r) + u.String()
	}
	out := paginatedJSON{Results: items[start:end]}
	if out.Results == nil {
		out.Results = []any{}
	}
	if pageNum > 1 {
		out.Links = append(out.Links, linkJSON{Href: link(pageNum - 1), Rel: "previous"})
	}
	out.Links = append(out.Links, linkJSON{Href: link(pageNum), Rel: "self"})
	if end < len(items) {
		out.Links = append(out.Links, linkJSON{Href: link(pageNum + 1), Rel: "next"})
	}
	if includeCount {
		n := len(items)
		out.TotalCount = &n
	}
	writeJSON(w, http.StatusOK, out)
}

func intParam(w http.ResponseWriter, q url.Values, name string, def, lo, hi int) (int, bool) {
	v := q.Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		writeError(w, http.StatusBadRequest, "INVALID_QUERY_PARAMETER", fmt.Sprintf("Invalid query parameter %s: %s.", name, v), name)
		return 0, false
	}
	return n, true
}
