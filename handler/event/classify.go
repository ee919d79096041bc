package event

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// Kind says what an event is a hint about.
type Kind string

const (
	KeyNewVersion       Kind = "key-new-version"       // Microsoft.KeyVault.KeyNewVersionCreated
	KeyNearExpiry       Kind = "key-near-expiry"       // Microsoft.KeyVault.KeyNearExpiry
	KeyExpired          Kind = "key-expired"           // Microsoft.KeyVault.KeyExpired
	AccessPolicyChanged Kind = "access-policy-changed" // Microsoft.KeyVault.VaultAccessPolicyChanged
	// ConnectionChanged: an ARM write or delete of a vault's
	// privateEndpointConnections or privateEndpointConnectionProxies.
	ConnectionChanged Kind = "connection-changed"
	VaultChanged      Kind = "vault-changed" // an ARM write or delete of a vault
	// RoleAssignmentDeleted: at a scope that can cover a vault (management
	// group, subscription, resource group, or the vault or below it).
	RoleAssignmentDeleted Kind = "role-assignment-deleted"
	Unrelated             Kind = "unrelated" // anything else; ignored
)

// ARM operation names Classify recognises (compared ASCII case-insensitively).
const (
	OpConnectionWrite       = "Microsoft.KeyVault/vaults/privateEndpointConnections/write"
	OpConnectionDelete      = "Microsoft.KeyVault/vaults/privateEndpointConnections/delete"
	OpConnectionProxyWrite  = "Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/write"
	OpConnectionProxyDelete = "Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/delete"
	OpVaultWrite            = "Microsoft.KeyVault/vaults/write"
	OpVaultDelete           = "Microsoft.KeyVault/vaults/delete"
	OpRoleAssignmentDelete  = "Microsoft.Authorization/roleAssignments/delete"
)

type rule struct {
	name string
	kind Kind
}

// types maps the event types Classify recognises, as Event Grid spells them
// (the tests hold them equal to azsystemevents'), to a Kind; for the ARM
// types (kind "") data.operationName decides, through ops. Of the ARM types
// only write and delete successes count: no action changes a vault, its
// connections or a role assignment (the approval is a
// privateEndpointConnections/write, and proxies/validate/action precedes the
// proxy write that counts).
var (
	types = []rule{
		{"Microsoft.KeyVault.KeyNewVersionCreated", KeyNewVersion},
		{"Microsoft.KeyVault.KeyNearExpiry", KeyNearExpiry},
		{"Microsoft.KeyVault.KeyExpired", KeyExpired},
		{"Microsoft.KeyVault.VaultAccessPolicyChanged", AccessPolicyChanged},
		{"Microsoft.Resources.ResourceWriteSuccess", ""},
		{"Microsoft.Resources.ResourceDeleteSuccess", ""},
	}
	ops = []rule{
		{OpConnectionWrite, ConnectionChanged}, {OpConnectionDelete, ConnectionChanged},
		{OpConnectionProxyWrite, ConnectionChanged}, {OpConnectionProxyDelete, ConnectionChanged},
		{OpVaultWrite, VaultChanged}, {OpVaultDelete, VaultChanged},
		{OpRoleAssignmentDelete, RoleAssignmentDeleted},
	}
)

// KeyVaultEventTypes, ARMEventTypes and ARMOperations list what Classify can
// map to a Kind other than Unrelated, as Event Grid and ARM spell it: the Key
// Vault and resource-group event subscriptions (and the latter's
// operationName filter) should hold exactly these.
func KeyVaultEventTypes() []string { return names(types, func(k Kind) bool { return k != "" }) }
func ARMEventTypes() []string      { return names(types, func(k Kind) bool { return k == "" }) }
func ARMOperations() []string      { return names(ops, func(Kind) bool { return true }) }

func names(rules []rule, keep func(Kind) bool) (out []string) {
	for _, r := range rules {
		if keep(r.kind) {
			out = append(out, r.name)
		}
	}
	return out
}

func lookup(rules []rule, name string) (Kind, bool) {
	i := slices.IndexFunc(rules, func(r rule) bool { return resource.EqualFold(r.name, name) })
	if i < 0 {
		return Unrelated, false
	}
	return rules[i].kind, true
}

