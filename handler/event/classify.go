package event

import (
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
	// KeyNewVersion: Microsoft.KeyVault.KeyNewVersionCreated.
	KeyNewVersion Kind = "key-new-version"
	// KeyNearExpiry: Microsoft.KeyVault.KeyNearExpiry.
	KeyNearExpiry Kind = "key-near-expiry"
	// KeyExpired: Microsoft.KeyVault.KeyExpired.
	KeyExpired Kind = "key-expired"
	// AccessPolicyChanged: Microsoft.KeyVault.VaultAccessPolicyChanged.
	AccessPolicyChanged Kind = "access-policy-changed"
	// ConnectionChanged: ARM write or delete success on a vault's
	// privateEndpointConnections or privateEndpointConnectionProxies.
	ConnectionChanged Kind = "connection-changed"
	// VaultChanged: ARM Microsoft.KeyVault/vaults/write or /delete success.
	VaultChanged Kind = "vault-changed"
	// RoleAssignmentDeleted: ARM Microsoft.Authorization/roleAssignments/delete
	// success at a scope that can cover a vault (management group,
	// subscription, resource group, or the vault or something below it).
	RoleAssignmentDeleted Kind = "role-assignment-deleted"
	// Unrelated: anything else; the guard ignores it.
	Unrelated Kind = "unrelated"
)

// ARM operation names Classify recognises (compared case-insensitively).
const (
	OpConnectionWrite       = "Microsoft.KeyVault/vaults/privateEndpointConnections/write"
	OpConnectionDelete      = "Microsoft.KeyVault/vaults/privateEndpointConnections/delete"
	OpConnectionProxyWrite  = "Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/write"
	OpConnectionProxyDelete = "Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/delete"
	OpVaultWrite            = "Microsoft.KeyVault/vaults/write"
	OpVaultDelete           = "Microsoft.KeyVault/vaults/delete"
	OpRoleAssignmentDelete  = "Microsoft.Authorization/roleAssignments/delete"
)

// The event types Classify recognises, exactly as Event Grid spells them (the
// tests hold them equal to azsystemevents' names).
var keyVaultKinds = [...]struct {
	typ  string
	kind Kind
}{
	{"Microsoft.KeyVault.KeyNewVersionCreated", KeyNewVersion},
	{"Microsoft.KeyVault.KeyNearExpiry", KeyNearExpiry},
	{"Microsoft.KeyVault.KeyExpired", KeyExpired},
	{"Microsoft.KeyVault.VaultAccessPolicyChanged", AccessPolicyChanged},
}

var armTypes = [...]string{"Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources.ResourceDeleteSuccess"}

var armOps = [...]struct {
	op   string
	kind Kind
}{
	{OpConnectionWrite, ConnectionChanged},
	{OpConnectionDelete, ConnectionChanged},
	{OpConnectionProxyWrite, ConnectionChanged},
	{OpConnectionProxyDelete, ConnectionChanged},
	{OpVaultWrite, VaultChanged},
	{OpVaultDelete, VaultChanged},
	{OpRoleAssignmentDelete, RoleAssignmentDeleted},
}

// KeyVaultEventTypes returns the Key Vault system-topic event types Classify
// maps to a Kind other than Unrelated, exactly as Event Grid spells them. The
// Key Vault event subscription should include exactly these.
func KeyVaultEventTypes() []string {
	out := make([]string, len(keyVaultKinds))
	for i, k := range keyVaultKinds {
		out[i] = k.typ
	}
	return out
}

// ARMEventTypes returns the resource-group system-topic event types Classify
// can map to a Kind other than Unrelated: ResourceWriteSuccess and
// ResourceDeleteSuccess. ResourceActionSuccess is deliberately absent: no
// action changes a vault's connections, the vault or a role assignment (the
// approval itself is a privateEndpointConnections/write, and
// privateEndpointConnectionProxies/validate/action precedes the proxy write
// that is classified), so Classify maps every action event to Unrelated.
func ARMEventTypes() []string { return slices.Clone(armTypes[:]) }

