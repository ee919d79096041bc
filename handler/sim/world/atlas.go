package world

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Atlas's subscription, where its private endpoints live.
var atlasSubscription = "a7c3e1f9-5b2d-4e8a-9f6c-1d3b5e7a9c20"

// EnablePrivateNetworking is Atlas's first setup of project p: one EAR
// private endpoint per region, INITIATING, each with a new Pending
// connection on the vault (and the ARM event for the connection proxy Atlas
// wrote). It returns the connection names.
func (w *World) EnablePrivateNetworking(p *Project) []string {
	var names []string
	for _, region := range w.opts.Regions {
		names = append(names, w.createEndpoint(p, region))
	}
	return names
}

// AddRegion is Atlas adding an EAR private endpoint for p in region (a
// cluster grew into it); it returns the new connection's name.
func (w *World) AddRegion(p *Project, region string) string { return w.createEndpoint(p, region) }

// createEndpoint adds an INITIATING Atlas endpoint in region with a new
// Pending connection on p's vault.
func (w *World) createEndpoint(p *Project, region string) string {
	peName := fmt.Sprintf("atlas-pe-%s-%s", strings.ToLower(strings.ReplaceAll(region, "_", "")), randHex(12))
	name := peName + "." + guid()
	peID := fmt.Sprintf("/subscriptions/%s/resourceGroups/rg_%s_%s/providers/Microsoft.Network/privateEndpoints/%s",
		atlasSubscription, p.ID, strings.ToLower(region), peName)
	// Atlas records its endpoint first, then Azure shows the connection.
	id := w.atlas.AddEndpoint(p.ID, region, name, atlassim.StatusInitiating)
	w.mu.Lock()
	st := &endpointState{project: p, created: w.Now()}
	w.endpoints[id] = st
	w.mu.Unlock()
	if err := w.arm.AddConnection(p.Vault, name, vault.StatusPending, peID); err != nil {
		w.Logf(SourceAtlas, "cannot create connection %s: %v", Short(name), err)
	}
	w.mu.Lock()
	st.hadConn = true
	w.mu.Unlock()
	w.Logf(SourceAtlas, "endpoint %s (%s) INITIATING; Pending connection %s appears on %s", id[:8], region, Short(name), p.Vault.Name)
	w.Emit(armEvent(p.Vault, "privateEndpointConnectionProxies", name, opProxyWrite, typeWrite, atlasActor(), time.Now()))
	return name
}

// atlasLoop is Atlas's control plane: endpoint lifecycle and the validity
// check, a few times per world minute.
func (w *World) atlasLoop(ctx context.Context) {
	t := time.NewTicker(w.opts.Minute / 10)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := w.Now()
		for _, p := range w.projects {
			w.stepEndpoints(p, now)
		}
		w.mu.Lock()
		due := now.Sub(w.start) >= time.Duration(w.validChecks+1)*w.opts.ValidityEvery
		w.mu.Unlock()
		if due {
			w.validityCheck(now)
		}
	}
}

func (w *World) stepEndpoints(p *Project, now time.Time) {
	conns := map[string]vault.Connection{}
	for _, c := range w.arm.Connections(p.Vault) {
		conns[c.Name] = c
	}
	for _, e := range w.atlas.Endpoints(p.ID) {
		w.mu.Lock()
		st := w.endpoints[e.ID]
		created := st != nil && st.hadConn
		w.mu.Unlock()
		if !created { // not ours, or its connection is still being created
			continue
		}
		c, ok := conns[e.PrivateEndpointConnectionName]
		broken := !ok || c.Status == vault.StatusRejected || c.Status == vault.StatusDisconnected
		switch e.Status {
		case atlassim.StatusInitiating, atlassim.StatusPendingAcceptance, atlassim.StatusActive:
			if broken {
				why := "Private endpoint was rejected"
				if !ok {
					why = "Private endpoint connection was removed"
				} else if c.Status == vault.StatusDisconnected {
					why = "Private endpoint was disconnected"
				}
				w.atlas.SetEndpoint(p.ID, e.ID, atlassim.StatusPendingRecreation, why)
				w.mu.Lock()
				st.recreateAt = now.Add(w.opts.RecreateAfter)
				w.mu.Unlock()
				w.Logf(SourceAtlas, "endpoint %s (%s) PENDING_RECREATION: %q", e.ID[:8], e.RegionName, why)
				continue
			}
			if c.Status == vault.StatusApproved {
				w.mu.Lock()
				if st.approvedAt.IsZero() {
					st.approvedAt = now
				}
				activate := e.Status != atlassim.StatusActive && !now.Before(st.approvedAt.Add(w.opts.ActivateAfter))
				w.mu.Unlock()
				if activate {
					w.atlas.SetEndpoint(p.ID, e.ID, atlassim.StatusActive, "")
					w.Logf(SourceAtlas, "endpoint %s (%s) ACTIVE", e.ID[:8], e.RegionName)
				}
				continue
			}
			if e.Status == atlassim.StatusInitiating && !now.Before(st.created.Add(w.opts.InitiateFor)) {
				w.atlas.SetEndpoint(p.ID, e.ID, atlassim.StatusPendingAcceptance, "")
				w.Logf(SourceAtlas, "endpoint %s (%s) PENDING_ACCEPTANCE", e.ID[:8], e.RegionName)
			}
		case atlassim.StatusPendingRecreation:
			w.mu.Lock()
			due := !st.recreateAt.IsZero() && !now.Before(st.recreateAt)
			w.mu.Unlock()
			if !due {
				continue
			}
			// Atlas deletes its old private endpoint (its connection goes
			// with it) and creates a new one in the same region.
			w.atlas.RemoveEndpoint(p.ID, e.ID)
			if ok {
				_ = w.arm.RemoveConnection(p.Vault, c.Name)
			}
			w.mu.Lock()
			delete(w.endpoints, e.ID)
			w.mu.Unlock()
			w.Logf(SourceAtlas, "endpoint %s (%s) deleted, recreating", e.ID[:8], e.RegionName)
			w.createEndpoint(p, e.RegionName)
		}
	}
}

