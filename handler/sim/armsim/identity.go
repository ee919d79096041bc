package armsim

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// IdentityHandler returns the App Service managed identity endpoint (without
// a listener; StartIdentity serves it):
//
//	GET {IDENTITY_ENDPOINT}?resource={audience}&api-version=2019-08-01[&client_id={id}]
//	X-IDENTITY-HEADER: {IDENTITY_HEADER}
//
// answering {"access_token","expires_on" (epoch seconds, a string),
// "resource","token_type":"Bearer","client_id"}. Errors are App Service's
// {"statusCode","message","correlationId"}; while SetIdentityDown(true) it
// answers 503.
func (s *Server) IdentityHandler() http.Handler { return http.HandlerFunc(s.serveIdentity) }

func (s *Server) serveIdentity(w http.ResponseWriter, r *http.Request) {
	s.count(RouteIdentity)
	if s.applyFault(w, r, RouteIdentity) {
		return
	}
	s.mu.Lock()
	down := s.identity
	s.mu.Unlock()
	if down {
		writeIdentityError(w, http.StatusServiceUnavailable, "The managed identity endpoint is unavailable.")
		return
	}
	if r.Method != http.MethodGet {
		writeIdentityError(w, http.StatusMethodNotAllowed, "Only GET is supported.")
		return
	}
	if r.Header.Get("X-IDENTITY-HEADER") != s.idHdr {
		writeIdentityError(w, http.StatusUnauthorized, "The X-IDENTITY-HEADER header is missing or invalid.")
		return
	}
	q := r.URL.Query()
	if v := q.Get("api-version"); v != IdentityAPIVersion {
		writeIdentityError(w, http.StatusBadRequest, "Unsupported api-version '"+v+"'; want "+IdentityAPIVersion+".")
		return
	}
	audience := q.Get("resource")
	if !slices.ContainsFunc(s.cfg.Audiences, func(a string) bool {
		return resource.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(audience, "/"))
	}) {
		writeIdentityError(w, http.StatusBadRequest, "Unknown or missing resource '"+audience+"'.")
		return
	}
	if q.Has("mi_res_id") || q.Has("principal_id") || q.Has("object_id") {
		writeIdentityError(w, http.StatusBadRequest, "armsim supports selecting a user-assigned identity by client_id only.")
		return
	}
	clientID := s.systemC
	if id := q.Get("client_id"); id != "" {
		if len(s.cfg.ClientIDs) > 0 && !slices.ContainsFunc(s.cfg.ClientIDs, func(c string) bool { return resource.EqualFold(c, id) }) {
			writeIdentityError(w, http.StatusBadRequest, "Unable to load the requested managed identity ("+id+").")
			return
		}
		clientID = id
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	raw := "armsim." + base64.RawURLEncoding.EncodeToString(b)
	exp := s.now().Add(s.cfg.TokenLifetime)
	s.mu.Lock()
	if len(s.tokens) > 1000 { // forget tokens that expired long ago
		for k, t := range s.tokens {
			if s.now().Sub(t.expires) > time.Hour {
				delete(s.tokens, k)
			}
		}
	}
	s.tokens[raw] = &token{clientID: clientID, objectID: ObjectID(clientID), resource: audience, expires: exp}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": raw,
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     audience,
		"token_type":   "Bearer",
		"client_id":    clientID,
	})
}

func writeIdentityError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]any{"statusCode": status, "message": message, "correlationId": guid(randHex(8))})
}
