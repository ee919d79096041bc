package plan

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

func setConn(name, status string) func(*Snapshot) {
	return func(s *Snapshot) {
		s.Connections = []vault.Connection{{Name: name, ID: vaultA.String() + "/privateEndpointConnections/" + name, Status: status}}
	}
}

func setEndpointStatus(status string) func(*Snapshot) {
	return func(s *Snapshot) {
		s.Endpoints = []atlas.PrivateEndpoint{{ID: epA, RegionName: "US_EAST_2", Status: status, PrivateEndpointConnectionName: connA, ErrorMessage: "boom"}}
	}
}

func TestApprovalRules(t *testing.T) {
	tests := []struct {
		name    string
		snap    Snapshot
		mode    Mode
		approve []string // connection names approved
		conn    string   // connection whose decision is checked ("" = endpoint row for epA)
		verdict string
		raised  []string // "kind/raised" tags that must be among the notices
		absent  []string // tags that must not be
	}{
		{name: "requested pending connection (PENDING_ACCEPTANCE)", snap: healthy(), mode: ModeEnforce,
			approve: []string{connA}, conn: connA, verdict: VerdictApprove,
			absent: []string{"foreign-connection/raised", "would-approve/raised"}},
		{name: "requested pending connection (INITIATING)", snap: with(healthy(), setEndpointStatus(atlas.StatusInitiating)), mode: ModeEnforce,
			approve: []string{connA}, conn: connA, verdict: VerdictApprove},
		{name: "foreign pending connection", snap: with(healthy(), setConn("someone-elses-pe", vault.StatusPending)), mode: ModeEnforce,
			conn: "someone-elses-pe", verdict: VerdictForeign, raised: []string{"foreign-connection/raised"}},
		{name: "name differs by suffix", snap: with(healthy(), setConn(connA+"x", vault.StatusPending)), mode: ModeEnforce,
			conn: connA + "x", verdict: VerdictForeign, raised: []string{"foreign-connection/raised"}},
		{name: "name differs by prefix", snap: with(healthy(), setConn("x"+connA, vault.StatusPending)), mode: ModeEnforce,
			conn: "x" + connA, verdict: VerdictForeign, raised: []string{"foreign-connection/raised"}},
		{name: "name differs only by case", snap: with(healthy(), setConn(strings.ToUpper(connA), vault.StatusPending)), mode: ModeEnforce,
			conn: strings.ToUpper(connA), verdict: VerdictForeign, raised: []string{"foreign-connection/raised"}},
		{name: "name is a prefix of Atlas's", snap: with(healthy(), setConn(connA[:len(connA)-1], vault.StatusPending)), mode: ModeEnforce,
			conn: connA[:len(connA)-1], verdict: VerdictForeign, raised: []string{"foreign-connection/raised"}},
		{name: "status pending in lower case is not Pending", snap: with(healthy(), setConn(connA, "pending")), mode: ModeEnforce,
			conn: connA, verdict: VerdictNotPending, absent: []string{"foreign-connection/raised"}},
		{name: "endpoint ACTIVE with same-named pending connection", snap: with(healthy(), setEndpointStatus(atlas.StatusActive)), mode: ModeEnforce,
			conn: connA, verdict: VerdictEndpointNotRequesting, raised: []string{"foreign-connection/raised"}},
		{name: "endpoint FAILED with same-named pending connection", snap: with(healthy(), setEndpointStatus(atlas.StatusFailed)), mode: ModeEnforce,
			conn: connA, verdict: VerdictEndpointNotRequesting, raised: []string{"foreign-connection/raised", "endpoint-failed/raised"}},
		{name: "endpoint PENDING_RECREATION with same-named pending connection", snap: with(healthy(), setEndpointStatus(atlas.StatusPendingRecreation)), mode: ModeEnforce,
			conn: connA, verdict: VerdictEndpointNotRequesting, raised: []string{"connection-rejected/raised"}},
		{name: "endpoint DELETING with same-named pending connection", snap: with(healthy(), setEndpointStatus(atlas.StatusDeleting)), mode: ModeEnforce,
			conn: connA, verdict: VerdictEndpointNotRequesting},
		{name: "already approved", snap: with(healthy(), setConn(connA, vault.StatusApproved)), mode: ModeEnforce,
			conn: connA, verdict: VerdictAlreadyApproved, absent: []string{"foreign-connection/raised"}},
		{name: "rejected is not approved", snap: with(healthy(), setConn(connA, vault.StatusRejected)), mode: ModeEnforce,
			conn: connA, verdict: VerdictNotPending, raised: []string{"connection-rejected/raised"}},
		{name: "disconnected is not approved", snap: with(healthy(), setConn(connA, vault.StatusDisconnected)), mode: ModeEnforce,
			conn: connA, verdict: VerdictNotPending, raised: []string{"connection-rejected/raised"}},
		{name: "config unreadable", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) {
				s.Config, s.Vault = nil, resource.ID{}
				s.Errors = []SourceError{{Source: SourceEncryptionAtRest, Message: "401 Unauthorized"}}
			}),
			conn: "", verdict: VerdictConfigUnreadable, raised: []string{"guard-blind/raised"}},
		{name: "config nil without an error is unreadable too", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) { s.Config = nil }),
			conn: "", verdict: VerdictConfigUnreadable, raised: []string{"guard-blind/raised"}},
		{name: "endpoints unreadable", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) {
				s.Endpoints = nil
				s.Errors = []SourceError{{Source: SourcePrivateEndpoints, Message: "503"}}
			}),
			conn: connA, verdict: VerdictEndpointsUnreadable, raised: []string{"guard-blind/raised"}, absent: []string{"foreign-connection/raised"}},
		{name: "endpoints with an error are unreadable even with data", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) {
				s.Errors = []SourceError{{Source: SourcePrivateEndpoints, Message: "page 2: 500"}}
			}),
			conn: connA, verdict: VerdictEndpointsUnreadable, raised: []string{"guard-blind/raised"}},
		{name: "hold tag", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) { s.VaultState.Tags = map[string]string{"Atlas-AKV-Guard": " HOLD "} }),
			conn: connA, verdict: VerdictHeld, raised: []string{"approval-held/raised"}},
		{name: "hold tag in observe mode", mode: ModeObserve,
			snap: with(healthy(), func(s *Snapshot) {
				s.VaultState = &vault.Vault{Found: true, Tags: map[string]string{"atlas-akv-guard": "hold"}}
			}),
			conn: connA, verdict: VerdictHeld, raised: []string{"approval-held/raised"}, absent: []string{"would-approve/raised"}},
		{name: "vault state unreadable: hold tag unknown", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) {
				s.VaultState = nil
				s.Errors = []SourceError{{Source: SourceVault, Message: "403", Permission: "Microsoft.KeyVault/vaults/read"}}
			}),
			conn: connA, verdict: VerdictVaultUnreadable, raised: []string{"guard-blind/raised"}},
		{name: "observe mode", snap: healthy(), mode: ModeObserve,
			conn: connA, verdict: VerdictWouldApprove, raised: []string{"would-approve/raised"}},
		{name: "empty mode behaves as observe", snap: healthy(), mode: "",
			conn: connA, verdict: VerdictWouldApprove, raised: []string{"would-approve/raised"}},
		{name: "unknown mode behaves as observe", snap: healthy(), mode: "Enforce",
			conn: connA, verdict: VerdictWouldApprove, raised: []string{"would-approve/raised"}},
		{name: "connections unreadable", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) {
				s.Connections = nil
				s.Errors = []SourceError{{Source: SourceConnections, Message: "timeout"}}
			}),
			conn: "", verdict: VerdictConnectionsUnreadable, raised: []string{"guard-blind/raised"}},
		{name: "vault missing", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) { s.VaultState = &vault.Vault{Found: false} }),
			conn: "", verdict: VerdictConnectionsUnreadable, raised: []string{"vault-missing/raised"}},
		{name: "snapshot vault differs from config's vault", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) { s.Vault = vaultB }),
			conn: "", verdict: VerdictConnectionsUnreadable, raised: []string{"guard-blind/raised"}},
		{name: "config names no vault", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) {
				s.Config.KeyVaultName, s.Vault = "", resource.ID{}
			}),
			conn: "", verdict: VerdictNoConnection},
		{name: "key unreadable does not block approval", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) {
				s.Key = nil
				s.Errors = []SourceError{{Source: SourceKey, Message: "403"}}
			}),
			approve: []string{connA}, conn: connA, verdict: VerdictApprove, raised: []string{"guard-blind/raised"}},
		{name: "connection not on the vault yet", mode: ModeEnforce,
			snap: with(healthy(), func(s *Snapshot) { s.Connections = []vault.Connection{} }),
			conn: "", verdict: VerdictAwaitingConnection, absent: []string{"guard-blind/raised"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := enforce()
			p.Mode = tt.mode
			r := Plan(tt.snap, Memory{}, p, now)
			if got := approvedNames(r); !slices.Equal(got, tt.approve) {
				t.Errorf("approved %v, want %v", got, tt.approve)
			}
			ep := ""
			if tt.conn == "" {
				ep = epA
			}
			if got := verdict(r, tt.conn, ep); got != tt.verdict {
				t.Errorf("verdict for %q/%q = %q, want %q (decisions %+v)", tt.conn, ep, got, tt.verdict, r.Decisions)
			}
			for _, tag := range tt.raised {
				if !containsTag(r.Notices, tag) {
					t.Errorf("missing notice %s in %v", tag, tags(r.Notices))
				}
			}
			for _, tag := range tt.absent {
				if containsTag(r.Notices, tag) {
					t.Errorf("unexpected notice %s in %v", tag, tags(r.Notices))
				}
			}
		})
	}
}

