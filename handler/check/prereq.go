package check

import (
	"context"
	"errors"
	"fmt"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// States of a Prerequisite.
const (
	PrereqOK         = "ok"
	PrereqProblem    = "problem"
	PrereqCannotTell = "cannot-tell"
)

// requiredProviders must be registered in each vault's subscription:
// Microsoft.Network is Atlas's prerequisite for Encryption at Rest over
// private endpoints, Microsoft.EventGrid hosts the deployment's system topics.
var requiredProviders = []string{"Microsoft.Network", "Microsoft.EventGrid"}

// Prereqs reads, with the identity running the check (the operator's), what
// a vault's subscription must offer beyond the guard's own role.
// *vault.Client implements it.
type Prereqs interface {
	Provider(ctx context.Context, subscriptionID, namespace string) (string, error)
	Vault(ctx context.Context, v resource.ID) (vault.Vault, error)
}

// Prerequisite is one such thing and what the check found: ok, problem, or
// cannot-tell when it could not be read (Detail names the missing action).
// A read that failed is never reported ok.
type Prerequisite struct {
	Vault  string `json:"vault"`
	Check  string `json:"check"`
	State  string `json:"state"`
	Detail string `json:"detail"`
}

// prerequisites checks every distinct vault the projects name.
func prerequisites(ctx context.Context, pr Prereqs, projects []Project) []Prerequisite {
	out := []Prerequisite{}
	seen := map[string]bool{}
	for _, p := range projects {
		v, err := resource.ParseID(p.Status.Vault)
		if err != nil || seen[v.Key()] {
			continue
		}
		seen[v.Key()] = true
		kv, err := pr.Vault(ctx, v)
		row := Prerequisite{Vault: v.String(), Check: "vault exists", State: PrereqOK, Detail: "region " + kv.Location}
		if err == nil && !kv.Found {
			row.State, row.Detail = PrereqProblem, "not found: Atlas's EAR configuration names a vault that does not exist"
		}
		out = append(out, readable(row, err))
		for _, ns := range requiredProviders {
			state, err := pr.Provider(ctx, v.SubscriptionID, ns)
			row := Prerequisite{Vault: v.String(), Check: ns + " registered", State: PrereqOK, Detail: state}
			if state != "Registered" {
				row.State, row.Detail = PrereqProblem, fmt.Sprintf("%s: az provider register --namespace %s --subscription %s", state, ns, v.SubscriptionID)
			}
			out = append(out, readable(row, err))
		}
	}
	return out
}

// readable turns row into cannot-tell when err says the read failed.
func readable(row Prerequisite, err error) Prerequisite {
	var fe *vault.ForbiddenError
	switch {
	case errors.As(err, &fe):
		row.State, row.Detail = PrereqCannotTell, "your identity may not read it: it lacks "+fe.Action
	case err != nil:
		row.State, row.Detail = PrereqCannotTell, alert.Scrub(err.Error())
	}
	return row
}

func prereqCount(rows []Prerequisite, state string) int {
	n := 0
	for _, r := range rows {
		if r.State == state {
			n++
		}
	}
	return n
}
