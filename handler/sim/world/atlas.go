package world

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// endpoint is what Atlas remembers about one of its endpoints (world
// times); only atlasStep changes it once it is in World.endpoints.
type endpoint struct {
	created, approvedAt, recreateAt time.Time
}

// EnablePrivateNetworking is Atlas's first setup of p: one INITIATING EAR
// endpoint per region, each with a new Pending connection on the vault. It
// returns the connection names.
func (w *World) EnablePrivateNetworking(p *Project) []string {
	var names []string
	for _, region := range w.opts.Regions {
		names = append(names, w.AddRegion(p, region))
	}
	return names
}

// AddRegion is Atlas adding an EAR endpoint for p in region, with a new
// Pending connection on the vault (and the ARM event for the connection
// proxy Atlas wrote); it returns the connection's name.
func (w *World) AddRegion(p *Project, region string) string {
	pe := fmt.Sprintf("atlas-pe-%s-%s", strings.ToLower(strings.ReplaceAll(region, "_", "")), simtest.RandHex(12))
	name := pe + "." + guid()
	// Atlas records its endpoint first, then Azure shows the connection.
	id := w.sims.Atlas.AddEndpoint(p.ID, region, name, atlassim.StatusInitiating)
	peID := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg_%s_%s/providers/Microsoft.Network/privateEndpoints/%s", atlasSubscription, p.ID, strings.ToLower(region), pe)
	if err := w.sims.ARM.AddConnection(p.Vault, name, vault.StatusPending, peID); err != nil {
		w.Logf(SourceAtlas, "cannot create connection %s: %v", Short(name), err)
	}
	w.with(func() { w.endpoints[id] = &endpoint{created: w.now()} })
	w.Logf(SourceAtlas, "endpoint %s (%s) INITIATING; Pending connection %s appears on %s", id[:8], region, Short(name), p.Vault.Name)
	w.Emit(connEvent(p.Vault, name, opProxyWrite, atlasActor, time.Now()))
	return name
}

// atlasStep is one step of Atlas's control plane (ten per world minute):
// endpoint lifecycles and, when due, the validity check.
func (w *World) atlasStep() {
	now := w.now()
	due := locked(w, func() bool {
		due := now.Sub(w.start) >= time.Duration(w.validChecks+1)*validityEvery
		if due {
			w.validChecks++
		}
		return due
	})
	for _, p := range w.projects {
		w.stepEndpoints(p, now)
		if due {
			w.validityCheck(p)
		}
	}
}

func (w *World) stepEndpoints(p *Project, now time.Time) {
	for _, e := range w.sims.Atlas.Endpoints(p.ID) {
		st := locked(w, func() *endpoint { return w.endpoints[e.ID] })
		if st == nil { // not ours, or its connection is still being created
			continue
		}
		c, ok := w.sims.ARM.Connection(p.Vault, e.PrivateEndpointConnectionName)
		set := func(status, why string) {
			w.sims.Atlas.SetEndpoint(p.ID, e.ID, status, why)
			if why != "" {
				why = fmt.Sprintf(": %q", why)
			}
			w.Logf(SourceAtlas, "endpoint %s (%s) %s%s", e.ID[:8], e.RegionName, status, why)
		}
		switch why := brokenBecause(c, ok); {
		case e.Status == atlassim.StatusPendingRecreation:
			if now.Before(st.recreateAt) {
				continue
			}
			// Atlas deletes its endpoint (the connection goes with it) and
			// creates a new one in the same region.
			w.sims.Atlas.RemoveEndpoint(p.ID, e.ID)
			if ok {
				_ = w.sims.ARM.RemoveConnection(p.Vault, c.Name)
			}
			w.with(func() { delete(w.endpoints, e.ID) })
			w.Logf(SourceAtlas, "endpoint %s (%s) deleted, recreating", e.ID[:8], e.RegionName)
			w.AddRegion(p, e.RegionName)
		case why != "":
			st.recreateAt = now.Add(w.opts.RecreateAfter)
			set(atlassim.StatusPendingRecreation, why)
		case c.Status == vault.StatusApproved:
			if st.approvedAt.IsZero() {
				st.approvedAt = now
			}
			if e.Status != atlassim.StatusActive && !now.Before(st.approvedAt.Add(activateAfter)) {
				set(atlassim.StatusActive, "")
			}
		case e.Status == atlassim.StatusInitiating && !now.Before(st.created.Add(initiateFor)):
			set(atlassim.StatusPendingAcceptance, "")
		}
	}
}

