package vault

import (
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// Connection status values of a Key Vault private endpoint connection.
const (
	StatusPending      = "Pending"
	StatusApproved     = "Approved"
	StatusRejected     = "Rejected"
	StatusDisconnected = "Disconnected"
)

// HoldTag is the vault tag (key and value) that stops the guard from approving
// anything on that vault.
const (
	HoldTagKey   = "atlas-akv-guard"
	HoldTagValue = "hold"
)

// Connection is one private endpoint connection on a vault.
type Connection struct {
	// Name is the connection's name, which Atlas reports as the endpoint's
	// privateEndpointConnectionName.
	Name              string `json:"name"`
	ID                string `json:"id"`
	Status            string `json:"status"`
	Description       string `json:"description,omitempty"`
	ActionsRequired   string `json:"actionsRequired,omitempty"`
	PrivateEndpointID string `json:"privateEndpointId,omitempty"`
	ProvisioningState string `json:"provisioningState,omitempty"`
	Etag              string `json:"etag,omitempty"`
}

// Vault is what the guard knows of a vault. Found is false when ARM answered
// 404. EnablePurgeProtection is true only when ARM says true (absent means
// off); EnableSoftDelete is false only when ARM says false (absent means
// Azure's default, on).
type Vault struct {
	Found                 bool              `json:"found"`
	Location              string            `json:"location,omitempty"`
	Tags                  map[string]string `json:"tags,omitempty"`
	PublicNetworkAccess   string            `json:"publicNetworkAccess,omitempty"`
	URI                   string            `json:"uri,omitempty"`
	EnablePurgeProtection bool              `json:"enablePurgeProtection"`
	EnableSoftDelete      bool              `json:"enableSoftDelete"`
}

// Hold reports whether the vault carries the hold tag (atlas-akv-guard=hold,
// key and value compared case-insensitively).
func (v Vault) Hold() bool {
	for k, val := range v.Tags {
		if resource.EqualFold(k, HoldTagKey) && resource.EqualFold(strings.TrimSpace(val), HoldTagValue) {
			return true
		}
	}
	return false
}

// Key is the state of the key version Atlas uses, read through the management
// plane. Found is false when ARM answered 404 for the key or the version.
// Expires and NotBefore are nil when the key has no such limit. Latest names the
// key's current version (which may differ from Version after a rotation in
// Azure) and LatestEnabled says whether that version is enabled.
type Key struct {
	Found         bool       `json:"found"`
	Name          string     `json:"name"`
	Version       string     `json:"version"`
	Enabled       bool       `json:"enabled"`
	Expires       *time.Time `json:"expires,omitempty"`
	NotBefore     *time.Time `json:"notBefore,omitempty"`
	Latest        string     `json:"latest,omitempty"`
	LatestEnabled bool       `json:"latestEnabled,omitempty"`
}
