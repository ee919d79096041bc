package reconcile

import (
	"cmp"
	"slices"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Store keys: one document per project, one index of vaults.
const (
	projectPrefix = "projects/"
	indexKey      = "index/vaults"
)

// ProjectKey is the state-store key of a project's document.
func ProjectKey(projectID string) string { return projectPrefix + projectID }

// Doc is the durable state of one project: what the plan remembers, the
// notices still owed to sinks, and a summary of the last reconcile for the
// Status page. It is written only through state.Update, so concurrent
// instances never overwrite each other.
type Doc struct {
	ProjectID string `json:"projectId"`
	// Vault is the resource ID of the vault the project's EAR config named
	// at the last successful read ("" when unknown).
	Vault  string      `json:"vault,omitempty"`
	Memory plan.Memory `json:"memory"`
	// Pending holds deliveries not yet confirmed by their sink.
	Pending []Delivery `json:"pending,omitempty"`
	Summary *Summary   `json:"summary,omitempty"`
	Updated time.Time  `json:"updated"`
}

// Delivery is one notice owed to one sink. A delivery is claimed by the
// reconcile run that sends it (ClaimedBy is "instance/run") until
// ClaimUntil; another run — of this or another instance — takes it over
// only after that, so a notice reaches each sink once unless an instance
// dies while sending.
type Delivery struct {
	Notice     alert.Notice `json:"notice"`
	Sink       string       `json:"sink"`
	Attempts   int          `json:"attempts,omitempty"`
	LastError  string       `json:"lastError,omitempty"`
	ClaimedBy  string       `json:"claimedBy,omitempty"`
	ClaimUntil time.Time    `json:"claimUntil,omitzero"`
}

// Summary is what the Status page shows of a project's last reconcile. It
// holds no secret: Atlas's config fields are names and ids, not credentials.
type Summary struct {
	At         time.Time `json:"at"`
	Mode       plan.Mode `json:"mode"`
	DurationMS int64     `json:"durationMs"`
	AtlasCalls int64     `json:"atlasCalls"`
	ARMCalls   int64     `json:"armCalls"`

	Vault                    string                  `json:"vault,omitempty"`
	KeyIdentifier            string                  `json:"keyIdentifier,omitempty"`
	Valid                    *bool                   `json:"valid,omitempty"`
	RequirePrivateNetworking bool                    `json:"requirePrivateNetworking"`
	VaultFound               *bool                   `json:"vaultFound,omitempty"`
	Hold                     bool                    `json:"hold"`
	Key                      *vault.Key              `json:"key,omitempty"`
	Endpoints                []atlas.PrivateEndpoint `json:"endpoints"`
	Connections              []vault.Connection      `json:"connections"`
	Clusters                 []atlas.Cluster         `json:"clusters"`
	Decisions                []plan.Decision         `json:"decisions"`
	Errors                   []plan.SourceError      `json:"errors,omitempty"`
	Approved                 []string                `json:"approved,omitempty"`
}

// OpenAlerts returns the project's open alerts, most severe first, then by
// first-seen time.
func (d Doc) OpenAlerts() []alert.Alert {
	out := make([]alert.Alert, 0, len(d.Memory.Open))
	for _, a := range d.Memory.Open {
		out = append(out, a)
	}
	rank := map[alert.Severity]int{alert.Critical: 0, alert.Warning: 1, alert.Info: 2}
	slices.SortFunc(out, func(a, b alert.Alert) int {
		return cmp.Or(cmp.Compare(rank[a.Severity], rank[b.Severity]),
			a.FirstSeen.Compare(b.FirstSeen), cmp.Compare(a.Fingerprint, b.Fingerprint))
	})
	return out
}

// vaultIndex maps each guarded project to the resource ID of the vault its
// EAR config names, so an event about a vault finds its projects without
// reading every project's config.
type vaultIndex struct {
	Projects map[string]string `json:"projects"`
	Updated  time.Time         `json:"updated"`
}