// ARMOperations returns the ARM operation names (data.operationName) Classify
// maps to a Kind other than Unrelated, exactly as ARM spells them; the
// resource-group event subscription's operationName filter should hold
// exactly these.
func ARMOperations() []string {
	out := make([]string, len(armOps))
	for i, o := range armOps {
		out[i] = o.op
	}
	return out
}

// Trigger is what the guard takes from one event: which vault or scope to look
// at, and who did what when, for alerts. Fields that an event kind does not
// carry are zero.
//
// Every string field came from outside: Classify bounds it (alert.MaxMessage
// bytes) and scrubs it (alert.Scrub) before anything else sees it.
type Trigger struct {
	Kind Kind
	// Type is the event type as sent; EventID the event's id; Time its time.
	Type    string
	EventID string
	Time    time.Time
	// Vault is the vault the event is about; zero for a role assignment whose
	// scope is above a vault (resource group, subscription, management group).
	Vault resource.ID
	// Scope is the ARM scope the event touches: the vault's resource ID, or
	// for RoleAssignmentDeleted the assignment's scope as ARM sent it (vault,
	// resource below it, resource group, subscription or management group ID).
	Scope string
	// Object is the key name (Key* kinds) or the connection / connection
	// proxy name (ConnectionChanged); empty otherwise.
	Object string
	// Version is the key version (Key* kinds); empty otherwise.
	Version string
	// Operation is the ARM operationName as sent (ARM kinds); empty otherwise.
	Operation string
	// Actor is who did it (ARM kinds), from the caller's token claims: the
	// user principal name (upn, unique_name, email or the name claim), else
	// the application id (appid, azp), else the object id (oid); "" when
	// unknown and for Key Vault events, which carry no caller.
	Actor string
	// NotBefore and Expires are the key version's NBF and EXP (Key* kinds),
	// exact to the second, in UTC; nil when the event carries none.
	NotBefore, Expires *time.Time
}

// Covers reports whether t concerns vault v: the trigger names v, or (for
// RoleAssignmentDeleted above a vault) its scope is an ancestor of v. Unrelated
// triggers cover nothing. ARM IDs are compared ASCII case-insensitively.
func (t Trigger) Covers(v resource.ID) bool {
	switch {
	case t.Kind == Unrelated || t.Kind == "" || v.IsZero():
		return false
	case !t.Vault.IsZero():
		return t.Vault.Equal(v)
	case t.Kind == RoleAssignmentDeleted && t.Scope != "":
		scope := strings.TrimRight(t.Scope, "/")
		const mg = "/providers/microsoft.management/managementgroups/"
		if len(scope) > len(mg) && resource.EqualFold(scope[:len(mg)], mg) {
			// Which subscriptions a management group holds is not in the
			// event: treat it as covering every vault.
			return true
		}
		id := v.String()
		return len(id) > len(scope) && id[len(scope)] == '/' && resource.EqualFold(id[:len(scope)], scope)
	}
	return false
}

// Classify maps an event to a Trigger. Unknown and unrelated event types
// (Secret* and Certificate* Key Vault events, ARM failures, cancellations and
// actions, ARM operations not in ARMOperations, role assignments on resources
// other than vaults) give Kind Unrelated and a nil error. The error, wrapping
// ErrMalformed, is only for a related type whose data is missing or malformed
// or that does not name a vault; the returned Trigger then has Kind, Type,
// EventID and Time set.
func Classify(e Event) (Trigger, error) {
	t, err := classify(e)
	// Everything below came from outside and may reach an alert, the state
	// store, the Status page and the logs: bound and scrub it once, here.
	for _, s := range []*string{&t.Type, &t.EventID, &t.Scope, &t.Object, &t.Version, &t.Actor} {
		*s = alert.Scrub(*s)
	}
	return t, err
}