// Trigger is what the guard takes from one event; fields an event kind does
// not carry are zero. Every string came from outside: Classify bounds it
// (alert.MaxMessage bytes) and scrubs it (alert.Scrub).
type Trigger struct {
	Kind    Kind
	Type    string // the event type as sent
	EventID string
	Time    time.Time
	// Vault is the vault concerned; zero for a role assignment above a vault.
	Vault resource.ID
	// Scope is the vault's ID, or for RoleAssignmentDeleted the assignment's
	// scope as sent (the vault or below, resource group, subscription,
	// management group, or "/").
	Scope     string
	Object    string // key name (Key* kinds), connection or proxy name (ConnectionChanged)
	Version   string // key version (Key* kinds)
	Operation string // ARM operationName as sent (ARM kinds)
	// Actor is who did it (ARM kinds), from the caller's token claims: user
	// principal name, else application id, else object id; "" when unknown.
	Actor string
	// NotBefore and Expires are the key version's NBF and EXP (Key* kinds),
	// exact to the second, in UTC; nil when the event carries none.
	NotBefore, Expires *time.Time
}

// Covers reports whether t concerns vault v: t names v, or t's role
// assignment scope is an ancestor of v (a management group covers every
// vault: the event does not say which subscriptions it holds). Unrelated
// covers nothing. IDs compare ASCII case-insensitively.
func (t Trigger) Covers(v resource.ID) bool {
	switch {
	case t.Kind == Unrelated || t.Kind == "" || v.IsZero():
		return false
	case !t.Vault.IsZero():
		return t.Vault.Equal(v)
	case t.Kind != RoleAssignmentDeleted || t.Scope == "":
		return false
	}
	const mg = "/providers/microsoft.management/managementgroups/"
	scope, id := strings.TrimRight(t.Scope, "/"), v.String()
	return len(scope) > len(mg) && resource.EqualFold(scope[:len(mg)], mg) ||
		len(id) > len(scope) && id[len(scope)] == '/' && resource.EqualFold(id[:len(scope)], scope)
}

// Classify maps an event to a Trigger. Unknown and unrelated events (Secret*
// and Certificate* Key Vault events, ARM failures, cancellations and actions,
// other ARM operations, role assignments on other resources) give Unrelated
// and no error. The error, wrapping ErrMalformed, is for a related event
// whose data is missing or malformed or names no vault; the Trigger then has
// Kind, Type, EventID and Time set.
func Classify(e Event) (Trigger, error) {
	t := Trigger{Kind: Unrelated, Type: e.Type, EventID: e.ID, Time: e.Time}
	var err error
	if kind, ok := lookup(types, e.Type); kind != "" && ok {
		t.Kind = kind
		err = classifyKeyVault(e, &t)
	} else if ok {
		err = classifyARM(e, &t)
	}
	if err != nil {
		err = fmt.Errorf("%s event %s: %w", alert.ScrubN(e.Type, 128), alert.ScrubN(e.ID, 128), err)
	}
	// These came from outside and may reach alerts, the state store, the
	// Status page and the logs: bound and scrub them once, here.
	for _, s := range []*string{&t.Type, &t.EventID, &t.Scope, &t.Object, &t.Version, &t.Actor} {
		*s = alert.Scrub(*s)
	}
	return t, err
}

func classifyKeyVault(e Event, t *Trigger) error {
	var d struct {
		ID, ObjectName, Version string
		NBF, EXP                epochSeconds
	}
	if err := decodeObject("data", e.Data, &d); err != nil {
		return err
	}
	v, err := resource.ParseID(e.Source)
	if err != nil {
		return malformed("source/topic: %v", err)
	}
	t.Vault, t.Scope = v, v.String()
	if t.Kind == AccessPolicyChanged {
		return nil
	}
	// Microsoft's documented sample spells "ObjectName " (trailing space):
	// fall back to the key id https://{vault}.vault.azure.net/keys/{name}/{version},
	// then to the subject, which is the object name.
	_, name, version, _ := resource.ParseKeyIdentifier(d.ID)
	t.Object, t.Version = cmp.Or(d.ObjectName, name, e.Subject), cmp.Or(d.Version, version)
	if t.Object == "" {
		return malformed("data names no key (ObjectName, Id and subject are empty)")
	}
	t.NotBefore, t.Expires = d.NBF.t, d.EXP.t
	return nil
}

// epochSeconds is a Unix time in whole seconds up to 9999-12-31, sent as a
// JSON number or (in Microsoft's documented sample) a numeric string; null,
// "" and 0 mean none. azsystemevents reads NBF and EXP as float32, which is
// off by up to a minute for current dates.
type epochSeconds struct{ t *time.Time }

