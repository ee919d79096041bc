package config

import (
	"strconv"
	"strings"
	"time"
)

// AppSecret says how the guard learns when the secret of the Azure
// application Atlas authenticates with (the EAR config's clientID) expires.
type AppSecret struct {
	// Expiry is GUARD_AZURE_APP_SECRET_EXPIRY by client id; the key "" holds
	// a bare date, which applies to every project. Dates are 00:00 UTC.
	Expiry map[string]time.Time `json:"expiry,omitempty"`
	// FromGraph is GUARD_AZURE_APP_SECRET_FROM_GRAPH: read the application's
	// secrets from Microsoft Graph (needs Application.Read.All).
	FromGraph bool `json:"fromGraph"`
}

// readAppSecret reads GUARD_AZURE_APP_SECRET_EXPIRY (YYYY-MM-DD, or
// clientID=YYYY-MM-DD[,…]) and GUARD_AZURE_APP_SECRET_FROM_GRAPH (a bool).
func readAppSecret(get func(string) string, c *Config) error {
	a := &c.AppSecret
	const exp, graph = "GUARD_AZURE_APP_SECRET_EXPIRY", "GUARD_AZURE_APP_SECRET_FROM_GRAPH"
	if v := get(graph); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return bad(graph, "%q is not true or false", v)
		}
		a.FromGraph = b
	}
	for _, item := range strings.Split(get(exp), ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		id, date, pair := strings.Cut(item, "=")
		if !pair {
			id, date = "", item
		}
		id = strings.TrimSpace(id)
		t, err := time.Parse(time.DateOnly, strings.TrimSpace(date))
		if err != nil || (pair && id == "") {
			return bad(exp, "%q is not YYYY-MM-DD or clientID=YYYY-MM-DD", item)
		}
		if _, dup := a.Expiry[id]; dup {
			return bad(exp, "%q is given twice", item)
		}
		if a.Expiry == nil {
			a.Expiry = map[string]time.Time{}
		}
		a.Expiry[id] = t
	}
	return nil
}
