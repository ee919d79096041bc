package world

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// Functions the host invokes.
const (
	FunctionKeyVaultEvents    = "KeyVaultEvents"
	FunctionPrivateLinkEvents = "PrivateLinkEvents"
	FunctionReconcile         = "Reconcile"
)

// Event types and ARM operations the world publishes.
const (
	typeWrite               = "Microsoft.Resources.ResourceWriteSuccess"
	typeDelete              = "Microsoft.Resources.ResourceDeleteSuccess"
	typeKeyNewVersion       = "Microsoft.KeyVault.KeyNewVersionCreated"
	typeKeyNearExpiry       = "Microsoft.KeyVault.KeyNearExpiry"
	typeKeyExpired          = "Microsoft.KeyVault.KeyExpired"
	typeAccessPolicyChanged = "Microsoft.KeyVault.VaultAccessPolicyChanged"
	opConnWrite             = "Microsoft.KeyVault/vaults/privateEndpointConnections/write"
	opConnDelete            = "Microsoft.KeyVault/vaults/privateEndpointConnections/delete"
	opProxyWrite            = "Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/write"
	opRoleAssignmentDelete  = "Microsoft.Authorization/roleAssignments/delete"
)

// Event is one Event Grid event (Event Grid schema) for one function.
type Event struct {
	Function string
	ID       string
	Type     string
	Subject  string
	// JSON is the event as Event Grid delivers it to the host.
	JSON []byte
}

// String describes the event for the timeline.
func (e Event) String() string {
	subj := e.Subject
	if i := strings.LastIndexByte(subj, '/'); i >= 0 {
		subj = subj[i+1:]
	}
	return fmt.Sprintf("%s %s", strings.TrimPrefix(strings.TrimPrefix(e.Type, "Microsoft.Resources."), "Microsoft.KeyVault."), Short(subj))
}

// actor is who an ARM event says made the call: its token claims and the
// authorization evidence.
type actor struct {
	claims        map[string]string
	principalID   string
	principalType string
	role          string
}

func userActor(u User) actor {
	return actor{
		claims: map[string]string{
			"aud": "https://management.core.windows.net/", "appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "appidacr": "2",
			"name": u.Name, "ipaddr": "203.0.113.24", "ver": "1.0",
			"http://schemas.microsoft.com/identity/claims/objectidentifier": u.ObjectID,
			"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name":    u.UPN,
			"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":     u.UPN,
			"http://schemas.microsoft.com/identity/claims/scope":            "user_impersonation",
		},
		principalID: strings.ReplaceAll(u.ObjectID, "-", ""), principalType: "User", role: "Key Vault Contributor",
	}
}

func managedIdentityActor(clientID, objectID string, v resource.ID) actor {
	return actor{
		claims: map[string]string{
			"aud": "https://management.azure.com/", "appid": clientID, "appidacr": "2", "idtyp": "app", "ver": "1.0",
			"http://schemas.microsoft.com/identity/claims/objectidentifier": objectID,
			"xms_mirid": "/subscriptions/" + v.SubscriptionID + "/resourceGroups/" + v.ResourceGroup + "/providers/Microsoft.Web/sites/func-atlas-akv-guard",
		},
		principalID: strings.ReplaceAll(objectID, "-", ""), principalType: "ServicePrincipal", role: "atlas-akv-guard connection approver",
	}
}

// atlasActor is Atlas's multi-tenant application writing the connection
// proxy for the private endpoint it creates in its own subscription.
func atlasActor() actor {
	return actor{
		claims: map[string]string{
			"aud": "https://management.azure.com", "azp": "0f9d3b7a-1e5c-4a2b-8d6f-9c3e1a7b5d24", "azpacr": "1", "idtyp": "app",
			"oid": "4c1a7e9b-2d5f-4b3e-8a6c-0e9d2f1b7a53", "ver": "2.0",
		},
		principalID: "4c1a7e9b2d5f4b3e8a6c0e9d2f1b7a53", principalType: "ServicePrincipal", role: "Key Vault Contributor",
	}
}