func (s *epochSeconds) UnmarshalJSON(b []byte) error {
	str := strings.TrimSpace(strings.Trim(string(b), `"`))
	if str == "" || str == "null" {
		return nil
	}
	const maxEpoch = 253402300799 // 9999-12-31T23:59:59Z
	f, err := strconv.ParseFloat(str, 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f > maxEpoch {
		return fmt.Errorf("want epoch seconds, got %s", alert.ScrubN(string(b), 32))
	}
	if f > 0 {
		t := time.Unix(int64(f), 0).UTC()
		s.t = &t
	}
	return nil
}

// actorClaims name the caller, best first: the user principal name, then the
// application id, then the object id.
var actorClaims = [...]string{
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn", "unique_name", "email",
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "appid", "azp",
	"http://schemas.microsoft.com/identity/claims/objectidentifier", "oid",
}

func classifyARM(e Event, t *Trigger) error {
	var d struct {
		Claims                     map[string]json.RawMessage // the caller's token claims
		OperationName, ResourceURI string
	}
	if err := decodeObject("data", e.Data, &d); err != nil {
		return err
	}
	if t.Kind, _ = lookup(ops, d.OperationName); t.Kind == Unrelated {
		return nil
	}
	t.Operation = d.OperationName
	for _, name := range actorClaims {
		var v string
		if json.Unmarshal(d.Claims[name], &v) == nil && strings.TrimSpace(v) != "" {
			t.Actor = strings.TrimSpace(v)
			break
		}
	}
	uri := cmp.Or(d.ResourceURI, e.Subject)
	switch {
	case uri == "":
		return malformed("data has no resourceUri and the event no subject")
	case t.Kind == RoleAssignmentDeleted:
		return classifyRoleAssignment(uri, t)
	}
	v, err := resource.ParseID(uri)
	if err != nil {
		return malformed("resourceUri: %v", err)
	}
	t.Vault, t.Scope = v, v.String()
	if t.Kind == ConnectionChanged {
		if t.Object = connectionName(uri); t.Object == "" {
			return malformed("resourceUri %q names no private endpoint connection", alert.ScrubN(uri, 256))
		}
	}
	return nil
}

// classifyRoleAssignment reads the scope from the role assignment's ID
// ({scope}/providers/Microsoft.Authorization/roleAssignments/{name}).
func classifyRoleAssignment(uri string, t *Trigger) error {
	const seg = "/providers/microsoft.authorization/roleassignments/"
	i := len(uri) - len(seg)
	for ; i >= 0 && !resource.EqualFold(uri[i:i+len(seg)], seg); i-- {
	}
	if i < 0 {
		return malformed("resourceUri %q is not a role assignment", alert.ScrubN(uri, 256))
	}
	t.Scope = cmp.Or(uri[:i], "/") // "" is the tenant root
	if v, err := resource.ParseID(t.Scope); err == nil {
		t.Vault = v
	} else if !aboveVault(t.Scope) {
		// An assignment on some other resource cannot change access to a vault.
		*t = Trigger{Kind: Unrelated, Type: t.Type, EventID: t.EventID, Time: t.Time}
	}
	return nil
}

// aboveVault reports whether scope is the tenant root, a management group, a
// subscription or a resource group.
func aboveVault(scope string) bool {
	p := strings.Split(strings.Trim(scope, "/"), "/")
	is := func(i int, keyword string) bool { return resource.EqualFold(p[i], keyword) }
	switch len(p) {
	case 1:
		return p[0] == ""
	case 2:
		return is(0, "subscriptions") && p[1] != ""
	case 4:
		return p[1] != "" && p[3] != "" && (is(0, "subscriptions") && is(2, "resourceGroups") ||
			is(0, "providers") && is(1, "Microsoft.Management") && is(2, "managementGroups"))
	}
	return false
}

// connectionName returns the segment after privateEndpointConnections/ or
// privateEndpointConnectionProxies/ in an ARM ID, or "".
func connectionName(uri string) string {
	segs := strings.Split(strings.Trim(uri, "/"), "/")
	for i, s := range segs[:len(segs)-1] {
		if resource.EqualFold(s, "privateEndpointConnections") || resource.EqualFold(s, "privateEndpointConnectionProxies") {
			return segs[i+1]
		}
	}
	return ""
}
