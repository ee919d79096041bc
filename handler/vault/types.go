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
// ".../vaults/v/providers/Microsoft.Authorization/roleAssignments/r"). The ID
// must begin /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{v}
// (keywords compared ASCII-case-insensitively; a leading or trailing slash is
// optional). It returns an error when the ID does not name a Key Vault.
func ParseID(resourceID string) (ID, error) {
	// The first eight segments of the trimmed ID, read in place.
	var parts [8]string
	rest := strings.Trim(resourceID, "/")
	n := 0
	for ; n < len(parts); n++ {
		seg, tail, found := strings.Cut(rest, "/")
		parts[n], rest = seg, tail
		if !found {
			n++
			break
		}
	}
	if n < len(parts) || !asciiEqualFold(parts[0], "subscriptions") || !asciiEqualFold(parts[2], "resourceGroups") ||
		!asciiEqualFold(parts[4], "providers") || !asciiEqualFold(parts[5], "Microsoft.KeyVault") ||
		!asciiEqualFold(parts[6], "vaults") || !validSegment(parts[1]) || !validSegment(parts[3]) || !validSegment(parts[7]) {
		return ID{}, fmt.Errorf("not a Key Vault resource ID: %q", resourceID)
	}
	return ID{SubscriptionID: parts[1], ResourceGroup: parts[3], Name: parts[7]}, nil
}

// validSegment reports whether s can be one name in an ARM resource ID:
// not empty, no spaces, control characters, '?', '#' or invalid UTF-8.
func validSegment(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '?' || r == '#' || r == '\uFFFD' {
			return false
		}
	}
	return true
}

// asciiEqualFold compares ASCII case-insensitively. strings.EqualFold would
// also match Unicode look-alikes (the Kelvin sign folds to 'k', 'ſ' to 's'),
// which ARM does not.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
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
// when the identifier has none. Vault and key names must consist of ASCII
// letters, digits and hyphens, the version of letters and digits; user info,
// a query or a fragment make the identifier invalid.
func ParseKeyIdentifier(keyIdentifier string) (vaultName, keyName, version string, err error) {
	bad := func() (string, string, string, error) {
		return "", "", "", fmt.Errorf("key identifier %q: want https://{vault}.vault.azure.net/keys/{name}/{version}", keyIdentifier)
	}
	rest, ok := strings.CutPrefix(keyIdentifier, "https://")
	if !ok {
		return "", "", "", fmt.Errorf("key identifier %q: not an https URL", keyIdentifier)
	}
	if strings.ContainsAny(rest, "?#@") {
		return bad()
	}
	host, path, _ := strings.Cut(rest, "/")
	vaultName, _, _ = strings.Cut(host, ".")
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if !isName(vaultName, true) || len(segs) < 2 || len(segs) > 3 || !asciiEqualFold(segs[0], "keys") || !isName(segs[1], true) {
		return bad()
	}
	if len(segs) == 3 {
		if !isName(segs[2], false) {
			return bad()
		}
		version = segs[2]
	}
	return vaultName, segs[1], version, nil
}

// isName reports whether s is a non-empty run of ASCII letters and digits
// (and hyphens when hyphen is true).
func isName(s string, hyphen bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' && hyphen:
		default:
			return false
		}
	}
	return true
}