func TestApprovalContent(t *testing.T) {
	s := with(healthy(), func(s *Snapshot) {
		// ARM spells the vault with other casing than Atlas: still the same vault.
		s.Vault = resource.ID{SubscriptionID: strings.ToUpper(vaultA.SubscriptionID), ResourceGroup: "RG-EAR", Name: "KV-ATLAS-A"}
	})
	r := Plan(s, Memory{}, enforce(), now)
	want := Approval{
		Vault:       vaultA,
		Connection:  connA,
		EndpointID:  epA,
		Region:      "US_EAST_2",
		Description: "Approved by atlas-akv-guard for MongoDB Atlas project " + project + ", EAR private endpoint " + epA + " (US_EAST_2), at 2026-03-10T12:00:00Z",
	}
	if len(r.Approvals) != 1 || r.Approvals[0] != want {
		t.Fatalf("approvals = %+v\nwant %+v", r.Approvals, want)
	}
}

// The event named vault B, but the project's Atlas config names vault A: the
// reconciler reads A only. Nothing from B is in the snapshot, so B's
// connection is never approved, and approvals always carry A.
func TestEventForOtherVaultNeverApprovesThere(t *testing.T) {
	hint := Hint{Kind: event.ConnectionChanged, Actor: "mallory@example.com",
		Object: vaultB.String() + "/privateEndpointConnections/" + connA, Operation: "Microsoft.KeyVault/vaults/privateEndpointConnections/write"}

	t.Run("A has no such connection", func(t *testing.T) {
		s := with(healthy(), func(s *Snapshot) { s.Connections = []vault.Connection{}; s.Hints = []Hint{hint} })
		r := Plan(s, Memory{}, enforce(), now)
		if len(r.Approvals) != 0 {
			t.Fatalf("approved %+v", r.Approvals)
		}
		if got := verdict(r, "", epA); got != VerdictAwaitingConnection {
			t.Errorf("endpoint verdict %q", got)
		}
	})
	t.Run("A has the connection", func(t *testing.T) {
		s := with(healthy(), func(s *Snapshot) { s.Hints = []Hint{hint} })
		r := Plan(s, Memory{}, enforce(), now)
		if len(r.Approvals) != 1 || !r.Approvals[0].Vault.Equal(vaultA) || r.Approvals[0].Vault.Equal(vaultB) {
			t.Fatalf("approvals %+v, want one on vault A", r.Approvals)
		}
	})
}

