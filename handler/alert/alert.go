// Package alert holds the guard's alert values: what the plan raises and
// resolves, what the sinks deliver and what the state store keeps.
package alert

import "time"

// Severity of an alert.
type Severity string

const (
	Info     Severity = "info"
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Rank orders severities: Info 0 < Warning 1 < Critical 2; any other value -1.
func (s Severity) Rank() int {
	switch s {
	case Info:
		return 0
	case Warning:
		return 1
	case Critical:
		return 2
	}
	return -1
}

// Kind names one row of the alert catalog.
type Kind string

const (
	KeyDisabled        Kind = "key-disabled"
	KeyExpired         Kind = "key-expired"
	KeyNotYetValid     Kind = "key-not-yet-valid"
	KeyExpiresSoon     Kind = "key-expires-soon"
	KeyMissing         Kind = "key-missing"
	VaultMissing       Kind = "vault-missing"
	ConfigInvalid      Kind = "config-invalid"
	ClustersPaused     Kind = "clusters-paused"
	EndpointFailed     Kind = "endpoint-failed"
	EndpointStuck      Kind = "endpoint-stuck"
	ConnectionChanged  Kind = "connection-rejected"
	AccessChanged      Kind = "access-changed"
	ForeignConnection  Kind = "foreign-connection"
	KeyRotated         Kind = "key-rotated"
	Approved           Kind = "approved"
	WouldApprove       Kind = "would-approve"
	ApprovalHeld       Kind = "approval-held"
	GuardBlind         Kind = "guard-blind"
	RegionUncovered    Kind = "region-uncovered"
	UnsupportedCluster Kind = "unsupported-cluster"
	NoPrivateEndpoint  Kind = "no-private-endpoint"
	PurgeUnprotected   Kind = "vault-purge-unprotected"
	AppSecretExpiring  Kind = "app-secret-expiring"
	AppSecretExpired   Kind = "app-secret-expired"
	StateUnreadable    Kind = "state-unreadable"
	AtlasAlertsOff     Kind = "atlas-ear-alerts-off"
)

// Catalog gives every kind its severity. Two escalate to critical while worse
// holds: key-rotated when the pinned version is disabled, access-changed once
// Atlas reports the config invalid.
var Catalog = map[Kind]Severity{
	KeyDisabled: Critical, KeyExpired: Critical, KeyNotYetValid: Critical, KeyExpiresSoon: Warning, KeyMissing: Critical,
	VaultMissing: Critical, ConfigInvalid: Critical, ClustersPaused: Critical, EndpointFailed: Critical, EndpointStuck: Warning,
	ConnectionChanged: Warning, AccessChanged: Warning, ForeignConnection: Warning, KeyRotated: Info, Approved: Info,
	WouldApprove: Info, ApprovalHeld: Warning, GuardBlind: Critical, RegionUncovered: Warning, UnsupportedCluster: Warning,
	NoPrivateEndpoint: Critical, PurgeUnprotected: Warning, AppSecretExpiring: Warning, AppSecretExpired: Critical,
	StateUnreadable: Warning, AtlasAlertsOff: Info,
}

// Alert is one condition the guard reports. Fingerprint is stable for the same
// condition on the same object across reconciles (kind, project and subject),
// so an alert is raised once, kept open while the condition holds and resolved
// when it clears.
type Alert struct {
	Fingerprint string   `json:"fingerprint"`
	Kind        Kind     `json:"kind"`
	Severity    Severity `json:"severity"`
	ProjectID   string   `json:"projectId"`
	Vault       string   `json:"vault,omitempty"` // the vault's ARM resource ID, when known
	// Subject names the object within the project (a connection, endpoint,
	// key version, region...); empty for project-wide conditions.
	Subject string            `json:"subject,omitempty"`
	Summary string            `json:"summary"` // one human sentence, never a secret
	Details map[string]string `json:"details,omitempty"`
	Actor   string            `json:"actor,omitempty"` // who caused it, when an event said so
	// Runbook is what to do: one to three steps, each with the exact command
	// filled in with the snapshot's identifiers (never a secret).
	Runbook      []string   `json:"runbook,omitempty"`
	FirstSeen    time.Time  `json:"firstSeen"`
	LastSeen     time.Time  `json:"lastSeen"`
	LastNotified time.Time  `json:"lastNotified,omitzero"`
	ResolvedAt   *time.Time `json:"resolvedAt,omitempty"`
}

// Action says what a notice tells about its alert.
type Action string

const (
	Raised     Action = "raised"    // first time seen
	Escalated  Action = "escalated" // severity went up while open
	Reminder   Action = "reminder"  // still open, re-notified after the interval
	Resolved   Action = "resolved"  // the condition cleared
	AuditEvent Action = "audit"     // a one-shot record (approvals)
)

// Notice is one message to deliver to the alert sinks. ID is unique per notice
// (fingerprint, action and time) and lets sinks and the state store de-duplicate.
type Notice struct {
	ID     string    `json:"id"`
	Action Action    `json:"action"`
	At     time.Time `json:"at"`
	Alert  Alert     `json:"alert"`
}