func classify(e Event) (Trigger, error) {
	t := Trigger{Kind: Unrelated, Type: e.Type, EventID: e.ID, Time: e.Time}
	for _, k := range keyVaultKinds {
		if resource.EqualFold(e.Type, k.typ) {
			t.Kind = k.kind
			if err := classifyKeyVault(e, &t); err != nil {
				return t, fmt.Errorf("%s event %s: %w", truncate(e.Type, 128), truncate(e.ID, 128), err)
			}
			return t, nil
		}
	}
	for _, typ := range armTypes {
		if resource.EqualFold(e.Type, typ) {
			if err := classifyARM(e, &t); err != nil {
				return t, fmt.Errorf("%s event %s: %w", truncate(e.Type, 128), truncate(e.ID, 128), err)
			}
			return t, nil
		}
	}
	return t, nil
}

// keyVaultData is the data of the Key Vault system events. NBF and EXP are
// epoch seconds; azsystemevents reads them as float32, which is off by up to
// a minute for current dates.
type keyVaultData struct {
	ID         string       `json:"Id"`
	VaultName  string       `json:"VaultName"`
	ObjectType string       `json:"ObjectType"`
	ObjectName string       `json:"ObjectName"`
	Version    string       `json:"Version"`
	NBF        epochSeconds `json:"NBF"`
	EXP        epochSeconds `json:"EXP"`
}

// eventData decodes the event's data, which must be an object, into v.
func eventData(e Event, v any) error {
	if e.Data == nil {
		return malformed("missing data")
	}
	if e.Data[0] != '{' {
		return malformed("data: want an object, got %s", kindOf(e.Data))
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return malformed("data: %v", jsonError(err))
	}
	return nil
}

func classifyKeyVault(e Event, t *Trigger) error {
	var d keyVaultData
	if err := eventData(e, &d); err != nil {
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
	// Microsoft's documented sample spells the field "ObjectName " (trailing
	// space); fall back to the object id https://{vault}.vault.azure.net/keys/{name}/{version},
	// then to the subject, which is the object name.
	t.Object, t.Version = d.ObjectName, d.Version
	if t.Object == "" || t.Version == "" {
		if _, name, ver, err := resource.ParseKeyIdentifier(d.ID); err == nil {
			t.Object = orElse(t.Object, name)
			t.Version = orElse(t.Version, ver)
		}
	}
	t.Object = orElse(t.Object, e.Subject)
	if t.Object == "" {
		return malformed("data names no key (ObjectName, Id and subject are empty)")
	}
	t.NotBefore, t.Expires = d.NBF.time(), d.EXP.time()
	return nil
}

func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// epochSeconds is a Unix time in seconds, sent as a JSON number or (in
// Microsoft's documented sample) a numeric string. null, "" and 0 mean none.
type epochSeconds struct {
	set bool
	sec int64
}

// maxEpoch is 9999-12-31T23:59:59Z.
const maxEpoch = 253402300799

func (s *epochSeconds) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(str))
		if len(b) == 0 {
			return nil
		}
	}
	if string(b) == "null" {
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > maxEpoch {
			return fmt.Errorf("want epoch seconds, got %s", truncate(string(b), 32))
		}
		n = int64(f)
	}
	if n < 0 || n > maxEpoch {
		return fmt.Errorf("epoch seconds %d out of range", n)
	}
	*s = epochSeconds{set: n != 0, sec: n}
	return nil
}

func (s epochSeconds) time() *time.Time {
	if !s.set {
		return nil
	}
	t := time.Unix(s.sec, 0).UTC()
	return &t
}

// armData is the part of the ARM (resource group / subscription) event data
// the guard uses. Claims are the caller's token claims as ARM forwards them.
type armData struct {
	Claims        map[string]json.RawMessage `json:"claims"`
	OperationName string                     `json:"operationName"`
	ResourceURI   string                     `json:"resourceUri"`
}

