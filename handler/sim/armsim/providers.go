package armsim

import (
	"net/http"
	"strings"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// RouteProviderGet is Providers_Get: GET /subscriptions/{s}/providers/{namespace},
// the registration state of a resource provider in a subscription.
const RouteProviderGet = "providers/get"

// SetProvider sets the registration state ("Registered", "NotRegistered",
// "Registering", …) of a resource provider in a subscription. Providers never
// set are "Registered".
func (s *Server) SetProvider(subscriptionID, namespace, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.providers == nil {
		s.providers = map[string]string{}
	}
	s.providers[strings.ToLower(subscriptionID+"/"+namespace)] = state
}

func parseProviderRoute(r *http.Request) (route, bool) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodGet || len(segs) != 4 || !strings.EqualFold(segs[0], "subscriptions") ||
		!strings.EqualFold(segs[2], "providers") || segs[1] == "" || segs[3] == "" {
		return route{}, false
	}
	return route{name: RouteProviderGet, actions: []string{vault.ActionProvidersRead}, scope: "/subscriptions/" + segs[1]}, true
}

// getProvider answers Providers_Get as ARM does (resource types left out).
func (s *Server) getProvider(w http.ResponseWriter, r *http.Request, rt route) {
	ns := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	s.mu.Lock()
	state, ok := s.providers[strings.ToLower(strings.TrimPrefix(rt.scope, "/subscriptions/")+"/"+ns)]
	s.mu.Unlock()
	if !ok {
		state = "Registered"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": rt.scope + "/providers/" + ns, "namespace": ns,
		"registrationPolicy": "RegistrationRequired", "registrationState": state, "resourceTypes": []any{},
	})
}
