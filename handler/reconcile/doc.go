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

// projectPrefix starts the store key of every project document.
const projectPrefix = "projects/"

// ProjectKey is the state-store key of a project's document.
func ProjectKey(projectID string) string { return projectPrefix + projectID }

// Doc is the durable state of one project: what the plan remembers, the
// notices still owed to external sinks, the approvals being made, and a
// summary of the last reconcile for the Status page. It is written only
// through conditional writes (state.Update), so concurrent instances never
// overwrite each other.
type Doc struct {
	Version   int    `json:"version,omitempty"` // of this layout (see docVersion)
	ProjectID string `json:"projectId"`
	// Vault is the resource ID of the vault the EAR config named at the last successful read ("" when
	// unknown); as the document's "vault" metadata it lists the vault → project index in one call.
	Vault string `json:"vault,omitempty"`
	// Requests are the connection names the project's endpoints ask for: other guarded projects on the
	// vault must not call them foreign.
	Requests []string    `json:"requests,omitempty"`
	Memory   plan.Memory `json:"memory"`
	// Notified is when the last notice of each fingerprint was stamped. A
	// writer that finds it changed since its own read leaves that
	// fingerprint to the writer that changed it, and stamps its own notices
	// after it, so notices of one fingerprint are in causal order.
	Notified map[string]time.Time `json:"notified,omitempty"`
	// Claims are approvals in progress, by connection name: until it expires, only the claim's run may
	// approve that connection.
	Claims map[string]Claim `json:"claims,omitempty"`
	// Failed are the last reconcile's failed approvals: facts for the next plan (blind until one succeeds).
	Failed  []plan.SourceError `json:"failed,omitempty"`
	Pending []Delivery         `json:"pending,omitempty"` // deliveries to external sinks not yet confirmed
	Summary *Summary           `json:"summary,omitempty"`
	Updated time.Time          `json:"updated"`
}

// Meta is the document's store metadata (see state.Labeled).
func (d Doc) Meta() map[string]string {
	if d.Vault == "" {
		return nil
	}
	return map[string]string{"vault": d.Vault}
}

// Claim is one run's claim on an approval.
type Claim struct {
	By    string    `json:"by"`
	Until time.Time `json:"until"`
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
	slices.SortFunc(out, func(a, b alert.Alert) int {
		return cmp.Or(cmp.Compare(b.Severity.Rank(), a.Severity.Rank()),
			a.FirstSeen.Compare(b.FirstSeen), cmp.Compare(a.Fingerprint, b.Fingerprint))
	})
	return out
}

func summarize(s plan.Snapshot, res plan.Result, mode plan.Mode, now time.Time, approved []string) *Summary {
	sum := &Summary{
		At: now, Mode: mode, Endpoints: s.Endpoints, Connections: s.Connections, Clusters: s.Clusters,
		Decisions: res.Decisions, Errors: s.Errors, Key: s.Key, Approved: approved,
	}
	if !s.Vault.IsZero() {
		sum.Vault = s.Vault.String()
	}
	if s.Config != nil {
		sum.KeyIdentifier = s.Config.KeyIdentifier
		sum.Valid = s.Config.Valid
		sum.RequirePrivateNetworking = s.Config.RequirePrivateNetworking
	}
	if s.VaultState != nil {
		found := s.VaultState.Found
		sum.VaultFound = &found
		sum.Hold = s.VaultState.Hold()
	}
	return sum
}
