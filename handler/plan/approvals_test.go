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

// TestApprovalRules: every rule of the security core, each way it can fail.
func TestApprovalRules(t *testing.T) {
	pending := func(name string) Snapshot { return with(healthy(), setConn(name, vault.StatusPending)) }
	noVault := func(s *Snapshot) { s.Vault, s.VaultState, s.Connections, s.Key = resource.ID{}, nil, nil, nil }
	tests := []struct {
		name    string
		snap    Snapshot
		mode    Mode
		approve []string // connection names approved
		conn    string   // connection whose decision is checked ("" = endpoint row for epA)
		verdict string
		raised  []string // "kind/raised" tags that must be among the notices
	}{
		{"requested pending connection (PENDING_ACCEPTANCE)", healthy(), ModeEnforce, []string{connA}, connA, VerdictApprove, nil},
		{"requested pending connection (INITIATING)", with(healthy(), setEndpointStatus(atlas.StatusInitiating)), ModeEnforce, []string{connA}, connA, VerdictApprove, nil},
		{"foreign pending connection", pending("someone-elses-pe"), ModeEnforce, nil, "someone-elses-pe", VerdictForeign, []string{"foreign-connection/raised"}},
		{"name differs by suffix", pending(connA + "x"), ModeEnforce, nil, connA + "x", VerdictForeign, []string{"foreign-connection/raised"}},
		{"name differs by prefix", pending("x" + connA), ModeEnforce, nil, "x" + connA, VerdictForeign, []string{"foreign-connection/raised"}},
		{"name differs only by case", pending(strings.ToUpper(connA)), ModeEnforce, nil, strings.ToUpper(connA), VerdictForeign, []string{"foreign-connection/raised"}},
		{"name is a prefix of Atlas's", pending(connA[:len(connA)-1]), ModeEnforce, nil, connA[:len(connA)-1], VerdictForeign, []string{"foreign-connection/raised"}},
		{"status pending in lower case is not Pending", with(healthy(), setConn(connA, "pending")), ModeEnforce, nil, connA, VerdictNotPending, nil},
		{"endpoint ACTIVE with same-named pending connection", with(healthy(), setEndpointStatus(atlas.StatusActive)), ModeEnforce, nil, connA, VerdictEndpointNotRequesting, []string{"foreign-connection/raised"}},
		{"endpoint FAILED with same-named pending connection", with(healthy(), setEndpointStatus(atlas.StatusFailed)), ModeEnforce, nil, connA, VerdictEndpointNotRequesting, []string{"endpoint-failed/raised", "foreign-connection/raised"}},
		{"endpoint PENDING_RECREATION with same-named pending connection", with(healthy(), setEndpointStatus(atlas.StatusPendingRecreation)), ModeEnforce, nil, connA, VerdictEndpointNotRequesting, []string{"connection-rejected/raised", "foreign-connection/raised"}},
		{"endpoint DELETING with same-named pending connection", with(healthy(), setEndpointStatus(atlas.StatusDeleting)), ModeEnforce, nil, connA, VerdictEndpointNotRequesting, []string{"foreign-connection/raised"}},
		{"already approved", with(healthy(), setConn(connA, vault.StatusApproved)), ModeEnforce, nil, connA, VerdictAlreadyApproved, nil},
		{"rejected is not approved", with(healthy(), setConn(connA, vault.StatusRejected)), ModeEnforce, nil, connA, VerdictNotPending, []string{"connection-rejected/raised"}},
		{"disconnected is not approved", with(healthy(), setConn(connA, vault.StatusDisconnected)), ModeEnforce, nil, connA, VerdictNotPending, []string{"connection-rejected/raised"}},
		{"config unreadable", with(healthy(), fail(SourceEncryptionAtRest, "401"), noVault), ModeEnforce, nil, "", VerdictConfigUnreadable, []string{"guard-blind/raised"}},
		{"config nil without an error is unreadable too", with(healthy(), func(s *Snapshot) { s.Config = nil }), ModeEnforce, nil, "", VerdictConfigUnreadable, []string{"guard-blind/raised"}},
		{"endpoints unreadable", with(healthy(), fail(SourcePrivateEndpoints, "503")), ModeEnforce, nil, connA, VerdictEndpointsUnreadable, []string{"guard-blind/raised"}},
		{"endpoints with an error are unreadable even with data", with(healthy(), func(s *Snapshot) {
			s.Errors = []SourceError{{Source: SourcePrivateEndpoints, Message: "page 2: 500"}}
		}), ModeEnforce, nil, connA, VerdictEndpointsUnreadable, []string{"guard-blind/raised"}},
		{"hold tag", with(healthy(), func(s *Snapshot) { s.VaultState.Tags = map[string]string{"Atlas-AKV-Guard": " HOLD "} }), ModeEnforce, nil, connA, VerdictHeld, []string{"approval-held/raised"}},
		{"hold tag in observe mode", with(healthy(), func(s *Snapshot) {
			s.VaultState = &vault.Vault{Found: true, EnablePurgeProtection: true, EnableSoftDelete: true, Tags: map[string]string{"atlas-akv-guard": "hold"}}
		}), ModeObserve, nil, connA, VerdictHeld, []string{"approval-held/raised"}},
		{"vault state unreadable: hold tag unknown", with(healthy(), fail(SourceVault, "403")), ModeEnforce, nil, connA, VerdictVaultUnreadable, []string{"guard-blind/raised"}},
		{"observe mode", healthy(), ModeObserve, nil, connA, VerdictWouldApprove, []string{"would-approve/raised"}},
		{"empty mode behaves as observe", healthy(), "", nil, connA, VerdictWouldApprove, []string{"would-approve/raised"}},
		{"unknown mode behaves as observe", healthy(), "Enforce", nil, connA, VerdictWouldApprove, []string{"would-approve/raised"}},
		{"connections unreadable", with(healthy(), fail(SourceConnections, "timeout")), ModeEnforce, nil, "", VerdictConnectionsUnreadable, []string{"guard-blind/raised"}},
		{"vault missing", with(healthy(), func(s *Snapshot) { s.VaultState = &vault.Vault{Found: false} }), ModeEnforce, nil, "", VerdictConnectionsUnreadable, []string{"vault-missing/raised"}},
		{"snapshot vault differs from config's vault", with(healthy(), func(s *Snapshot) { s.Vault = vaultB }), ModeEnforce, nil, "", VerdictConnectionsUnreadable, []string{"guard-blind/raised"}},
		{"zero snapshot vault is untrusted", with(healthy(), func(s *Snapshot) { s.Vault = resource.ID{} }), ModeEnforce, nil, "", VerdictConnectionsUnreadable, []string{"guard-blind/raised"}},
		{"config names no vault", with(healthy(), func(s *Snapshot) { s.Config.KeyVaultName = "" }, noVault), ModeEnforce, nil, "", VerdictNoConnection, nil},
		{"key unreadable does not block approval", with(healthy(), fail(SourceKey, "403")), ModeEnforce, []string{connA}, connA, VerdictApprove, []string{"guard-blind/raised"}},
		{"connection not on the vault yet", with(healthy(), func(s *Snapshot) { s.Connections = []vault.Connection{} }), ModeEnforce, nil, "", VerdictAwaitingConnection, nil},
		{"another guarded project asked for it", with(healthy(), addConn("other-pe", vault.StatusPending), func(s *Snapshot) {
			s.OtherRequests = map[string]string{"other-pe": "proj-b", strings.ToUpper(connA): "proj-c"}
		}), ModeEnforce, []string{connA}, "other-pe", VerdictOtherProject, nil},
		{"another project's request compares names exactly", with(healthy(), addConn("other-pe", vault.StatusPending), func(s *Snapshot) {
			s.OtherRequests = map[string]string{"Other-pe": "proj-b"}
		}), ModeEnforce, []string{connA}, "other-pe", VerdictForeign, []string{"foreign-connection/raised"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := enforce()
			p.Mode = tt.mode
			r := Plan(tt.snap, Memory{}, p, now)
			if got := approvedNames(r); !slices.Equal(got, tt.approve) {
				t.Errorf("approved %v, want %v", got, tt.approve)
			}
			ep := map[bool]string{true: epA}[tt.conn == ""]
			if got := verdict(r, tt.conn, ep); got != tt.verdict {
				t.Errorf("verdict for %q/%q = %q, want %q (decisions %+v)", tt.conn, ep, got, tt.verdict, r.Decisions)
			}
			for _, n := range r.Notices { // exactly the raised ones listed (endpoint-stuck aside)
				if !slices.Contains(tt.raised, string(n.Alert.Kind)+"/"+string(n.Action)) {
					t.Errorf("unexpected notice %s/%s", n.Alert.Kind, n.Action)
				}
			}
			if len(r.Notices) != len(tt.raised) {
				t.Errorf("notices %v, want %v", tags(r.Notices), tt.raised)
			}
		})
	}
}

