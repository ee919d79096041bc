package world

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
)

// Event types, ARM operations and identities of the events the world
// publishes.
const (
	typeWrite              = "Microsoft.Resources.ResourceWriteSuccess"
	typeDelete             = "Microsoft.Resources.ResourceDeleteSuccess"
	typeKeyNewVersion      = "Microsoft.KeyVault.KeyNewVersionCreated"
	typeKeyNearExpiry      = "Microsoft.KeyVault.KeyNearExpiry"
	typeKeyExpired         = "Microsoft.KeyVault.KeyExpired"
	opConnWrite            = "Microsoft.KeyVault/vaults/privateEndpointConnections/write"
	opConnDelete           = "Microsoft.KeyVault/vaults/privateEndpointConnections/delete"
	opProxyWrite           = "Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/write"
	opRoleAssignmentDelete = "Microsoft.Authorization/roleAssignments/delete"
	atlasSubscription      = "a7c3e1f9-5b2d-4e8a-9f6c-1d3b5e7a9c20" // where Atlas's private endpoints live
	tenantID               = "5e1b7c3d-9a2f-4c8e-b6d4-0f3a2e9c7b51"
)

// Event is one Event Grid event (Event Grid schema) for one function.
type Event struct {
	Function string // KeyVaultEvents or PrivateLinkEvents
	Type     string
	Subject  string
	JSON     []byte // the event as Event Grid hands it to the host
}

// String describes the event for the timeline.
func (e Event) String() string {
	typ := e.Type[strings.LastIndexByte(e.Type, '.')+1:]
	return typ + " " + Short(e.Subject[strings.LastIndexByte(e.Subject, '/')+1:])
}

// actor is who an ARM event says made the call: token claims and the
// authorization evidence.
type actor struct {
	claims                  map[string]string
	principalID, kind, role string
}

func userActor(u User) actor {
	return actor{map[string]string{
		"aud": "https://management.core.windows.net/", "appid": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "appidacr": "2",
		"name": u.Name, "ipaddr": "203.0.113.24", "ver": "1.0", "http://schemas.microsoft.com/identity/claims/scope": "user_impersonation",
		"http://schemas.microsoft.com/identity/claims/objectidentifier": u.ObjectID,
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name":    u.UPN,
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":     u.UPN,
	}, strings.ReplaceAll(u.ObjectID, "-", ""), "User", "Key Vault Contributor"}
}

func managedIdentityActor(clientID, objectID string, v resource.ID) actor {
	return actor{map[string]string{
		"aud": "https://management.azure.com/", "appid": clientID, "appidacr": "2", "idtyp": "app", "ver": "1.0",
		"http://schemas.microsoft.com/identity/claims/objectidentifier": objectID,
		"xms_mirid": "/subscriptions/" + v.SubscriptionID + "/resourceGroups/" + v.ResourceGroup + "/providers/Microsoft.Web/sites/func-atlas-akv-guard",
	}, strings.ReplaceAll(objectID, "-", ""), "ServicePrincipal", "atlas-akv-guard connection approver"}
}

var (
	// atlasActor is Atlas's multi-tenant application writing the connection
	// proxy for the private endpoint it creates in its own subscription.
	atlasActor = actor{map[string]string{
		"aud": "https://management.azure.com", "azp": "0f9d3b7a-1e5c-4a2b-8d6f-9c3e1a7b5d24", "azpacr": "1", "idtyp": "app",
		"oid": "4c1a7e9b-2d5f-4b3e-8a6c-0e9d2f1b7a53", "ver": "2.0",
	}, "4c1a7e9b2d5f4b3e8a6c0e9d2f1b7a53", "ServicePrincipal", "Key Vault Contributor"}
	mallory = User{Name: "Mallory Stranger", UPN: "mallory@fabrikam.example", ObjectID: "9d0e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"}
)

// connEvent is the ARM event for operation (…/privateEndpointConnections/write,
// …Proxies/write, …/delete) on connection name of vault v.
func connEvent(v resource.ID, name, operation string, who actor, at time.Time) Event {
	child := operation[strings.Index(operation, "vaults/")+len("vaults/") : strings.LastIndexByte(operation, '/')]
	return armEvent(v, v.String()+"/"+child+"/"+name, operation, who, at)
}

