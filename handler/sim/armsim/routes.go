package armsim

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
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
	is := func(i int, kw string) bool { return i < len(segs) && resource.EqualFold(segs[i], kw) }
	if len(segs) < 8 || !is(0, "subscriptions") || !is(2, "resourceGroups") || !is(4, "providers") ||
		!is(5, "Microsoft.KeyVault") || !is(6, "vaults") || segs[1] == "" || segs[3] == "" || segs[7] == "" {
		return route{}, false
	}
	rt := route{vault: resource.ID{SubscriptionID: segs[1], ResourceGroup: segs[3], Name: segs[7]}, scope: "/" + strings.Join(segs, "/")}
	n, get := len(segs)-8, r.Method == http.MethodGet
	last := segs[len(segs)-1]
	switch {
	case n == 0 && get:
		rt.name, rt.actions = RouteVaultGet, []string{vault.ActionVaultRead}
	case n == 1 && is(8, "privateEndpointConnections") && get:
		rt.name, rt.actions = RouteConnectionsList, []string{vault.ActionConnectionsRead}
	case n == 2 && is(8, "privateEndpointConnections") && last != "" && get:
		rt.name, rt.conn, rt.actions = RouteConnectionGet, last, []string{vault.ActionConnectionsRead}
	case n == 2 && is(8, "privateEndpointConnections") && last != "" && r.Method == http.MethodPut:
		// The write is authorized first; approving or rejecting also needs
		// the approval action, checked as a linked authorization.
		rt.name, rt.conn, rt.actions = RouteConnectionPut, last, []string{vault.ActionConnectionsWrite, vault.ActionConnectionsApproval}
	case n == 2 && is(8, "keys") && last != "" && get:
		rt.name, rt.key, rt.actions = RouteKeyGet, last, []string{vault.ActionKeysRead}
	case n == 4 && is(8, "keys") && is(10, "versions") && segs[9] != "" && last != "" && get:
		rt.name, rt.key, rt.keyV, rt.actions = RouteKeyVersionGet, segs[9], last, []string{vault.ActionKeyVersionsRead}
	default:
		return route{}, false
	}
	return rt, true
}