// brokenBecause says why Atlas considers its endpoint broken ("" when it is
// not): the connection is gone, rejected or disconnected.
func brokenBecause(c vault.Connection, ok bool) string {
	switch {
	case !ok:
		return "Private endpoint connection was removed"
	case c.Status == vault.StatusRejected:
		return "Private endpoint was rejected"
	case c.Status == vault.StatusDisconnected:
		return "Private endpoint was disconnected"
	}
	return ""
}

// validityCheck is Atlas's periodic check of p's key.
func (w *World) validityCheck(p *Project) {
	w.mu.Lock()
	why := ""
	switch {
	case !p.keyEnabled:
		why = "key is disabled"
	case !time.Now().Before(p.keyExpires):
		why = "key has expired"
	case p.revoked:
		why = "access to the key was revoked"
	}
	was, valid := p.valid, why == ""
	p.valid = valid
	if was && !valid {
		p.pausedAt = time.Now()
	}
	w.mu.Unlock()
	if was != valid {
		w.sims.Atlas.SetValid(p.ID, valid)
		for _, c := range p.Clusters {
			w.sims.Atlas.SetPaused(p.ID, c, !valid)
		}
	}
	clusters := strings.Join(p.Clusters, ", ")
	switch {
	case was && why != "":
		w.Logf(SourceAtlas, "validity check: %s → config INVALID, clusters %s shut down", why, clusters)
	case !was && why == "":
		w.Logf(SourceAtlas, "validity check: key valid again → clusters %s resumed", clusters)
	case why != "":
		w.Logf(SourceAtlas, "validity check: still invalid (%s)", why)
	}
}

// WaitValidityCheck waits until Atlas ran its next validity check.
func (w *World) WaitValidityCheck(ctx context.Context) error {
	checks := func() int { return locked(w, func() int { return w.validChecks }) }
	n := checks()
	return w.WaitFor(ctx, "Atlas's next validity check", func() bool { return checks() > n })
}

// onChange records the writes made through the ARM API (the guard's
// approvals) and publishes the ARM event Azure would.
func (w *World) onChange(c armsim.Change) {
	if c.After.Status == vault.StatusApproved {
		w.with(func() { w.approvals = append(w.approvals, c) })
	}
	w.Logf(SourceAzure, "ARM write by managed identity %.8s: connection %s %s → %s", c.ClientID, Short(c.After.Name), c.Before.Status, c.After.Status)
	w.Emit(connEvent(c.Vault, c.After.Name, opConnWrite, managedIdentityActor(c.ClientID, c.ObjectID, c.Vault), c.Time))
}

// User is someone acting in the Azure portal.
type User struct{ Name, UPN, ObjectID string }

// Ada is the world's vault administrator.
var Ada = User{Name: "Ada Okafor", UPN: "ada.okafor@contoso.com", ObjectID: "2b9e6f1c-7a4d-4e8b-9c3f-5d1a0e7b6c42"}

// RejectConnection is who rejecting connection name on p's vault in the
// portal (an ARM privateEndpointConnections/write).
func (w *World) RejectConnection(p *Project, name string, who User) error {
	if err := w.sims.ARM.SetConnectionStatus(p.Vault, name, vault.StatusRejected, "Rejected by "+who.UPN); err != nil {
		return err
	}
	w.Logf(SourceWorld, "%s rejects connection %s", who.Name, Short(name))
	w.Emit(connEvent(p.Vault, name, opConnWrite, userActor(who), time.Now()))
	return nil
}