// armEvent is the resource group system topic event for an ARM operation on
// uri (a resource in v's resource group) that succeeded.
func armEvent(v resource.ID, uri, operation string, who actor, at time.Time) Event {
	rg := "/subscriptions/" + v.SubscriptionID + "/resourceGroups/" + v.ResourceGroup
	typ, method := typeWrite, "PUT"
	if strings.HasSuffix(operation, "/delete") {
		typ, method = typeDelete, "DELETE"
	}
	provider, _, _ := strings.Cut(operation, "/")
	return newEvent(FunctionPrivateLinkEvents, typ, uri, rg, "2", at, map[string]any{
		"authorization": map[string]any{"scope": uri, "action": operation, "evidence": map[string]any{
			"role": who.role, "roleAssignmentScope": rg, "roleAssignmentId": simtest.RandHex(16),
			"roleDefinitionId": simtest.RandHex(16), "principalId": who.principalID, "principalType": who.kind,
		}},
		"claims": who.claims, "correlationId": guid(),
		"httpRequest": map[string]any{"clientRequestId": "", "clientIpAddress": "203.0.113.24", "method": method,
			"url": "https://management.azure.com" + uri + "?api-version=2023-07-01"},
		"resourceProvider": provider, "resourceUri": uri, "operationName": operation, "status": "Succeeded",
		"subscriptionId": v.SubscriptionID, "tenantId": tenantID,
	})
}

// keyEvent is a Key Vault system topic event about version of p's key.
func keyEvent(p *Project, eventType, version string, exp time.Time) Event {
	v := p.Vault
	return newEvent(FunctionKeyVaultEvents, eventType, p.KeyName, v.String(), "1", time.Now(), map[string]any{
		"Id": "https://" + v.Name + ".vault.azure.net/keys/" + p.KeyName + "/" + version, "VaultName": v.Name,
		"ObjectType": "Key", "ObjectName": p.KeyName, "Version": version, "NBF": time.Now().Add(-time.Hour).Unix(), "EXP": exp.Unix(),
	})
}

func newEvent(function, eventType, subject, topic, dataVersion string, at time.Time, data map[string]any) Event {
	b, _ := json.Marshal(map[string]any{"id": guid(), "topic": topic, "subject": subject, "eventType": eventType, "data": data,
		"dataVersion": dataVersion, "metadataVersion": "1", "eventTime": at.UTC().Format(time.RFC3339Nano)})
	return Event{Function: function, Type: eventType, Subject: subject, JSON: b}
}

// ForgedConnectionEvent is an ARM event claiming that connection name on p's
// vault was written, as a forger would send it.
func (w *World) ForgedConnectionEvent(p *Project, name string) Event {
	return connEvent(p.Vault, name, opConnWrite, userActor(mallory), time.Now())
}

// ConnectionEvent is the ARM event for a write of connection name on p's
// vault by who at a given time (for replays and reordering).
func (w *World) ConnectionEvent(p *Project, name string, who User, at time.Time) Event {
	return connEvent(p.Vault, name, opConnWrite, userActor(who), at)
}

// ---- delivery through the host contract ---------------------------------

// Functions the host invokes.
const (
	FunctionKeyVaultEvents    = "KeyVaultEvents"
	FunctionPrivateLinkEvents = "PrivateLinkEvents"
	FunctionReconcile         = "Reconcile"
)

// SetEvents switches Event Grid delivery on or off; while off, published
// events are dropped (the timer is then the only path).
func (w *World) SetEvents(on bool) { w.set(&w.events, on, "Event Grid delivery") }

// SetTimer switches the Reconcile timer on or off.
func (w *World) SetTimer(on bool) { w.set(&w.timerOn, on, "Reconcile timer") }

func (w *World) set(flag *bool, on bool, what string) {
	w.with(func() { *flag = on })
	w.Logf(SourceWorld, "%s %s", what, map[bool]string{false: "off", true: "on"}[on])
}