func TestForeignAlertContent(t *testing.T) {
	s := with(healthy(), func(s *Snapshot) {
		s.Connections = append(s.Connections, vault.Connection{Name: strings.ToUpper(connA), Status: vault.StatusPending, PrivateEndpointID: "/subscriptions/x/resourceGroups/y/providers/Microsoft.Network/privateEndpoints/pe"})
	})
	r := Plan(s, Memory{}, enforce(), now)
	if got := approvedNames(r); !slices.Equal(got, []string{connA}) {
		t.Fatalf("approved %v, want only %s", got, connA)
	}
	a, ok := hasOpen(r.Memory, alert.ForeignConnection, strings.ToUpper(connA))
	if !ok {
		t.Fatalf("no foreign alert; open %v", openKinds(r.Memory))
	}
	if a.Severity != alert.Warning || a.Details["similarTo"] != connA || a.Vault != vaultA.String() || a.ProjectID != project {
		t.Errorf("foreign alert = %+v", a)
	}
}

func TestMultipleEndpointsSortedApprovals(t *testing.T) {
	s := with(healthy(), func(s *Snapshot) {
		s.Endpoints = append(s.Endpoints, atlas.PrivateEndpoint{ID: epB, RegionName: "EUROPE_WEST", Status: atlas.StatusInitiating, PrivateEndpointConnectionName: connB})
		s.Connections = []vault.Connection{
			{Name: connB, Status: vault.StatusPending},
			{Name: "zz-foreign", Status: vault.StatusPending},
			{Name: connA, Status: vault.StatusPending},
			{Name: connA, Status: vault.StatusPending}, // duplicate listing: approved once
		}
	})
	r := Plan(s, Memory{}, enforce(), now)
	if got := approvedNames(r); !slices.Equal(got, []string{connA, connB}) {
		t.Fatalf("approved %v", got)
	}
	if r.Approvals[1].EndpointID != epB || r.Approvals[1].Region != "EUROPE_WEST" {
		t.Errorf("approval for B = %+v", r.Approvals[1])
	}
	wantRows := []string{connA, connB, "zz-foreign"}
	var rows []string
	for _, d := range r.Decisions {
		rows = append(rows, d.Connection)
	}
	if !slices.Equal(rows, wantRows) {
		t.Errorf("decision rows %v, want %v", rows, wantRows)
	}
}