func strangerActor() actor {
	return userActor(User{Name: "Mallory Stranger", UPN: "mallory@fabrikam.example", ObjectID: "9d0e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"})
}

// armEvent builds the resource-group system topic event for an ARM write or
// delete on a vault child resource (privateEndpointConnections/…).
func armEvent(v resource.ID, child, name, operation, eventType string, who actor, at time.Time) Event {
	uri := v.String() + "/" + child + "/" + name
	method := "PUT"
	if eventType == typeDelete {
		method = "DELETE"
	}
	return armEventAt(v, uri, operation, eventType, method, who, at)
}

func armEventAt(v resource.ID, uri, operation, eventType, method string, who actor, at time.Time) Event {
	rg := "/subscriptions/" + v.SubscriptionID + "/resourceGroups/" + v.ResourceGroup
	provider := "Microsoft.KeyVault"
	if strings.HasPrefix(operation, "Microsoft.Authorization/") {
		provider = "Microsoft.Authorization"
	}
	id := guid()
	ev := map[string]any{
		"subject":   uri,
		"eventType": eventType,
		"id":        id,
		"data": map[string]any{
			"authorization": map[string]any{
				"scope":  uri,
				"action": operation,
				"evidence": map[string]any{
					"role": who.role, "roleAssignmentScope": rg, "roleAssignmentId": randHex(16),
					"roleDefinitionId": randHex(16), "principalId": who.principalID, "principalType": who.principalType,
				},
			},
			"claims":        who.claims,
			"correlationId": guid(),
			"httpRequest": map[string]any{
				"clientRequestId": "", "clientIpAddress": "203.0.113.24", "method": method,
				"url": "https://management.azure.com" + uri + "?api-version=2023-07-01",
			},
			"resourceProvider": provider,
			"resourceUri":      uri,
			"operationName":    operation,
			"status":           "Succeeded",
			"subscriptionId":   v.SubscriptionID,
			"tenantId":         "5e1b7c3d-9a2f-4c8e-b6d4-0f3a2e9c7b51",
		},
		"dataVersion":     "2",
		"metadataVersion": "1",
		"eventTime":       at.UTC().Format(time.RFC3339Nano),
		"topic":           rg,
	}
	b, _ := json.Marshal(ev)
	return Event{Function: FunctionPrivateLinkEvents, ID: id, Type: eventType, Subject: uri, JSON: b}
}

func roleAssignmentDeleted(v resource.ID, who actor) Event {
	uri := v.String() + "/providers/Microsoft.Authorization/roleAssignments/" + guid()
	return armEventAt(v, uri, opRoleAssignmentDelete, typeDelete, "DELETE", who, time.Now())
}

// keyVaultEvent builds a Key Vault system topic event. For key events
// object is the key name; for VaultAccessPolicyChanged the vault name.
func keyVaultEvent(v resource.ID, eventType, object, version string, exp time.Time) Event {
	id := guid()
	data := map[string]any{
		"Id":         "https://" + v.Name + ".vault.azure.net/keys/" + object + "/" + version,
		"VaultName":  v.Name,
		"ObjectType": "Key",
		"ObjectName": object,
		"Version":    version,
		"NBF":        time.Now().Add(-time.Hour).Unix(),
		"EXP":        exp.Unix(),
	}
	if eventType == typeAccessPolicyChanged {
		data = map[string]any{
			"Id": "https://" + v.Name + ".vault.azure.net/", "VaultName": v.Name, "ObjectType": "Vault",
			"ObjectName": v.Name, "Version": nil, "NBF": nil, "EXP": nil,
		}
	}
	ev := map[string]any{
		"id":              id,
		"topic":           v.String(),
		"subject":         object,
		"eventType":       eventType,
		"data":            data,
		"dataVersion":     "1",
		"metadataVersion": "1",
		"eventTime":       time.Now().UTC().Format(time.RFC3339Nano),
	}
	b, _ := json.Marshal(ev)
	return Event{Function: FunctionKeyVaultEvents, ID: id, Type: eventType, Subject: object, JSON: b}
}