// Emit publishes ev as Event Grid would: delivered to every running guard
// at once in the background and redelivered with backoff (up to 6 attempts)
// while one answers non-2xx. While delivery is off it is dropped.
func (w *World) Emit(ev Event) {
	w.mu.Lock()
	on := w.events && w.ctx.Err() == nil
	if on {
		w.wg.Add(1)
	}
	w.mu.Unlock()
	if !on {
		w.Logf(SourceAzure, "event %s not delivered (Event Grid delivery off)", ev)
		return
	}
	go func() {
		defer w.wg.Done()
		wait := w.opts.Minute / 2
		for attempt := range 6 {
			if locked(w, func() bool { return len(w.guards) == 0 }) {
				w.Logf(SourceAzure, "event %s not delivered: no handler running", ev)
				return
			}
			if attempt == 0 { // before the delivery, so before what it causes
				w.Logf(SourceAzure, "Event Grid → %s: %s", ev.Function, ev)
			}
			why := failed(w.invokeAll(w.ctx, ev.Function, eventBody(ev)))
			if why == "" {
				return
			}
			w.Logf(SourceAzure, "Event Grid → %s: %s failed (%s), retrying", ev.Function, ev, why)
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait *= 2
		}
		w.Logf(SourceAzure, "event %s dead-lettered", ev)
	}()
}

// tick fires the Reconcile timer while it is on; like the host's singleton
// timer, one invocation at a time.
func (w *World) tick() {
	if !locked(w, func() bool { return w.timerOn && len(w.guards) > 0 }) {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, time.Minute)
	defer cancel()
	if why := failed(w.Tick(ctx)); why != "" && w.ctx.Err() == nil {
		w.Logf(SourceAzure, "timer → Reconcile: %s", why)
	}
}

// every runs f every d until the world closes.
func (w *World) every(d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// Result is a guard's answer to one invocation.
type Result struct {
	Guard    string
	Status   int // 0 when there was no answer
	Body     []byte
	Err      error
	Duration time.Duration
}

// failed describes the failure of an invocation of every guard, "" when
// each answered 2xx.
func failed(rs []Result, err error) string {
	if err != nil {
		return err.Error()
	}
	var parts []string
	ok := true
	for _, r := range rs {
		ok = ok && r.Status/100 == 2
		parts = append(parts, fmt.Sprintf("%s: %d in %dms", r.Guard, r.Status, r.Duration.Milliseconds()))
	}
	if ok {
		return ""
	}
	return strings.Join(parts, ", ")
}

var errNoGuard = errors.New("world: no guard is running")

// DeliverTo invokes ev's function once on guard g.
func (w *World) DeliverTo(ctx context.Context, g *Guard, ev Event) Result {
	return w.invoke(ctx, g, ev.Function, eventBody(ev))
}

// Tick fires the Reconcile timer once on every running guard at once.
func (w *World) Tick(ctx context.Context) ([]Result, error) {
	return w.invokeAll(ctx, FunctionReconcile, timerBody())
}

// TickGuard fires the Reconcile timer once on guard g.
func (w *World) TickGuard(ctx context.Context, g *Guard) Result {
	return w.invoke(ctx, g, FunctionReconcile, timerBody())
}

// eventBody is what the host sends for an Event Grid trigger: the event
// serialised to a JSON string, in the "event" binding.
func eventBody(ev Event) []byte {
	s, _ := json.Marshal(string(ev.JSON))
	return hostBody(ev.Function, "event", s)
}

// timerBody is what the host sends for the timer trigger.
func timerBody() []byte {
	now := time.Now().UTC()
	last, next := now.Add(-timerEvery).Format(time.RFC3339Nano), now.Add(timerEvery).Format(time.RFC3339Nano)
	return hostBody(FunctionReconcile, "timer", fmt.Appendf(nil,
		`{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":%q,"Next":%q,"LastUpdated":%q},"IsPastDue":false}`, last, next, last))
}

func hostBody(function, binding string, data []byte) []byte {
	return fmt.Appendf(nil, `{"Data":{%q:%s},"Metadata":{"sys":{"MethodName":%q,"UtcNow":%q,"RandGuid":%q}}}`,
		binding, data, function, time.Now().UTC().Format(time.RFC3339Nano), guid())
}

func (w *World) invokeAll(ctx context.Context, function string, body []byte) ([]Result, error) {
	guards := locked(w, func() []*Guard { return slices.Clone(w.guards) })
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

// invoke POSTs one invocation to g as the host does.
func (w *World) invoke(ctx context.Context, g *Guard, function string, body []byte) Result {
	start := time.Now()
	r := Result{Guard: g.name}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/"+function, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Azure-Functions-InvocationId", guid())
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	r.Duration = time.Since(start)
	if r.Err = err; err == nil {
		defer resp.Body.Close()
		r.Status = resp.StatusCode
		r.Body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}
	return r
}