// validityCheck is Atlas's periodic check of every project's key.
func (w *World) validityCheck(now time.Time) {
	w.mu.Lock()
	w.validChecks++
	w.mu.Unlock()
	for _, p := range w.projects {
		w.mu.Lock()
		why := ""
		switch {
		case p.keyDeleted:
			why = "key not found"
		case !p.keyEnabled:
			why = "key is disabled"
		case p.keyExpires != nil && !time.Now().Before(*p.keyExpires):
			why = "key has expired"
		case p.accessRevoked:
			why = "access to the key was revoked"
		}
		was := p.valid
		p.valid = why == ""
		w.mu.Unlock()
		switch {
		case was && why != "":
			w.atlas.SetValid(p.ID, false)
			for _, c := range p.Clusters {
				w.atlas.SetPaused(p.ID, c, true)
			}
			w.mu.Lock()
			p.pausedAt = time.Now()
			w.mu.Unlock()
			w.Logf(SourceAtlas, "validity check: %s → config INVALID, clusters %s shut down", why, strings.Join(p.Clusters, ", "))
		case !was && why == "":
			w.atlas.SetValid(p.ID, true)
			for _, c := range p.Clusters {
				w.atlas.SetPaused(p.ID, c, false)
			}
			w.Logf(SourceAtlas, "validity check: key valid again → clusters %s resumed", strings.Join(p.Clusters, ", "))
		case why != "":
			w.Logf(SourceAtlas, "validity check: still invalid (%s)", why)
		}
	}
}

// WaitValidityCheck waits until Atlas ran its next validity check.
func (w *World) WaitValidityCheck(ctx context.Context) error {
	n := w.ValidityChecks()
	return w.WaitFor(ctx, "Atlas's next validity check", func() bool { return w.ValidityChecks() > n })
}

// onChange records writes made through the ARM API (the guard's approvals)
// and publishes the ARM event Azure would.
func (w *World) onChange(c armsim.Change) {
	w.mu.Lock()
	w.changes = append(w.changes, c)
	w.mu.Unlock()
	name := c.After.Name
	w.Logf(SourceAzure, "ARM write by %s: connection %s %s → %s", actorName(c.ClientID), Short(name), c.Before.Status, c.After.Status)
	w.Emit(armEvent(c.Vault, "privateEndpointConnections", name, opConnWrite, typeWrite, managedIdentityActor(c.ClientID, c.ObjectID, c.Vault), c.Time))
}

func actorName(clientID string) string {
	if len(clientID) > 8 {
		clientID = clientID[:8]
	}
	return "managed identity " + clientID
}

// ---- people and Azure doing things ---------------------------------------

// User is someone acting in the Azure portal.
type User struct{ Name, UPN, ObjectID string }

// Ada is the world's vault administrator.
var Ada = User{Name: "Ada Okafor", UPN: "ada.okafor@contoso.com", ObjectID: "2b9e6f1c-7a4d-4e8b-9c3f-5d1a0e7b6c42"}