func TestApprovalContent(t *testing.T) {
	// ARM spells the vault with other casing than Atlas: still the same vault.
	s := with(healthy(), addConn("zz-foreign", vault.StatusPending), addConn(connA, vault.StatusPending), func(s *Snapshot) {
		s.Vault = resource.ID{SubscriptionID: strings.ToUpper(vaultA.SubscriptionID), ResourceGroup: "RG-EAR", Name: "KV-ATLAS-A"}
		s.Endpoints = append(s.Endpoints, atlas.PrivateEndpoint{ID: epB, RegionName: "EUROPE_WEST", Status: atlas.StatusInitiating, PrivateEndpointConnectionName: connB})
		s.Connections = append([]vault.Connection{{Name: connB, Status: vault.StatusPending}}, s.Connections...)
	})
	r := Plan(s, Memory{}, enforce(), now)
	want := []Approval{
		{Vault: vaultA, Connection: connA, EndpointID: epA, Region: "US_EAST_2",
			Description: "Approved by atlas-akv-guard for MongoDB Atlas project " + project + ", EAR private endpoint " + epA + " (US_EAST_2), at 2026-03-10T12:00:00Z"},
		{Vault: vaultA, Connection: connB, EndpointID: epB, Region: "EUROPE_WEST",
			Description: "Approved by atlas-akv-guard for MongoDB Atlas project " + project + ", EAR private endpoint " + epB + " (EUROPE_WEST), at 2026-03-10T12:00:00Z"},
	}
	if !slices.Equal(r.Approvals, want) { // sorted, the duplicate listing approved once
		t.Fatalf("approvals = %+v\nwant %+v", r.Approvals, want)
	}
	var rows []string
	for _, d := range r.Decisions {
		rows = append(rows, d.Connection)
	}
	if want := []string{connA, connB, "zz-foreign"}; !slices.Equal(rows, want) {
		t.Errorf("decision rows %v, want %v", rows, want)
	}
}