func TestApprovedNotice(t *testing.T) {
	a := Approval{Vault: vaultA, Connection: connA, EndpointID: epA, Region: "US_EAST_2", Description: "d"}
	n := ApprovedNotice(project, a, "guard-mi", now)
	if n.Action != alert.AuditEvent || n.Alert.Kind != alert.Approved || n.Alert.Severity != alert.Info {
		t.Fatalf("notice %+v", n)
	}
	if n.Alert.Fingerprint != Fingerprint(alert.Approved, project, connA) || n.Alert.Vault != vaultA.String() ||
		n.Alert.Actor != "guard-mi" || n.Alert.Details["endpointId"] != epA || !n.At.Equal(now) {
		t.Errorf("alert %+v", n.Alert)
	}
	if n2 := ApprovedNotice(project, a, "guard-mi", now); n2.ID != n.ID {
		t.Errorf("ID not deterministic: %s vs %s", n.ID, n2.ID)
	}
	if n3 := ApprovedNotice(project, a, "guard-mi", now.Add(time.Nanosecond)); n3.ID == n.ID {
		t.Errorf("ID not unique per time")
	}
}

// While Atlas is creating an endpoint it has not named a connection for yet,
// a new unrequested Pending connection may be Atlas's own: its alert waits
// up to ForeignGrace (it is never approved meanwhile); once Atlas names it,
// it is approved and nothing was raised.
func TestForeignAlertWaitsWhileAtlasCreatesAnEndpoint(t *testing.T) {
	const newConn = "atlas-pe-eastus-9"
	creating := func() Snapshot {
		s := healthy()
		s.Endpoints = append(s.Endpoints, atlas.PrivateEndpoint{ID: epB, RegionName: "US_EAST_2", Status: atlas.StatusInitiating})
		s.Connections = append(s.Connections, vault.Connection{Name: newConn, Status: vault.StatusPending})
		return s
	}
	foreignRaised := func(r Result) bool {
		for _, n := range r.Notices {
			if n.Alert.Kind == alert.ForeignConnection && n.Action == alert.Raised && n.Alert.Subject == newConn {
				return true
			}
		}
		return false
	}
	verdict := func(r Result) Decision {
		for _, d := range r.Decisions {
			if d.Connection == newConn {
				return d
			}
		}
		t.Fatalf("no decision for %s: %+v", newConn, r.Decisions)
		return Decision{}
	}

	r1 := Plan(creating(), Memory{}, enforce(), now)
	if foreignRaised(r1) || verdict(r1).Verdict != VerdictForeign || len(r1.Approvals) != 1 {
		t.Fatalf("first sight: raised %v, decision %+v, approvals %+v", foreignRaised(r1), verdict(r1), r1.Approvals)
	}
	if got := r1.Memory.Unrequested[newConn]; !got.Equal(now) {
		t.Fatalf("unrequested since = %v", got)
	}

	// Atlas names the connection: approved, and no foreign alert ever went out.
	named := creating()
	named.Endpoints[1].PrivateEndpointConnectionName = newConn
	r2 := Plan(named, r1.Memory, enforce(), now.Add(time.Minute))
	if foreignRaised(r2) || len(r2.Approvals) != 2 || len(r2.Memory.Unrequested) != 0 {
		t.Fatalf("after Atlas named it: raised %v, approvals %+v, unrequested %v", foreignRaised(r2), r2.Approvals, r2.Memory.Unrequested)
	}

	// Atlas never names it: just under the grace nothing, past it the alert.
	mem := r1.Memory
	under := Plan(creating(), mem, enforce(), now.Add(DefaultForeignGrace-time.Second))
	if foreignRaised(under) {
		t.Fatal("raised before the grace ran out")
	}
	over := Plan(creating(), under.Memory, enforce(), now.Add(DefaultForeignGrace))
	if !foreignRaised(over) {
		t.Fatal("not raised once the grace ran out")
	}

	// No endpoint being created: reported at once.
	s := healthy()
	s.Connections = append(s.Connections, vault.Connection{Name: newConn, Status: vault.StatusPending})
	if !foreignRaised(Plan(s, Memory{}, enforce(), now)) {
		t.Fatal("not raised at once when Atlas is creating nothing")
	}
	// A name resembling Atlas's is reported at once even while Atlas creates.
	s = creating()
	s.Connections[1].Name = connA + "-evil"
	r := Plan(s, Memory{}, enforce(), now)
	raised := false
	for _, n := range r.Notices {
		raised = raised || (n.Alert.Kind == alert.ForeignConnection && n.Alert.Subject == connA+"-evil")
	}
	if !raised {
		t.Fatal("a look-alike connection was deferred")
	}
}

