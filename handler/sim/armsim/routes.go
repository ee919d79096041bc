package armsim

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// route is a parsed ARM request.
type route struct {
	name            string
	vault           resource.ID
	conn, key, keyV string
	actions         []string // role actions the request needs, in check order
	scope           string   // the ARM resource path
}

func parseRoute(r *http.Request) (route, bool) {
	if rt, ok := parseProviderRoute(r); ok {
		return rt, true
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) < 8 || !resource.EqualFold(segs[0], "subscriptions") || !resource.EqualFold(segs[2], "resourceGroups") ||
		!resource.EqualFold(segs[4], "providers") || !resource.EqualFold(segs[5], "Microsoft.KeyVault") ||
		!resource.EqualFold(segs[6], "vaults") || segs[1] == "" || segs[3] == "" || segs[7] == "" {
		return route{}, false
	}
	rt := route{vault: resource.ID{SubscriptionID: segs[1], ResourceGroup: segs[3], Name: segs[7]}, scope: "/" + strings.Join(segs, "/")}
	rest := segs[8:]
	get := r.Method == http.MethodGet
	switch {
	case len(rest) == 0 && get:
		rt.name, rt.actions = RouteVaultGet, []string{vault.ActionVaultRead}
	case len(rest) == 1 && resource.EqualFold(rest[0], "privateEndpointConnections") && get:
		rt.name, rt.actions = RouteConnectionsList, []string{vault.ActionConnectionsRead}
	case len(rest) == 2 && resource.EqualFold(rest[0], "privateEndpointConnections") && rest[1] != "":
		rt.conn = rest[1]
		switch r.Method {
		case http.MethodGet:
			rt.name, rt.actions = RouteConnectionGet, []string{vault.ActionConnectionsRead}
		case http.MethodPut:
			// The write is authorized first; approving or rejecting also
			// needs the approval action, checked as a linked authorization.
			rt.name, rt.actions = RouteConnectionPut, []string{vault.ActionConnectionsWrite, vault.ActionConnectionsApproval}
		default:
			return route{}, false
		}
	case len(rest) == 2 && resource.EqualFold(rest[0], "keys") && rest[1] != "" && get:
		rt.name, rt.key, rt.actions = RouteKeyGet, rest[1], []string{vault.ActionKeysRead}
	case len(rest) == 4 && resource.EqualFold(rest[0], "keys") && resource.EqualFold(rest[2], "versions") && rest[1] != "" && rest[3] != "" && get:
		rt.name, rt.key, rt.keyV, rt.actions = RouteKeyVersionGet, rest[1], rest[3], []string{vault.ActionKeyVersionsRead}
	default:
		return route{}, false
	}
	return rt, true
}

// Handler returns the ARM handler (without TLS; Start serves it over TLS).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveARM) }

func (s *Server) serveARM(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-ms-request-id", guid(randHex(8)))
	w.Header().Set("x-ms-correlation-request-id", guid(randHex(8)))
	rt, ok := parseRoute(r)
	if !ok {
		s.count(RouteUnknown)
		writeARMError(w, http.StatusBadRequest, "UnsupportedRoute", fmt.Sprintf("armsim does not serve %s %s", r.Method, r.URL.Path))
		return
	}
	s.count(rt.name)
	if s.applyFault(w, r, rt.name) {
		return
	}
	tok, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if rt.name != RouteProviderGet && !checkAPIVersion(w, r, s.cfg.Location) {
		return
	}
	if !s.authorize(w, rt, tok) {
		return
	}
	switch rt.name {
	case RouteVaultGet:
		s.getVault(w, r, rt)
	case RouteConnectionsList:
		s.listConnections(w, r, rt)
	case RouteConnectionGet:
		s.getConnection(w, rt)
	case RouteConnectionPut:
		s.putConnection(w, r, rt, tok)
	case RouteKeyGet, RouteKeyVersionGet:
		s.getKey(w, rt)
	case RouteProviderGet:
		s.getProvider(w, r, rt)
	}
}

func (s *Server) count(route string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[route]++
}

