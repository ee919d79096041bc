package atlassim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// link is an RFC 5988 link of a paginated answer (PaginatedApiLink).
func link(href, rel string) map[string]string { return map[string]string{"href": href, "rel": rel} }

// route is one API operation: its name and the Accept versions it serves.
type route struct {
	name     string
	versions []string
	api      bool // needs authentication
}

var routeTable = map[string]route{
	"POST /api/oauth/token":                                                                {name: RouteToken},
	"GET /api/atlas/v2/groups/{groupId}/encryptionAtRest":                                  {RouteEncryptionAtRest, []string{"2023-01-01"}, true},
	"GET /api/atlas/v2/groups/{groupId}/encryptionAtRest/{cloudProvider}/privateEndpoints": {RoutePrivateEndpoints, []string{"2023-01-01"}, true},
	"GET /api/atlas/v2/groups/{groupId}/clusters":                                          {RouteClusters, []string{"2024-08-05"}, true},
	"GET /api/atlas/v2/groups/{groupId}/alertConfigs":                                      {RouteAlertConfigs, []string{"2023-01-01"}, true},
}

func (s *Sim) routes() *http.ServeMux {
	mux := http.NewServeMux()
	handlers := map[string]http.HandlerFunc{RouteToken: s.handleToken, RouteEncryptionAtRest: s.handleEncryptionAtRest,
		RoutePrivateEndpoints: s.handlePrivateEndpoints, RouteClusters: s.handleClusters, RouteAlertConfigs: s.handleAlertConfigs}
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
	if !known {
		rt.name = RouteUnknown
	}
	sw := &statusWriter{ResponseWriter: w}
	s.locked(func() {
		s.stats.Requests++
		s.stats.ByRoute[rt.name]++
		s.stats.ByAuth[authKind(r)]++
	})
	defer func() { s.locked(func() { s.stats.ByStatus[sw.status]++ }) }()

	if s.applyFault(sw, r) {
		return
	}
	if rt.api {
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
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
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

// statusWriter remembers the status answered (0: none, a dropped connection).
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

func authKind(r *http.Request) string {
	scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return cmp.Or(strings.ToLower(scheme), AuthNone)
}

// acceptedVersion finds, among the media ranges of an Accept header, an
// application/vnd.atlas.YYYY-MM-DD+json whose date the route serves.
func acceptedVersion(accept string, versions []string) (string, bool) {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		date, ok := strings.CutPrefix(mt, "application/vnd.atlas.")
		if date, ok2 := strings.CutSuffix(date, "+json"); err == nil && ok && ok2 && slices.Contains(versions, date) {
			return date, true
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

// writeError answers with an Atlas ApiError body (encoding/json sorts map
// keys, which is the order Atlas sends them in).
func writeError(w http.ResponseWriter, status int, code, detail string, params ...any) {
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, status, map[string]any{"detail": detail, "error": status, "errorCode": code, "parameters": append([]any{}, params...), "reason": http.StatusText(status)})
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
	cp := &project{akv: p.akv, endpoints: slices.Clone(p.endpoints), clusters: slices.Clone(p.clusters)}
	cp.akv.Valid = copyBool(cp.akv.Valid)
	return cp
}

// handleEncryptionAtRest serves EncryptionAtRest.
func (s *Sim) handleEncryptionAtRest(w http.ResponseWriter, r *http.Request) {
	if p := s.lookupProject(w, r); p != nil {
		off := map[string]bool{"enabled": false}
		writeJSON(w, http.StatusOK, map[string]any{"awsKms": off, "azureKeyVault": p.akv, "enabledForSearchNodes": false, "googleCloudKms": off})
	}
}

// handlePrivateEndpoints serves the EARPrivateEndpoint list of a provider.
func (s *Sim) handlePrivateEndpoints(w http.ResponseWriter, r *http.Request) {
	cp := r.PathValue("cloudProvider")
	if !slices.Contains([]string{"AZURE", "AWS", "GCP"}, cp) {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("No provider %s exists.", cp), cp)
		return
	}
	p := s.lookupProject(w, r)
	if p == nil {
		return
	}
	type endpointJSON struct {
		CloudProvider string `json:"cloudProvider"`
		Endpoint
	}
	var items []any
	for _, e := range p.endpoints {
		if cp == "AZURE" {
			items = append(items, endpointJSON{"AZURE", e})
		}
	}
	s.writePage(w, r, items)
}

// handleClusters serves (a realistic subset of) ClusterDescription20240805.
func (s *Sim) handleClusters(w http.ResponseWriter, r *http.Request) {
	p := s.lookupProject(w, r)
	if p == nil {
		return
	}
	groupID := r.PathValue("groupId")
	items := make([]any, 0, len(p.clusters))
	for _, c := range p.clusters {
		specs := []map[string]any{} // one per shard, each listing every region
		for shard := range c.Shards {
			configs := []map[string]any{}
			for i, region := range c.Regions {
				configs = append(configs, map[string]any{"priority": max(7-i, 0), "providerName": c.provider(i), "regionName": region,
					"electableSpecs": map[string]any{"diskSizeGB": 32, "instanceSize": "M10", "nodeCount": 3}})
			}
			specs = append(specs, map[string]any{"id": derivedID(c.ID, shard), "regionConfigs": configs, "zoneId": derivedID(c.ID, 100), "zoneName": "Zone 1"})
		}
		clusterType := "REPLICASET"
		if c.Shards > 1 {
			clusterType = "SHARDED"
		}
		items = append(items, map[string]any{
			"backupEnabled": false, "clusterType": clusterType, "createDate": "2025-01-15T09:00:00Z",
			"connectionStrings":        map[string]string{"standardSrv": "mongodb+srv://" + strings.ToLower(c.Name) + ".sim.mongodb.net"},
			"encryptionAtRestProvider": c.EncryptionAtRestProvider, "groupId": groupID, "id": c.ID, "name": c.Name,
			"links":               []any{link(baseURL(r)+"/api/atlas/v2/groups/"+groupID+"/clusters/"+url.PathEscape(c.Name), "self")},
			"mongoDBMajorVersion": "8.0", "mongoDBVersion": "8.0.12", "paused": c.Paused, "replicationSpecs": specs, "stateName": c.StateName,
		})
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
	if r.TLS == nil {
		return "http://" + r.Host
	}
	return "https://" + r.Host
}

// writePage answers one page of items, honouring itemsPerPage (1…500,
// default 100, capped by PageSizeCap), pageNum (≥ 1, default 1) and
// includeCount (default true), with previous/self/next links as Atlas does.
func (s *Sim) writePage(w http.ResponseWriter, r *http.Request, items []any) {
	q := r.URL.Query()
	bad := func(name string) {
		writeError(w, http.StatusBadRequest, "INVALID_QUERY_PARAMETER", fmt.Sprintf("Invalid query parameter %s: %s.", name, q.Get(name)), name)
	}
	param := func(name string, def, lo, hi int) int {
		if q.Get(name) == "" {
			return def
		}
		if n, err := strconv.Atoi(q.Get(name)); err == nil && n >= lo && n <= hi {
			return n
		}
		bad(name)
		return -1
	}
	perPage := param("itemsPerPage", 100, 1, 500)
	if perPage < 0 {
		return
	}
	pageNum := param("pageNum", 1, 1, 1<<30)
	if pageNum < 0 {
		return
	}
	includeCount, err := strconv.ParseBool(cmp.Or(q.Get("includeCount"), "true"))
	if err != nil {
		bad("includeCount")
		return
	}
	served := perPage
	if s.pageSizeCap > 0 {
		served = min(served, s.pageSizeCap)
	}
	start := min((pageNum-1)*served, len(items))
	end := min(start+served, len(items))
	var links []any
	add := func(n int, rel string) {
		v := maps.Clone(q)
		v.Set("pageNum", strconv.Itoa(n))
		v.Set("itemsPerPage", strconv.Itoa(perPage))
		links = append(links, link(baseURL(r)+(&url.URL{Path: r.URL.Path, RawQuery: v.Encode()}).String(), rel))
	}
	if pageNum > 1 {
		add(pageNum-1, "previous")
	}
	add(pageNum, "self")
	if end < len(items) {
		add(pageNum+1, "next")
	}
	out := map[string]any{"links": links, "results": append([]any{}, items[start:end]...)}
	if includeCount {
		out["totalCount"] = len(items)
	}
	writeJSON(w, http.StatusOK, out)
}
