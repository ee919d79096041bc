// Package graphsim simulates the one Microsoft Graph read of the guard:
// GET /v1.0/applications(appId='{appId}')?$select=… with a Bearer token,
// answering Graph's shapes for an application, a missing one (404) and an
// identity without Application.Read.All (403).
package graphsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Sim is the simulator; the zero value is not usable, call New.
type Sim struct {
	mu        sync.Mutex
	apps      map[string][]time.Time // appId → endDateTime of each password credential
	forbidden bool
	calls     int
}

// New returns an empty simulator.
func New() *Sim { return &Sim{apps: map[string][]time.Time{}} }

// SetSecrets registers the application appID with one password credential
// per end time.
func (s *Sim) SetSecrets(appID string, ends ...time.Time) {
	s.locked(func() { s.apps[appID] = append([]time.Time(nil), ends...) })
}

// SetForbidden makes every read answer 403 (the permission is missing).
func (s *Sim) SetForbidden(f bool) { s.locked(func() { s.forbidden = f }) }

// Calls counts the application reads received.
func (s *Sim) Calls() (n int) { s.locked(func() { n = s.calls }); return n }

func (s *Sim) locked(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

var appPath = regexp.MustCompile(`^/v1\.0/applications\(appId='([^']+)'\)$`)

func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := appPath.FindStringSubmatch(r.URL.Path)
	if r.Method != http.MethodGet || m == nil {
		graphError(w, http.StatusBadRequest, "BadRequest", "Unsupported request: "+r.Method+" "+r.URL.Path)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return
	}
	s.mu.Lock()
	s.calls++
	ends, known := s.apps[m[1]]
	forbidden := s.forbidden
	s.mu.Unlock()
	switch {
	case forbidden:
		graphError(w, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
		return
	case !known:
		graphError(w, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", m[1]))
		return
	}
	creds := make([]map[string]any, 0, len(ends))
	for i, end := range ends {
		creds = append(creds, map[string]any{
			"customKeyIdentifier": nil, "displayName": fmt.Sprintf("secret-%d", i+1), "hint": "abc",
			"keyId": fmt.Sprintf("00000000-0000-0000-0000-%012d", i+1), "secretText": nil,
			"startDateTime": end.AddDate(-2, 0, 0).UTC().Format(time.RFC3339), "endDateTime": end.UTC().Format(time.RFC3339),
		})
	}
	w.Header().Set("Content-Type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"@odata.context":      "https://graph.microsoft.com/v1.0/$metadata#applications(appId,passwordCredentials)/$entity",
		"appId":               m[1],
		"passwordCredentials": creds,
	})
}

func graphError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg}})
}