// applyFault applies the first matching fault; it reports whether the request
// has been answered (or dropped).
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, routeName string) bool {
	s.mu.Lock()
	var f Fault
	found := false
	for i, cand := range s.faults {
		if cand.Match == routeName || (cand.Match == "" && routeName != RouteIdentity) {
			f, found = *cand, true
			if cand.Times > 0 {
				cand.Times--
				if cand.Times == 0 {
					s.faults = slices.Delete(s.faults, i, i+1)
				}
			}
			break
		}
	}
	s.mu.Unlock()
	if !found {
		return false
	}
	if f.Latency > 0 {
		if backoff.Sleep(r.Context(), f.Latency) != nil {
			return true
		}
	}
	if f.Drop {
		panic(http.ErrAbortHandler) // net/http closes the connection without answering
	}
	if f.Status == 0 {
		return false
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
		if f.RetryAfter%time.Second != 0 {
			w.Header().Set("retry-after-ms", strconv.FormatInt(f.RetryAfter.Milliseconds(), 10))
		}
	}
	code := f.Code
	if code == "" {
		code = codeForStatus(f.Status)
	}
	if routeName == RouteIdentity {
		writeIdentityError(w, f.Status, "armsim injected fault: "+code)
		return true
	}
	writeARMError(w, f.Status, code, "armsim injected fault ("+http.StatusText(f.Status)+")")
	return true
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusInternalServerError:
		return "InternalServerError"
	case http.StatusBadGateway:
		return "BadGateway"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusGatewayTimeout:
		return "GatewayTimeout"
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "")
}

const authURI = `authorization_uri="https://login.microsoftonline.com/common"`