// The event named vault B, but the project's Atlas config names vault A: the
// reconciler reads A only, so B's connection is never approved, and approvals
// always carry A.
func TestEventForOtherVaultNeverApprovesThere(t *testing.T) {
	h := hints(Hint{Kind: event.ConnectionChanged, Actor: "mallory@example.com", Object: vaultB.String() + "/privateEndpointConnections/" + connA})
	if r := Plan(with(healthy(), h, func(s *Snapshot) { s.Connections = []vault.Connection{} }), Memory{}, enforce(), now); len(r.Approvals) != 0 {
		t.Fatalf("approved %+v", r.Approvals)
	}
	if r := Plan(with(healthy(), h), Memory{}, enforce(), now); len(r.Approvals) != 1 || !r.Approvals[0].Vault.Equal(vaultA) {
		t.Fatalf("approvals %+v, want one on vault A", r.Approvals)
	}
}

func TestApprovedNotice(t *testing.T) {
	a := Approval{Vault: vaultA, Connection: connA, EndpointID: epA, Region: "US_EAST_2", Description: "d"}
	n := ApprovedNotice(project, a, "guard-mi", now)
	if n.Action != alert.AuditEvent || n.Alert.Kind != alert.Approved || n.Alert.Severity != alert.Info || !n.At.Equal(now) ||
		n.Alert.Fingerprint != Fingerprint(alert.Approved, project, connA) || n.Alert.Vault != vaultA.String() ||
		n.Alert.Actor != "guard-mi" || n.Alert.Details["endpointId"] != epA {
		t.Fatalf("notice %+v", n)
	}
	if ApprovedNotice(project, a, "guard-mi", now).ID != n.ID || ApprovedNotice(project, a, "guard-mi", now.Add(time.Nanosecond)).ID == n.ID {
		t.Errorf("ID not deterministic per time")
	}
}