// Projects sharing a vault: a Pending connection another guarded project
// asked for is neither foreign nor approved here; an open foreign alert for it
// resolves.
func TestOtherProjectsConnection(t *testing.T) {
	const other = "other-pe"
	s := with(healthy(), func(s *Snapshot) {
		s.Connections = append(s.Connections, vault.Connection{Name: other, Status: vault.StatusPending})
	})
	r1 := Plan(s, Memory{}, enforce(), now)
	if _, ok := hasOpen(r1.Memory, alert.ForeignConnection, other); !ok {
		t.Fatal("precondition: foreign without OtherRequests")
	}
	s.OtherRequests = map[string]string{other: "proj-b", strings.ToUpper(connA): "proj-c"}
	r2 := Plan(s, r1.Memory, enforce(), now.Add(time.Minute))
	if got := approvedNames(r2); !slices.Equal(got, []string{connA}) {
		t.Errorf("approved %v, want only this project's %s", got, connA)
	}
	if v := verdict(r2, other, ""); v != VerdictOtherProject {
		t.Errorf("verdict %q", v)
	}
	if want := []string{"foreign-connection/resolved"}; !slices.Equal(tags(r2.Notices), want) {
		t.Errorf("notices %v, want %v", tags(r2.Notices), want)
	}
	// Names compare exactly: another casing is still foreign.
	s.OtherRequests = map[string]string{strings.ToUpper(other): "proj-b"}
	if r := Plan(s, Memory{}, enforce(), now); verdict(r, other, "") != VerdictForeign {
		t.Errorf("case-folded other request accepted: %+v", r.Decisions)
	}
}

// A zero Snapshot.Vault is untrusted: no ARM data is used, nothing approved.
func TestZeroSnapshotVaultIsUntrusted(t *testing.T) {
	r := Plan(with(healthy(), func(s *Snapshot) { s.Vault = resource.ID{} }), Memory{}, enforce(), now)
	if len(r.Approvals) != 0 || verdict(r, "", epA) != VerdictConnectionsUnreadable {
		t.Fatalf("approvals %+v, decisions %+v", r.Approvals, r.Decisions)
	}
	if _, ok := hasOpen(r.Memory, alert.GuardBlind, string(SourceVault)); !ok {
		t.Errorf("no guard-blind for the untrusted vault: %v", openKinds(r.Memory))
	}
}