// authenticate checks the bearer token as ARM does: only tokens this
// simulator's identity endpoint issued, not expired.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (token, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		w.Header().Set("WWW-Authenticate", `Bearer `+authURI+`, error="invalid_token", error_description="The authentication failed because of missing 'Authorization' header."`)
		writeARMError(w, http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
		return token{}, false
	}
	raw, ok := strings.CutPrefix(h, "Bearer ")
	s.mu.Lock()
	t, known := s.tokens[raw]
	var tok token
	if known {
		tok = *t
	}
	now := s.now()
	s.mu.Unlock()
	if !ok || !known {
		w.Header().Set("WWW-Authenticate", `Bearer `+authURI+`, error="invalid_token", error_description="The access token is invalid."`)
		writeARMError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid.")
		return token{}, false
	}
	if !now.Before(tok.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer `+authURI+`, error="invalid_token", error_description="The access token has expired."`)
		writeARMError(w, http.StatusUnauthorized, "ExpiredAuthenticationToken", fmt.Sprintf(
			"The access token expiry UTC time '%s' is earlier than current UTC time '%s'.",
			tok.expires.UTC().Format("1/2/2006 3:04:05 PM"), now.UTC().Format("1/2/2006 3:04:05 PM")))
		return token{}, false
	}
	return tok, true
}

func checkAPIVersion(w http.ResponseWriter, r *http.Request, location string) bool {
	v := r.URL.Query().Get("api-version")
	if v == "" {
		writeARMError(w, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
		return false
	}
	if !slices.Contains(APIVersions, v) {
		writeARMError(w, http.StatusBadRequest, "NoRegisteredProviderFound", fmt.Sprintf(
			"No registered resource provider found for location '%s' and API version '%s' for type 'vaults'. The supported api-versions are '%s'.",
			location, v, strings.Join(APIVersions, ", ")))
		return false
	}
	return true
}

// authorize answers 403 as ARM does when the caller lacks an action the route
// needs: AuthorizationFailed for the primary action, LinkedAuthorizationFailed
// for the approval action of a PUT.
func (s *Server) authorize(w http.ResponseWriter, rt route, tok token) bool {
	s.mu.Lock()
	var missing string
	idx := -1
	for i, a := range rt.actions {
		if s.denied[strings.ToLower(a)] {
			missing, idx = a, i
			break
		}
	}
	s.mu.Unlock()
	if idx < 0 {
		return true
	}
	if idx == 0 {
		writeARMError(w, http.StatusForbidden, "AuthorizationFailed", fmt.Sprintf(
			"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
			tok.clientID, tok.objectID, missing, rt.scope))
		return false
	}
	writeARMError(w, http.StatusForbidden, "LinkedAuthorizationFailed", fmt.Sprintf(
		"The client '%s' with object id '%s' has permission to perform action '%s' on scope '%s'; however, it does not have permission to perform action(s) '%s' on the linked scope(s) '%s' (respectively) or the linked scope(s) are invalid.",
		tok.clientID, tok.objectID, rt.actions[0], rt.scope, missing, rt.vault.String()))
	return false
}

// ---- handlers ------------------------------------------------------------

func (s *Server) lookupVault(w http.ResponseWriter, rt route, nested bool) *vaultState {
	v := s.vaults[rt.vault.Key()]
	if v != nil {
		return v
	}
	if nested {
		writeARMError(w, http.StatusNotFound, "VaultNotFound", fmt.Sprintf("Vault '%s' not found.", rt.vault.Name))
	} else {
		writeARMError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf(
			"The Resource 'Microsoft.KeyVault/vaults/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
			rt.vault.Name, rt.vault.ResourceGroup))
	}
	return nil
}

func (s *Server) getVault(w http.ResponseWriter, r *http.Request, rt route) {
	s.mu.Lock()
	v := s.lookupVault(w, rt, false)
	if v == nil {
		s.mu.Unlock()
		return
	}
	pecs := make([]map[string]any, 0, len(v.conns))
	for _, c := range v.conns {
		s.settle(c)
		pecs = append(pecs, map[string]any{"id": c.public(v.id).ID, "etag": c.etag, "properties": connProperties(c)})
	}
	tags := copyTags(v.tags)
	body := map[string]any{
		"id":       v.id.String(),
		"name":     v.id.Name,
		"type":     "Microsoft.KeyVault/vaults",
		"location": s.cfg.Location,
		"tags":     tags,
		"properties": map[string]any{
			"tenantId":                   guid("tenant"),
			"sku":                        map[string]any{"family": "A", "name": "standard"},
			"accessPolicies":             []any{},
			"enableRbacAuthorization":    true,
			"enableSoftDelete":           !v.unprotected.softDelete,
			"softDeleteRetentionInDays":  90,
			"enablePurgeProtection":      !v.unprotected.purge,
			"vaultUri":                   "https://" + strings.ToLower(v.id.Name) + "." + s.cfg.VaultDNSSuffix + "/",
			"provisioningState":          "Succeeded",
			"publicNetworkAccess":        v.pna,
			"networkAcls":                map[string]any{"bypass": "AzureServices", "defaultAction": "Deny", "ipRules": []any{}, "virtualNetworkRules": []any{}},
			"privateEndpointConnections": pecs,
		},
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// settle advances a connection that is Updating after a PUT; the caller holds
// s.mu and is about to serve the connection.
func (s *Server) settle(c *connState) {
	if c.prov != "Updating" {
		return
	}
	if c.readsLeft > 0 {
		c.readsLeft--
		return
	}
	if !s.now().Before(c.settleAt) {
		c.prov = vault.ProvisioningSucceeded
	}
}

func connProperties(c *connState) map[string]any {
	p := map[string]any{
		"privateLinkServiceConnectionState": map[string]any{
			"status": c.status, "description": c.desc, "actionsRequired": c.actions,
		},
		"provisioningState": c.prov,
	}
	if c.peID != "" {
		p["privateEndpoint"] = map[string]any{"id": c.peID}
	}
	return p
}

// maxServed bounds the provisioning-state history kept per connection.
const maxServed = 64

func (s *Server) connJSON(v *vaultState, c *connState) map[string]any {
	c.served = append(c.served, c.prov)
	if len(c.served) > maxServed {
		c.served = slices.Delete(c.served, 0, len(c.served)-maxServed)
	}
	return map[string]any{
		"id":         c.public(v.id).ID,
		"name":       c.name,
		"type":       "Microsoft.KeyVault/vaults/privateEndpointConnections",
		"location":   s.cfg.Location,
		"etag":       c.etag,
		"properties": connProperties(c),
	}
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request, rt route) {
	skip := 0
	if t := r.URL.Query().Get("$skiptoken"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			writeARMError(w, http.StatusBadRequest, "InvalidSkipToken", "The $skiptoken is invalid.")
			return
		}
		skip = n
	}
	s.mu.Lock()
	v := s.lookupVault(w, rt, true)
	if v == nil {
		s.mu.Unlock()
		return
	}
	page := []map[string]any{}
	end := min(skip+s.cfg.PageSize, len(v.conns))
	for i := skip; i < end; i++ {
		s.settle(v.conns[i])
		page = append(page, s.connJSON(v, v.conns[i]))
	}
	more := end < len(v.conns)
	s.mu.Unlock()
	body := map[string]any{"value": page}
	if more {
		body["nextLink"] = fmt.Sprintf("https://%s%s?api-version=%s&$skiptoken=%d", r.Host, r.URL.Path, r.URL.Query().Get("api-version"), end)
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) getConnection(w http.ResponseWriter, rt route) {
	s.mu.Lock()
	v := s.lookupVault(w, rt, true)
	if v == nil {
		s.mu.Unlock()
		return
	}
	c := v.conn(rt.conn)
	if c == nil {
		// Key Vault answers a missing connection with 204 and no body
		// (PrivateEndpointConnections_Get), not 404.
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.settle(c)
	body := s.connJSON(v, c)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// putConnection changes the connection state. Etags (unless SetEtagChecks
// turned them off): an If-Match header that matches no current etag answers
// 412 PreconditionFailed; an etag in the body that does not match answers 409
// Conflict. A Rejected or Disconnected connection cannot be approved again
// (400), as with Azure Private Link. The BeforePut hook runs first.
func (s *Server) putConnection(w http.ResponseWriter, r *http.Request, rt route, tok token) {
	var in struct {
		Etag       string `json:"etag"`
		Properties *struct {
			State *struct {
				Status          string `json:"status"`
				Description     string `json:"description"`
				ActionsRequired string `json:"actionsRequired"`
			} `json:"privateLinkServiceConnectionState"`
		} `json:"properties"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil {
		writeARMError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized: "+err.Error())
		return
	}
	if in.Properties == nil || in.Properties.State == nil || in.Properties.State.Status == "" {
		writeARMError(w, http.StatusBadRequest, "InvalidRequestContent", "properties.privateLinkServiceConnectionState.status is required.")
		return
	}
	st := in.Properties.State
	if !slices.Contains([]string{vault.StatusPending, vault.StatusApproved, vault.StatusRejected, vault.StatusDisconnected}, st.Status) {
		writeARMError(w, http.StatusBadRequest, "InvalidRequestContent", fmt.Sprintf("Invalid private endpoint connection status '%s'.", st.Status))
		return
	}
	s.mu.Lock()
	hook := s.beforePut
	s.mu.Unlock()
	if hook != nil {
		hook(rt.vault, rt.conn)
	}
	s.mu.Lock()
	v := s.lookupVault(w, rt, true)
	if v == nil {
		s.mu.Unlock()
		return
	}
	c := v.conn(rt.conn)
	etag := ""
	if c != nil {
		etag = c.etag
	}
	if im := r.Header.Values("If-Match"); len(im) > 0 && !s.noIfMatch && !ifMatch(im, etag) {
		s.mu.Unlock()
		writeARMError(w, http.StatusPreconditionFailed, "PreconditionFailed", "The condition specified using HTTP conditional header(s) is not met.")
		return
	}
	if c == nil {
		s.mu.Unlock()
		writeARMError(w, http.StatusNotFound, "PrivateEndpointConnectionNotFound", fmt.Sprintf("Private endpoint connection '%s' not found.", rt.conn))
		return
	}
	if in.Etag != "" && !s.noBodyEtag && in.Etag != c.etag {
		s.mu.Unlock()
		writeARMError(w, http.StatusConflict, "Conflict", fmt.Sprintf("The etag '%s' does not match the current etag of private endpoint connection '%s'.", in.Etag, c.name))
		return
	}
	if st.Status == vault.StatusApproved && (c.status == vault.StatusRejected || c.status == vault.StatusDisconnected) {
		s.mu.Unlock()
		writeARMError(w, http.StatusBadRequest, "InvalidPrivateEndpointConnectionStateTransition", fmt.Sprintf(
			"Private endpoint connection '%s' is %s and cannot be approved.", c.name, c.status))
		return
	}
	before := c.public(v.id)
	c.status, c.desc, c.etag = st.Status, st.Description, newEtag()
	if st.ActionsRequired != "" {
		c.actions = st.ActionsRequired
	}
	if s.cfg.SettleReads < 0 {
		c.prov = vault.ProvisioningSucceeded
	} else {
		c.prov, c.readsLeft, c.settleAt = "Updating", s.cfg.SettleReads, s.now().Add(s.cfg.SettleDelay)
	}
	body := s.connJSON(v, c)
	ch := Change{
		Time: s.now(), ClientID: tok.clientID, ObjectID: tok.objectID, ResourceURI: before.ID,
		Operation: operationConnectionPut, Vault: v.id, Before: before, After: c.public(v.id),
	}
	hooks := slices.Clone(s.hooks)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
	for _, h := range hooks {
		h(ch)
	}
}