// While Atlas is creating an endpoint it has not named a connection for yet,
// a new unrequested Pending connection may be Atlas's own: its alert waits
// up to ForeignGrace (it is never approved meanwhile); once Atlas names it,
// it is approved and nothing was raised.
func TestForeignAlertWaitsWhileAtlasCreatesAnEndpoint(t *testing.T) {
	const newConn = "atlas-pe-eastus-9"
	creating := with(healthy(), addConn(newConn, vault.StatusPending), func(s *Snapshot) {
		s.Endpoints = append(s.Endpoints, atlas.PrivateEndpoint{ID: epB, RegionName: "US_EAST_2", Status: atlas.StatusInitiating})
	})
	named := with(creating, func(s *Snapshot) {
		s.Endpoints = slices.Clone(s.Endpoints)
		s.Endpoints[1].PrivateEndpointConnectionName = newConn
	})
	rs := run(t, enforce(), step{0, creating, nil}, step{time.Minute, named, nil})
	if len(rs[0].Approvals) != 1 || !rs[0].Memory.Unrequested[newConn].Equal(now) || verdict(rs[0], newConn, "") != VerdictForeign {
		t.Errorf("first sight: %+v %v", rs[0].Approvals, rs[0].Memory.Unrequested)
	}
	if len(rs[1].Approvals) != 2 || len(rs[1].Memory.Unrequested) != 0 {
		t.Errorf("after Atlas named it: %+v %v", rs[1].Approvals, rs[1].Memory.Unrequested)
	}
	// Atlas never names it: just under the grace nothing, then the alert.
	run(t, enforce(), step{0, creating, nil}, step{DefaultForeignGrace - time.Second, creating, nil},
		step{DefaultForeignGrace, creating, []string{"foreign-connection/raised"}})
	// Reported at once when Atlas creates nothing, or for a look-alike name.
	run(t, enforce(), step{0, with(healthy(), addConn(newConn, vault.StatusPending)), []string{"foreign-connection/raised"}})
	run(t, enforce(), step{0, with(creating, addConn(connA+"-evil", vault.StatusPending)), []string{"foreign-connection/raised"}})
}

// An open foreign-connection alert stays open when Atlas starts creating an
// endpoint afterwards: the deferral only delays a first report, it never
// resolves one already sent (that would be a resolve and a re-raise for a
// connection that stayed Pending throughout).
func TestOpenForeignAlertIsNotResolvedByADeferral(t *testing.T) {
	const stranger = "shadow-pe"
	foreign := with(settled(), addConn(stranger, vault.StatusPending))
	creating := with(foreign, func(s *Snapshot) {
		s.Endpoints = append(slices.Clone(s.Endpoints), atlas.PrivateEndpoint{ID: epB, RegionName: "US_EAST_2", Status: atlas.StatusInitiating})
	})
	run(t, enforce(),
		step{0, foreign, []string{"foreign-connection/raised"}},
		step{time.Second, creating, nil},
		step{2 * time.Second, foreign, nil})
}
