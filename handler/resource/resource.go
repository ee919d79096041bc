// Package resource names what the guard works with: a Key Vault's ARM
// resource ID, the key identifier Atlas stores, and the endpoint URLs it
// sends to. It is a leaf: it imports nothing of the guard and no Azure SDK.
package resource

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ParseEndpoint parses a URL the guard sends to (storage, webhook): absolute
// https, or http to a loopback host (emulators, tests, the demo). Its errors
// never repeat the URL, which may hold a secret.
func ParseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, errors.New("not an absolute http(s) URL")
	}
	ip := net.ParseIP(u.Hostname())
	if u.Scheme == "http" && u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, errors.New("must be https (http only to a loopback address)")
	}
	return u, nil
}

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

// Equal compares two vault IDs the way ARM does: ASCII case-insensitively
// (never Unicode folding, which would match look-alikes such as the Kelvin sign).
func (id ID) Equal(o ID) bool {
	return EqualFold(id.SubscriptionID, o.SubscriptionID) &&
		EqualFold(id.ResourceGroup, o.ResourceGroup) &&
		EqualFold(id.Name, o.Name)
}

// Key returns a canonical form of id (ASCII lower case), for use as a map key:
// two IDs have the same Key exactly when they are Equal.
func (id ID) Key() string { return asciiLower(id.String()) }

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

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
	if n < len(parts) || !EqualFold(parts[0], "subscriptions") || !EqualFold(parts[2], "resourceGroups") ||
		!EqualFold(parts[4], "providers") || !EqualFold(parts[5], "Microsoft.KeyVault") ||
		!EqualFold(parts[6], "vaults") || !validSegment(parts[1]) || !validSegment(parts[3]) || !validSegment(parts[7]) {
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

// EqualFold compares ASCII case-insensitively, as ARM compares resource IDs.
// strings.EqualFold would also match Unicode look-alikes (the Kelvin sign
// folds to 'k', 'ſ' to 's'), which ARM does not.
func EqualFold(a, b string) bool {
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
	if !isName(vaultName, true) || len(segs) < 2 || len(segs) > 3 || !EqualFold(segs[0], "keys") || !isName(segs[1], true) {
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