// ForgedConnectionEvent builds an ARM event that claims connection name on
// p's vault was written: as a forger would send it.
func (w *World) ForgedConnectionEvent(p *Project, name string) Event {
	return armEvent(p.Vault, "privateEndpointConnections", name, opConnWrite, typeWrite, strangerActor(), time.Now())
}

// ConnectionEvent builds the ARM event for a write of connection name on
// p's vault by who, at the given time (for replays and reordering).
func (w *World) ConnectionEvent(p *Project, name string, who User, at time.Time) Event {
	return armEvent(p.Vault, "privateEndpointConnections", name, opConnWrite, typeWrite, userActor(who), at)
}

// ---- delivery -----------------------------------------------------------

type queued struct{ ev Event }

// SetEvents switches Event Grid delivery on or off; while off, published
// events are dropped (the timer is then the only path).
func (w *World) SetEvents(on bool) {
	w.mu.Lock()
	w.events = on
	w.mu.Unlock()
	w.Logf(SourceWorld, "Event Grid delivery %s", onOff(on))
}

// SetTimer switches the Reconcile timer on or off.
func (w *World) SetTimer(on bool) {
	w.mu.Lock()
	w.timerOn = on
	w.mu.Unlock()
	w.Logf(SourceWorld, "Reconcile timer %s", onOff(on))
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// Emit publishes an event: queued for delivery to the guards, or dropped
// while delivery is off.
func (w *World) Emit(ev Event) {
	w.mu.Lock()
	on := w.events
	w.mu.Unlock()
	if !on {
		w.Logf(SourceAzure, "event %s not delivered (Event Grid delivery off)", ev)
		return
	}
	select {
	case w.queue <- queued{ev}:
	default:
		w.Logf(SourceAzure, "event %s dropped (queue full)", ev)
	}
}

// deliveryLoop delivers queued events, several at once as Event Grid does
// (so one slow invocation does not hold the others back).
func (w *World) deliveryLoop(ctx context.Context) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case q := <-w.queue:
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				w.deliverWithRetry(ctx, q.ev)
			})
		}
	}
}