// actorClaims name the caller, in order of preference: the user principal
// name, then the application id, then the object id.
var actorClaims = [...]string{
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn", "unique_name", "email",
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "appid", "azp",
	"http://schemas.microsoft.com/identity/claims/objectidentifier", "oid",
}

// actor returns the first non-blank string claim of actorClaims; claims of
// other JSON types are skipped.
func actor(claims map[string]json.RawMessage) string {
	for _, name := range actorClaims {
		var v string
		if json.Unmarshal(claims[name], &v) == nil && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

const roleAssignmentsSeg = "/providers/microsoft.authorization/roleassignments/"

func classifyARM(e Event, t *Trigger) error {
	var d armData
	if err := eventData(e, &d); err != nil {
		return err
	}
	for _, o := range armOps {
		if resource.EqualFold(d.OperationName, o.op) {
			t.Kind = o.kind
			break
		}
	}
	if t.Kind == Unrelated {
		return nil
	}
	t.Operation = d.OperationName
	t.Actor = actor(d.Claims)
	uri := orElse(d.ResourceURI, e.Subject)
	if uri == "" {
		return malformed("data has no resourceUri and the event no subject")
	}
	if t.Kind == RoleAssignmentDeleted {
		return classifyRoleAssignment(uri, t)
	}
	v, err := resource.ParseID(uri)
	if err != nil {
		return malformed("resourceUri: %v", err)
	}
	t.Vault, t.Scope = v, v.String()
	if t.Kind == ConnectionChanged {
		t.Object = connectionName(uri)
		if t.Object == "" {
			return malformed("resourceUri %q names no private endpoint connection", truncate(uri, 256))
		}
	}
	return nil
}

// classifyRoleAssignment reads the scope from the role assignment's ID
// ({scope}/providers/Microsoft.Authorization/roleAssignments/{name}).
func classifyRoleAssignment(uri string, t *Trigger) error {
	i := len(uri) - len(roleAssignmentsSeg)
	for ; i >= 0 && !resource.EqualFold(uri[i:i+len(roleAssignmentsSeg)], roleAssignmentsSeg); i-- {
	}
	if i < 0 {
		return malformed("resourceUri %q is not a role assignment", truncate(uri, 256))
	}
	scope := uri[:i]
	if scope == "" {
		scope = "/" // tenant root
	}
	t.Scope = scope
	if v, err := resource.ParseID(scope); err == nil {
		t.Vault = v
		return nil
	}
	if !aboveVault(scope) {
		// A role assignment on some other resource cannot change access to a
		// vault.
		*t = Trigger{Kind: Unrelated, Type: t.Type, EventID: t.EventID, Time: t.Time}
	}
	return nil
}

// aboveVault reports whether scope is the tenant root, a management group, a
// subscription or a resource group.
func aboveVault(scope string) bool {
	parts := strings.Split(strings.Trim(scope, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "":
		return true
	case len(parts) == 4 && resource.EqualFold(parts[0], "providers") &&
		resource.EqualFold(parts[1], "Microsoft.Management") && resource.EqualFold(parts[2], "managementGroups"):
		return true
	case len(parts) == 2 && resource.EqualFold(parts[0], "subscriptions"):
		return parts[1] != ""
	case len(parts) == 4 && resource.EqualFold(parts[0], "subscriptions") && resource.EqualFold(parts[2], "resourceGroups"):
		return parts[1] != "" && parts[3] != ""
	}
	return false
}

// connectionName returns the segment after privateEndpointConnections/ or
// privateEndpointConnectionProxies/ in an ARM ID, or "".
func connectionName(uri string) string {
	rest := strings.Trim(uri, "/")
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if !more {
			return ""
		}
		if resource.EqualFold(seg, "privateEndpointConnections") ||
			resource.EqualFold(seg, "privateEndpointConnectionProxies") {
			name, _, _ := strings.Cut(tail, "/")
			return name
		}
		rest = tail
	}
}