// RejectConnection is who rejecting connection name on p's vault in the
// portal (an ARM privateEndpointConnections/write).
func (w *World) RejectConnection(p *Project, name string, who User) error {
	if err := w.arm.SetConnectionStatus(p.Vault, name, vault.StatusRejected, "Rejected by "+who.UPN); err != nil {
		return err
	}
	w.Logf(SourceWorld, "%s rejects connection %s", who.Name, Short(name))
	w.Emit(armEvent(p.Vault, "privateEndpointConnections", name, opConnWrite, typeWrite, userActor(who), time.Now()))
	return nil
}

// RemoveConnection is who deleting connection name from p's vault.
func (w *World) RemoveConnection(p *Project, name string, who User) error {
	if err := w.arm.RemoveConnection(p.Vault, name); err != nil {
		return err
	}
	w.Logf(SourceWorld, "%s deletes connection %s", who.Name, Short(name))
	w.Emit(armEvent(p.Vault, "privateEndpointConnections", name, opConnDelete, typeDelete, userActor(who), time.Now()))
	return nil
}

// AddForeignConnection is someone outside Atlas creating a private
// endpoint to p's vault: a Pending connection nobody in Atlas asked for.
func (w *World) AddForeignConnection(p *Project, name string) error {
	peID := "/subscriptions/" + guid() + "/resourceGroups/rg-intruder/providers/Microsoft.Network/privateEndpoints/" + strings.SplitN(name, ".", 2)[0]
	if err := w.arm.AddConnection(p.Vault, name, vault.StatusPending, peID); err != nil {
		return err
	}
	w.Logf(SourceWorld, "a stranger creates private endpoint connection %s (Pending) on %s", Short(name), p.Vault.Name)
	w.Emit(armEvent(p.Vault, "privateEndpointConnectionProxies", name, opProxyWrite, typeWrite, strangerActor(), time.Now()))
	return nil
}

// SetKeyEnabled disables or enables the key version Atlas uses. Azure
// publishes no event for it.
func (w *World) SetKeyEnabled(p *Project, enabled bool) error {
	w.mu.Lock()
	version := p.keyVersion
	w.mu.Unlock()
	if err := w.arm.SetKeyEnabled(p.Vault, p.KeyName, version, enabled); err != nil {
		return err
	}
	w.mu.Lock()
	p.keyEnabled = enabled
	w.mu.Unlock()
	verb := "disables"
	if enabled {
		verb = "re-enables"
	}
	w.Logf(SourceWorld, "%s %s key %s/%s (Event Grid has no event for this)", Ada.Name, verb, p.KeyName, version[:8])
	return nil
}

// SetKeyExpiry sets (real time) the expiry of the key version Atlas uses;
// Azure publishes KeyNearExpiry when it is within 30 days and KeyExpired
// once it passed.
func (w *World) SetKeyExpiry(p *Project, exp time.Time) error {
	w.mu.Lock()
	version := p.keyVersion
	w.mu.Unlock()
	exp = exp.UTC().Truncate(time.Second)
	if err := w.arm.SetKeyExpiry(p.Vault, p.KeyName, version, &exp); err != nil {
		return err
	}
	w.mu.Lock()
	p.keyExpires = &exp
	w.mu.Unlock()
	w.Logf(SourceWorld, "%s sets key %s to expire at %s", Ada.Name, p.KeyName, exp.Format(time.RFC3339))
	if time.Until(exp) <= 30*24*time.Hour {
		w.Emit(keyVaultEvent(p.Vault, typeKeyNearExpiry, p.KeyName, version, exp))
	}
	if !time.Now().Before(exp) {
		w.Emit(keyVaultEvent(p.Vault, typeKeyExpired, p.KeyName, version, exp))
	}
	return nil
}

// RotateKey creates a new version of Atlas's key in Azure (Atlas's
// keyIdentifier still pins the old one) and returns it.
func (w *World) RotateKey(p *Project) (string, error) {
	exp := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	v, err := w.arm.AddKey(p.Vault, p.KeyName, "", true, nil, &exp)
	if err != nil {
		return "", err
	}
	w.Logf(SourceWorld, "%s creates a new version %s of key %s in Azure", Ada.Name, v[:8], p.KeyName)
	w.Emit(keyVaultEvent(p.Vault, typeKeyNewVersion, p.KeyName, v, exp))
	return v, nil
}

// RevokeAccess is who deleting Atlas's role assignment on p's vault.
func (w *World) RevokeAccess(p *Project, who User) {
	w.mu.Lock()
	p.accessRevoked = true
	w.mu.Unlock()
	w.Logf(SourceWorld, "%s deletes Atlas's role assignment on %s", who.Name, p.Vault.Name)
	w.Emit(roleAssignmentDeleted(p.Vault, userActor(who)))
}