func (s *Server) serveARM(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-ms-request-id", guid(randHex(8)))
	w.Header().Set("x-ms-correlation-request-id", guid(randHex(8)))
	rt, ok := parseRoute(r)
	if !ok {
		writeARMError(w, http.StatusBadRequest, "UnsupportedRoute", fmt.Sprintf("armsim does not serve %s %s", r.Method, r.URL.Path))
		return
	}
	s.locked(func() { s.counts[rt.name]++ })
	if s.applyFault(w, r, rt.name) {
		return
	}
	tok, ok := s.authenticate(w, r)
	if !ok || (rt.name != RouteProviderGet && !checkAPIVersion(w, r)) || !s.authorize(w, rt, tok) {
		return
	}
	switch rt.name {
	case RouteVaultGet:
		s.getVault(w, rt)
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

// applyFault applies the first matching fault; it reports whether the request
// has been answered (or dropped).
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, routeName string) bool {
	var f *Fault
	s.locked(func() {
		for i, c := range s.faults {
			if c.Match == routeName || (c.Match == "" && routeName != RouteIdentity) {
				cp := *c
				f = &cp
				if c.Times--; c.Times == 0 {
					s.faults = slices.Delete(s.faults, i, i+1)
				}
				return
			}
		}
	})
	if f == nil || (f.Latency > 0 && backoff.Sleep(r.Context(), f.Latency) != nil) {
		return f != nil
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
	code := cmp.Or(f.Code, strings.ReplaceAll(http.StatusText(f.Status), " ", "")) // TooManyRequests, ServiceUnavailable, …
	if routeName == RouteIdentity {
		writeIdentityError(w, f.Status, "armsim injected fault: "+code)
	} else {
		writeARMError(w, f.Status, code, "armsim injected fault ("+http.StatusText(f.Status)+")")
	}
	return true
}

// authenticate checks the bearer token as ARM does: only tokens this
// simulator's identity endpoint issued, not expired.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (token, bool) {
	fail := func(code, desc, message string) (token, bool) {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", error_description="`+desc+`"`)
		writeARMError(w, http.StatusUnauthorized, code, message)
		return token{}, false
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return fail("AuthenticationFailed", "The authentication failed because of missing 'Authorization' header.", "Authentication failed. The 'Authorization' header is missing.")
	}
	raw, ok := strings.CutPrefix(h, "Bearer ")
	var tok token
	var known bool
	var now time.Time
	s.locked(func() {
		if t := s.tokens[raw]; t != nil {
			tok, known = *t, true
		}
		now = s.now()
	})
	switch {
	case !ok || !known:
		return fail("InvalidAuthenticationToken", "The access token is invalid.", "The access token is invalid.")
	case !now.Before(tok.expires):
		const f = "1/2/2006 3:04:05 PM"
		return fail("ExpiredAuthenticationToken", "The access token has expired.", fmt.Sprintf(
			"The access token expiry UTC time '%s' is earlier than current UTC time '%s'.", tok.expires.UTC().Format(f), now.UTC().Format(f)))
	}
	return tok, true
}

func checkAPIVersion(w http.ResponseWriter, r *http.Request) bool {
	switch v := r.URL.Query().Get("api-version"); {
	case v == "":
		writeARMError(w, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
	case !slices.Contains(APIVersions, v):
		writeARMError(w, http.StatusBadRequest, "NoRegisteredProviderFound", fmt.Sprintf(
			"No registered resource provider found for location '%s' and API version '%s' for type 'vaults'. The supported api-versions are '%s'.",
			location, v, strings.Join(APIVersions, ", ")))
	default:
		return true
	}
	return false
}

// authorize answers 403 as ARM does when the caller lacks an action the route
// needs: AuthorizationFailed for the primary action, LinkedAuthorizationFailed
// for the approval action of a PUT.
func (s *Server) authorize(w http.ResponseWriter, rt route, tok token) bool {
	idx := -1
	s.locked(func() {
		idx = slices.IndexFunc(rt.actions, func(a string) bool { return s.denied[strings.ToLower(a)] })
	})
	switch idx {
	case -1:
		return true
	case 0:
		writeARMError(w, http.StatusForbidden, "AuthorizationFailed", fmt.Sprintf(
			"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
			tok.clientID, tok.objectID, rt.actions[0], rt.scope))
	default:
		writeARMError(w, http.StatusForbidden, "LinkedAuthorizationFailed", fmt.Sprintf(
			"The client '%s' with object id '%s' has permission to perform action '%s' on scope '%s'; however, it does not have permission to perform action(s) '%s' on the linked scope(s) '%s' (respectively) or the linked scope(s) are invalid.",
			tok.clientID, tok.objectID, rt.actions[0], rt.scope, rt.actions[idx], rt.vault.String()))
	}
	return false
}

// serveVault answers the status and body (nil: none) f builds under the lock
// on the route's vault, or 404 as ARM does (ResourceNotFound for the vault
// itself, VaultNotFound below it).
func (s *Server) serveVault(w http.ResponseWriter, rt route, f func(v *vaultState) (int, any)) {
	s.mu.Lock()
	v := s.vaults[rt.vault.Key()]
	status, body := http.StatusNotFound, armError("VaultNotFound", fmt.Sprintf("Vault '%s' not found.", rt.vault.Name))
	if v != nil {
		status, body = f(v)
	} else if rt.name == RouteVaultGet {
		body = armError("ResourceNotFound", fmt.Sprintf(
			"The Resource 'Microsoft.KeyVault/vaults/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
			rt.vault.Name, rt.vault.ResourceGroup))
	}
	s.mu.Unlock()
	if body == nil {
		w.WriteHeader(status)
	} else {
		writeJSON(w, status, body)
	}
}

func (s *Server) getVault(w http.ResponseWriter, rt route) {
	s.serveVault(w, rt, func(v *vaultState) (int, any) {
		pecs := make([]map[string]any, 0, len(v.conns))
		for _, c := range v.conns {
			s.settle(c)
			pecs = append(pecs, map[string]any{"id": c.public(v.id).ID, "etag": c.etag, "properties": connProperties(c)})
		}
		return http.StatusOK, map[string]any{
			"id": v.id.String(), "name": v.id.Name, "type": "Microsoft.KeyVault/vaults", "location": location, "tags": maps.Clone(v.tags),
			"properties": map[string]any{
				"tenantId":                   guid("tenant"),
				"sku":                        map[string]any{"family": "A", "name": "standard"},
				"accessPolicies":             []any{},
				"enableRbacAuthorization":    true,
				"enableSoftDelete":           !v.unprotected.softDelete,
				"softDeleteRetentionInDays":  90,
				"enablePurgeProtection":      !v.unprotected.purge,
				"vaultUri":                   "https://" + strings.ToLower(v.id.Name) + "." + vaultDNSSuffix + "/",
				"provisioningState":          "Succeeded",
				"publicNetworkAccess":        "Disabled",
				"networkAcls":                map[string]any{"bypass": "AzureServices", "defaultAction": "Deny", "ipRules": []any{}, "virtualNetworkRules": []any{}},
				"privateEndpointConnections": pecs,
			},
		}
	})
}

// settle advances a connection that is Updating after a PUT; the caller holds
// s.mu and is about to serve the connection.
func (s *Server) settle(c *connState) {
	if c.prov == vault.ProvisioningUpdating {
		if c.readsLeft--; c.readsLeft < 0 {
			c.prov = vault.ProvisioningSucceeded
		}
	}
}

func connProperties(c *connState) map[string]any {
	p := map[string]any{
		"privateLinkServiceConnectionState": map[string]any{"status": c.status, "description": c.desc, "actionsRequired": c.actions},
		"provisioningState":                 c.prov,
	}
	if c.peID != "" {
		p["privateEndpoint"] = map[string]any{"id": c.peID}
	}
	return p
}

// connJSON is the connection as the API serves it; it records the
// provisioning state served (the last 64).
func (s *Server) connJSON(v *vaultState, c *connState) map[string]any {
	c.served = append(c.served, c.prov)
	c.served = c.served[max(len(c.served)-64, 0):]
	return map[string]any{
		"id": c.public(v.id).ID, "name": c.name, "type": "Microsoft.KeyVault/vaults/privateEndpointConnections",
		"location": location, "etag": c.etag, "properties": connProperties(c),
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
	s.serveVault(w, rt, func(v *vaultState) (int, any) {
		page := []map[string]any{}
		end := min(skip+s.cfg.PageSize, len(v.conns))
		for _, c := range v.conns[min(skip, end):end] {
			s.settle(c)
			page = append(page, s.connJSON(v, c))
		}
		body := map[string]any{"value": page}
		if end < len(v.conns) {
			body["nextLink"] = fmt.Sprintf("https://%s%s?api-version=%s&$skiptoken=%d", r.Host, r.URL.Path, r.URL.Query().Get("api-version"), end)
		}
		return http.StatusOK, body
	})
}

func (s *Server) getConnection(w http.ResponseWriter, rt route) {
	s.serveVault(w, rt, func(v *vaultState) (int, any) {
		c := v.conn(rt.conn)
		if c == nil {
			// Key Vault answers a missing connection with 204 and no body
			// (PrivateEndpointConnections_Get), not 404.
			return http.StatusNoContent, nil
		}
		s.settle(c)
		return http.StatusOK, s.connJSON(v, c)
	})
}

// putConnection changes the connection state. The BeforePut hook runs first.
// Etags (unless SetEtagChecks turned them off): an If-Match header that
// matches no current etag answers 412 PreconditionFailed; an etag in the body
// that does not match answers 409 Conflict. A Rejected or Disconnected
// connection cannot be approved again (400), as with Azure Private Link.
func (s *Server) putConnection(w http.ResponseWriter, r *http.Request, rt route, tok token) {
	var in struct {
		Etag       string `json:"etag"`
		Properties *struct {
			State *struct{ Status, Description, ActionsRequired string } `json:"privateLinkServiceConnectionState"`
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
	var hook func(resource.ID, string)
	s.locked(func() { hook = s.beforePut })
	if hook != nil {
		hook(rt.vault, rt.conn)
	}
	var ch *Change
	var hooks []func(Change)
	s.serveVault(w, rt, func(v *vaultState) (int, any) {
		c := v.conn(rt.conn)
		etag := ""
		if c != nil {
			etag = c.etag
		}
		switch im := r.Header.Values("If-Match"); {
		case len(im) > 0 && !s.noIfMatch && !ifMatch(im, etag):
			return http.StatusPreconditionFailed, armError("PreconditionFailed", "The condition specified using HTTP conditional header(s) is not met.")
		case c == nil:
			return http.StatusNotFound, armError("PrivateEndpointConnectionNotFound", fmt.Sprintf("Private endpoint connection '%s' not found.", rt.conn))
		case in.Etag != "" && !s.noBodyEtag && in.Etag != c.etag:
			return http.StatusConflict, armError("Conflict", fmt.Sprintf("The etag '%s' does not match the current etag of private endpoint connection '%s'.", in.Etag, c.name))
		case st.Status == vault.StatusApproved && (c.status == vault.StatusRejected || c.status == vault.StatusDisconnected):
			return http.StatusBadRequest, armError("InvalidPrivateEndpointConnectionStateTransition", fmt.Sprintf("Private endpoint connection '%s' is %s and cannot be approved.", c.name, c.status))
		}
		before := c.public(v.id)
		c.status, c.desc, c.etag, c.actions = st.Status, st.Description, newEtag(), cmp.Or(st.ActionsRequired, c.actions)
		c.prov, c.readsLeft = vault.ProvisioningUpdating, s.cfg.SettleReads
		if s.cfg.SettleReads < 0 {
			c.prov = vault.ProvisioningSucceeded
		}
		ch = &Change{Time: s.now(), ClientID: tok.clientID, ObjectID: tok.objectID, ResourceURI: before.ID,
			Operation: vault.ActionConnectionsWrite, Vault: v.id, Before: before, After: c.public(v.id)}
		hooks = slices.Clone(s.hooks)
		return http.StatusOK, s.connJSON(v, c)
	})
	for _, h := range hooks {
		h(*ch)
	}
}

// ifMatch evaluates If-Match as RFC 9110 13.1.1 does: true when a listed
// entity tag matches etag by strong comparison (weak tags never match), or
// the list is "*" and the resource exists (etag not empty).
func ifMatch(values []string, etag string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); etag != "" && (t == "*" || (t == etag && !strings.HasPrefix(t, "W/"))) {
				return true
			}
		}
	}
	return false
}

func (s *Server) getKey(w http.ResponseWriter, rt route) {
	s.serveVault(w, rt, func(v *vaultState) (int, any) {
		k := v.keys[strings.ToLower(rt.key)]
		var kv *keyVersion
		if k != nil && len(k.versions) > 0 {
			kv = k.versions[len(k.versions)-1]
			if rt.keyV != "" {
				kv = k.version(rt.keyV)
			}
		}
		if kv == nil {
			missing := fmt.Sprintf("Key '%s' was not found in vault '%s'.", rt.key, v.id.Name)
			if rt.keyV != "" && k != nil {
				missing = fmt.Sprintf("Key '%s' version '%s' was not found in vault '%s'.", rt.key, rt.keyV, v.id.Name)
			}
			return http.StatusNotFound, armError("KeyNotFound", missing)
		}
		attrs := map[string]any{"enabled": kv.enabled, "created": kv.created.Unix(), "updated": kv.updated.Unix(), "recoveryLevel": "Recoverable", "exportable": false}
		if kv.nbf != nil {
			attrs["nbf"] = kv.nbf.Unix()
		}
		if kv.exp != nil {
			attrs["exp"] = kv.exp.Unix()
		}
		keyURI := "https://" + strings.ToLower(v.id.Name) + "." + vaultDNSSuffix + "/keys/" + k.name
		id, name, typ := v.id.String()+"/keys/"+k.name, k.name, "Microsoft.KeyVault/vaults/keys"
		if rt.keyV != "" {
			id, name, typ = id+"/versions/"+kv.version, kv.version, "Microsoft.KeyVault/vaults/keys/versions"
		}
		return http.StatusOK, map[string]any{
			"id": id, "name": name, "type": typ, "location": location, "tags": map[string]string{},
			"properties": map[string]any{
				"attributes": attrs, "kty": "RSA", "keySize": 3072, "keyUri": keyURI, "keyUriWithVersion": keyURI + "/" + kv.version,
				"keyOps": []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"},
			},
		}
	})
}

// serveIdentity is the App Service managed identity endpoint:
//
//	GET {IDENTITY_ENDPOINT}?resource={audience}&api-version=2019-08-01[&client_id={id}]
//	X-IDENTITY-HEADER: {IDENTITY_HEADER}
//
// answering {"access_token","expires_on" (epoch seconds, a string),
// "resource","token_type":"Bearer","client_id"}. Errors are App Service's
// {"statusCode","message","correlationId"}; while SetIdentityDown(true) it
// answers 503.
func (s *Server) serveIdentity(w http.ResponseWriter, r *http.Request) {
	s.locked(func() { s.counts[RouteIdentity]++ })
	if s.applyFault(w, r, RouteIdentity) {
		return
	}
	var down bool
	s.locked(func() { down = s.identityDown })
	q := r.URL.Query()
	audience := q.Get("resource")
	fail := func(status int, msg string) { writeIdentityError(w, status, msg) }
	switch {
	case down:
		fail(http.StatusServiceUnavailable, "The managed identity endpoint is unavailable.")
	case r.Method != http.MethodGet:
		fail(http.StatusMethodNotAllowed, "Only GET is supported.")
	case r.Header.Get("X-IDENTITY-HEADER") != s.idHdr:
		fail(http.StatusUnauthorized, "The X-IDENTITY-HEADER header is missing or invalid.")
	case q.Get("api-version") != IdentityAPIVersion:
		fail(http.StatusBadRequest, "Unsupported api-version '"+q.Get("api-version")+"'; want "+IdentityAPIVersion+".")
	case !slices.ContainsFunc(s.cfg.Audiences, func(a string) bool {
		return resource.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(audience, "/"))
	}):
		fail(http.StatusBadRequest, "Unknown or missing resource '"+audience+"'.")
	case q.Has("mi_res_id") || q.Has("principal_id") || q.Has("object_id"):
		fail(http.StatusBadRequest, "armsim supports selecting a user-assigned identity by client_id only.")
	default:
		clientID := cmp.Or(q.Get("client_id"), s.systemC)
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		raw := "armsim." + base64.RawURLEncoding.EncodeToString(b)
		var exp time.Time
		s.locked(func() {
			now := s.now()
			exp = now.Add(s.cfg.TokenLifetime)
			for k, t := range s.tokens { // forget tokens that expired long ago
				if len(s.tokens) > 1000 && now.Sub(t.expires) > time.Hour {
					delete(s.tokens, k)
				}
			}
			s.tokens[raw] = &token{clientID: clientID, objectID: ObjectID(clientID), resource: audience, expires: exp}
		})
		writeJSON(w, http.StatusOK, map[string]string{"access_token": raw, "expires_on": strconv.FormatInt(exp.Unix(), 10),
			"resource": audience, "token_type": "Bearer", "client_id": clientID})
	}
}

func writeIdentityError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{"statusCode": status, "message": message, "correlationId": guid(randHex(8))})
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
	writeJSON(w, status, armError(code, message))
}

// armError is ARM's error body.
func armError(code, message string) any {
	return map[string]any{"error": map[string]string{"code": code, "message": message}}
}