// deliverWithRetry delivers like Event Grid: retried with backoff while the
// handler answers non-2xx, up to a few attempts.
func (w *World) deliverWithRetry(ctx context.Context, ev Event) {
	wait := w.opts.Minute / 2
	for attempt := 1; attempt <= 6; attempt++ {
		w.mu.Lock()
		running := len(w.guards) > 0
		w.mu.Unlock()
		if !running {
			w.Logf(SourceAzure, "event %s not delivered: no handler running", ev)
			return
		}
		if attempt == 1 { // before the delivery, so before what it causes
			w.Logf(SourceAzure, "Event Grid → %s: %s", ev.Function, ev)
		}
		res, err := w.Deliver(ctx, ev)
		if err == nil && allOK(res) {
			return
		}
		w.Logf(SourceAzure, "Event Grid → %s: %s failed (%s), retrying", ev.Function, ev, statusesOrErr(res, err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
	w.Logf(SourceAzure, "event %s dead-lettered", ev)
}

// Result is a guard's answer to one invocation.
type Result struct {
	Guard    string
	Status   int // 0 when there was no answer
	Body     []byte
	Err      error
	Duration time.Duration
}

func allOK(rs []Result) bool {
	for _, r := range rs {
		if r.Status/100 != 2 {
			return false
		}
	}
	return true
}

func statuses(rs []Result) string {
	var parts []string
	for _, r := range rs {
		if r.Status == 0 {
			parts = append(parts, r.Guard+": no answer")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: %d in %dms", r.Guard, r.Status, r.Duration.Milliseconds()))
	}
	return strings.Join(parts, ", ")
}

func statusesOrErr(rs []Result, err error) string {
	if err != nil {
		return err.Error()
	}
	return statuses(rs)
}

// Deliver invokes ev's function on every running guard at once, as the
// Functions host would (string-wrapped event, an invocation id), and
// returns their answers. It does not retry.
func (w *World) Deliver(ctx context.Context, ev Event) ([]Result, error) {
	return w.invokeAll(ctx, ev.Function, hostBody(ev))
}

// hostBody is the invocation body the Functions host sends for an Event Grid
// trigger: the event serialised to a string, in the "event" binding.
func hostBody(ev Event) []byte {
	s, _ := json.Marshal(string(ev.JSON))
	return fmt.Appendf(nil, `{"Data":{"event":%s},"Metadata":{"sys":{"MethodName":%q,"UtcNow":%q,"RandGuid":%q}}}`,
		s, ev.Function, time.Now().UTC().Format(time.RFC3339Nano), guid())
}

// DeliverTo invokes ev's function on guard g only.
func (w *World) DeliverTo(ctx context.Context, g *Guard, ev Event) Result {
	return w.invoke(ctx, g, ev.Function, hostBody(ev))
}

// Tick fires the Reconcile timer once on every running guard at once and
// returns their answers.
func (w *World) Tick(ctx context.Context) ([]Result, error) {
	return w.invokeAll(ctx, FunctionReconcile, timerBody(w.opts.TimerEvery))
}

// TickGuard fires the Reconcile timer once on guard g.
func (w *World) TickGuard(ctx context.Context, g *Guard) Result {
	return w.invoke(ctx, g, FunctionReconcile, timerBody(w.opts.TimerEvery))
}

func timerBody(every time.Duration) []byte {
	now := time.Now().UTC()
	return fmt.Appendf(nil, `{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":%q,"Next":%q,"LastUpdated":%q},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"Reconcile","UtcNow":%q,"RandGuid":%q}}}`,
		now.Add(-every).Format(time.RFC3339Nano), now.Add(every).Format(time.RFC3339Nano), now.Add(-every).Format(time.RFC3339Nano),
		now.Format(time.RFC3339Nano), guid())
}

func (w *World) invokeAll(ctx context.Context, function string, body []byte) ([]Result, error) {
	w.mu.Lock()
	guards := append([]*Guard(nil), w.guards...)
	w.mu.Unlock()
	if len(guards) == 0 {
		return nil, errNoGuard
	}
	res := make([]Result, len(guards))
	var wg sync.WaitGroup
	for i, g := range guards {
		wg.Go(func() { res[i] = w.invoke(ctx, g, function, body) })
	}
	wg.Wait()
	return res, nil
}

func (w *World) invoke(ctx context.Context, g *Guard, function string, body []byte) Result {
	start := time.Now()
	r := Result{Guard: g.name}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL()+"/"+function, bytes.NewReader(body))
	if err != nil {
		r.Err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-InvocationId", guid())
	resp, err := w.client.Do(req)
	r.Duration = time.Since(start)
	if err != nil {
		r.Err = err
		return r
	}
	defer resp.Body.Close()
	r.Status = resp.StatusCode
	r.Body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return r
}

// timerLoop fires the Reconcile timer every TimerEvery (world time) while
// it is on; like the host's singleton timer, one invocation at a time.
func (w *World) timerLoop(ctx context.Context) {
	t := time.NewTicker(w.Real(w.opts.TimerEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		on := w.timerOn && len(w.guards) > 0
		w.mu.Unlock()
		if !on {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, time.Minute)
		res, err := w.Tick(tctx)
		cancel()
		if err == nil && !allOK(res) && ctx.Err() == nil {
			w.Logf(SourceAzure, "timer → Reconcile: %s", statuses(res))
		}
	}
}
