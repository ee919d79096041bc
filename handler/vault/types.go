package vault

import (
	"fmt"
	"strings"
	"time"
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

// ID names a Key Vault by subscription, resource group and vault name. Azure
// treats all three case-insensitively; use Equal to compare.
type ID struct {
	SubscriptionID string `json:"subscriptionId"`
	ResourceGroup  string `json:"resourceGroup"`
	Name           string `json:"name"`
}

// String returns the vault's ARM resource ID.
func (id ID) String() string {
	return "/subscriptions/" + id.SubscriptionID + "/resourceGroups/" + id.ResourceGroup +
		"/providers/Microsoft.KeyVault/vaults/" + id.Name
}

// IsZero reports whether id names no vault.
func (id ID) IsZero() bool { return id == ID{} }

// Equal compares two vault IDs the way Azure does: case-insensitively.
func (id ID) Equal(o ID) bool {
	return strings.EqualFold(id.SubscriptionID, o.SubscriptionID) &&
		strings.EqualFold(id.ResourceGroup, o.ResourceGroup) &&
		strings.EqualFold(id.Name, o.Name)
}

// Key returns a canonical lower-case form of id, for use as a map key.
func (id ID) Key() string { return strings.ToLower(id.String()) }

// ParseID reads the vault from an ARM resource ID that is the vault itself or
// any resource below it (".../vaults/v/privateEndpointConnections/c",
// ".../vaults/v/providers/Microsoft.Authorization/roleAssignments/r"). It
// returns an error when the ID does not name a Key Vault.
func ParseID(resourceID string) (ID, error) {
	parts := strings.Split(strings.Trim(resourceID, "/"), "/")
	var id ID
	for i := 0; i+1 < len(parts); i += 2 {
		switch k, v := strings.ToLower(parts[i]), parts[i+1]; {
		case k == "subscriptions" && id.SubscriptionID == "":
			id.SubscriptionID = v
		case k == "resourcegroups" && id.ResourceGroup == "":
			id.ResourceGroup = v
		case k == "providers" && strings.EqualFold(v, "Microsoft.KeyVault") && i+3 < len(parts) &&
			strings.EqualFold(parts[i+2], "vaults"):
			id.Name = parts[i+3]
			if id.SubscriptionID == "" || id.ResourceGroup == "" || id.Name == "" {
				break
			}
			return id, nil
		}
	}
	return ID{}, fmt.Errorf("not a Key Vault resource ID: %q", resourceID)
}

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

// Vault is what the guard knows of a vault. Found is false when ARM answered 404.
type Vault struct {
	Found               bool              `json:"found"`
	Tags                map[string]string `json:"tags,omitempty"`
	PublicNetworkAccess string            `json:"publicNetworkAccess,omitempty"`
	URI                 string            `json:"uri,omitempty"`
}

// Hold reports whether the vault carries the hold tag (atlas-akv-guard=hold,
// key and value compared case-insensitively).
func (v Vault) Hold() bool {
	for k, val := range v.Tags {
		if strings.EqualFold(k, HoldTagKey) && strings.EqualFold(strings.TrimSpace(val), HoldTagValue) {
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

// ParseKeyIdentifier splits Atlas's keyIdentifier
// (https://{vault}.vault.azure.net/keys/{name}/{version}) into the vault name
// (the host's first label), the key name and the version. The version is empty
// when the identifier has none.
func ParseKeyIdentifier(keyIdentifier string) (vaultName, keyName, version string, err error) {
	rest, ok := strings.CutPrefix(keyIdentifier, "https://")
	if !ok {
		return "", "", "", fmt.Errorf("key identifier %q: not an https URL", keyIdentifier)
	}
	host, path, _ := strings.Cut(rest, "/")
	vaultName, _, _ = strings.Cut(host, ".")
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if vaultName == "" || len(segs) < 2 || len(segs) > 3 || segs[0] != "keys" || segs[1] == "" {
		return "", "", "", fmt.Errorf("key identifier %q: want https://{vault}.vault.azure.net/keys/{name}/{version}", keyIdentifier)
	}
	if len(segs) == 3 {
		version = segs[2]
	}
	return vaultName, segs[1], version, nil
}