// ifMatch evaluates If-Match as RFC 9110 13.1.1 does: true when a listed
// entity tag matches etag by strong comparison (weak tags never match), or
// the list is "*" and the resource exists (etag not empty).
func ifMatch(values []string, etag string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if (t == "*" && etag != "") || (t == etag && etag != "" && !strings.HasPrefix(t, "W/")) {
				return true
			}
		}
	}
	return false
}

func (s *Server) getKey(w http.ResponseWriter, rt route) {
	s.mu.Lock()
	v := s.lookupVault(w, rt, true)
	if v == nil {
		s.mu.Unlock()
		return
	}
	k := v.keys[strings.ToLower(rt.key)]
	var kv *keyVersion
	if k != nil && len(k.versions) > 0 {
		kv = k.versions[len(k.versions)-1]
		if rt.keyV != "" {
			kv = k.version(rt.keyV)
		}
	}
	if kv == nil {
		s.mu.Unlock()
		what := fmt.Sprintf("Key '%s'", rt.key)
		if rt.keyV != "" && k != nil {
			what = fmt.Sprintf("Key '%s' version '%s'", rt.key, rt.keyV)
		}
		writeARMError(w, http.StatusNotFound, "KeyNotFound", what+" was not found in vault '"+v.id.Name+"'.")
		return
	}
	attrs := map[string]any{
		"enabled":       kv.enabled,
		"created":       kv.created.Unix(),
		"updated":       kv.updated.Unix(),
		"recoveryLevel": "Recoverable",
		"exportable":    false,
	}
	if kv.nbf != nil {
		attrs["nbf"] = kv.nbf.Unix()
	}
	if kv.exp != nil {
		attrs["exp"] = kv.exp.Unix()
	}
	keyURI := "https://" + strings.ToLower(v.id.Name) + "." + s.cfg.VaultDNSSuffix + "/keys/" + k.name
	id, name, typ := v.id.String()+"/keys/"+k.name, k.name, "Microsoft.KeyVault/vaults/keys"
	if rt.keyV != "" {
		id, name, typ = id+"/versions/"+kv.version, kv.version, "Microsoft.KeyVault/vaults/keys/versions"
	}
	body := map[string]any{
		"id": id, "name": name, "type": typ, "location": s.cfg.Location, "tags": map[string]string{},
		"properties": map[string]any{
			"attributes":        attrs,
			"kty":               "RSA",
			"keySize":           3072,
			"keyOps":            []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"},
			"keyUri":            keyURI,
			"keyUriWithVersion": keyURI + "/" + kv.version,
		},
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeARMError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}