// RemoveConnection is who deleting connection name from p's vault.
func (w *World) RemoveConnection(p *Project, name string, who User) error {
	if err := w.sims.ARM.RemoveConnection(p.Vault, name); err != nil {
		return err
	}
	w.Logf(SourceWorld, "%s deletes connection %s", who.Name, Short(name))
	w.Emit(connEvent(p.Vault, name, opConnDelete, userActor(who), time.Now()))
	return nil
}

// AddForeignConnection is someone outside Atlas creating a private endpoint
// to p's vault: a Pending connection nobody in Atlas asked for.
func (w *World) AddForeignConnection(p *Project, name string) error {
	pe, _, _ := strings.Cut(name, ".")
	if err := w.sims.ARM.AddConnection(p.Vault, name, vault.StatusPending, "/subscriptions/"+guid()+"/resourceGroups/rg-intruder/providers/Microsoft.Network/privateEndpoints/"+pe); err != nil {
		return err
	}
	w.Logf(SourceWorld, "a stranger creates private endpoint connection %s (Pending) on %s", Short(name), p.Vault.Name)
	w.Emit(connEvent(p.Vault, name, opProxyWrite, userActor(mallory), time.Now()))
	return nil
}

// SetKeyEnabled disables or enables the key version Atlas uses; Azure
// publishes no event for it.
func (w *World) SetKeyEnabled(p *Project, enabled bool) error {
	version := locked(w, func() string { return p.keyVersion })
	if err := w.sims.ARM.SetKeyEnabled(p.Vault, p.KeyName, version, enabled); err != nil {
		return err
	}
	w.with(func() { p.keyEnabled = enabled })
	verb := map[bool]string{false: "disables", true: "re-enables"}[enabled]
	w.Logf(SourceWorld, "%s %s key %s/%s (Event Grid has no event for this)", Ada.Name, verb, p.KeyName, version[:8])
	return nil
}

// SetKeyExpiry sets (real time) the expiry of the key version Atlas uses;
// Azure publishes KeyNearExpiry within 30 days of it and KeyExpired after.
func (w *World) SetKeyExpiry(p *Project, exp time.Time) error {
	version := locked(w, func() string { return p.keyVersion })
	exp = exp.UTC().Truncate(time.Second)
	if err := w.sims.ARM.SetKeyExpiry(p.Vault, p.KeyName, version, &exp); err != nil {
		return err
	}
	w.with(func() { p.keyExpires = exp })
	w.Logf(SourceWorld, "%s sets key %s to expire at %s", Ada.Name, p.KeyName, exp.Format(time.RFC3339))
	if time.Until(exp) <= 30*24*time.Hour {
		w.Emit(keyEvent(p, typeKeyNearExpiry, version, exp))
	}
	if !time.Now().Before(exp) {
		w.Emit(keyEvent(p, typeKeyExpired, version, exp))
	}
	return nil
}

// RotateKey creates a new version of Atlas's key in Azure (Atlas still pins
// the old one) and returns it.
func (w *World) RotateKey(p *Project) (string, error) {
	exp := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	v, err := w.sims.ARM.AddKey(p.Vault, p.KeyName, "", true, nil, &exp)
	if err != nil {
		return "", err
	}
	w.Logf(SourceWorld, "%s creates a new version %s of key %s in Azure", Ada.Name, v[:8], p.KeyName)
	w.Emit(keyEvent(p, typeKeyNewVersion, v, exp))
	return v, nil
}

// RevokeAccess is who deleting Atlas's role assignment on p's vault.
func (w *World) RevokeAccess(p *Project, who User) {
	w.with(func() { p.revoked = true })
	w.Logf(SourceWorld, "%s deletes Atlas's role assignment on %s", who.Name, p.Vault.Name)
	w.Emit(armEvent(p.Vault, p.Vault.String()+"/providers/Microsoft.Authorization/roleAssignments/"+guid(), opRoleAssignmentDelete, userActor(who), time.Now()))
}
