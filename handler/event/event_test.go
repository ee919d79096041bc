package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/azsystemevents"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

const (
	sub     = "8f3c2a1e-4b7d-4e9a-9c1f-2d6b5a7e0c34"
	rg      = "rg-atlas-ear-prod"
	rgID    = "/subscriptions/" + sub + "/resourceGroups/" + rg
	kvName  = "kv-atlas-ear-prod"
	kvID    = rgID + "/providers/Microsoft.KeyVault/vaults/" + kvName
	keyName = "atlas-ear-key"
	keyV1   = "7d1e9f2a4b6c48e0a3f5d8c1b2e4a6f9"
	keyV2   = "b40c6e1d9a3f4e27856c0d2f1a9b3e58"
	pecName = "atlas-pe-eastus2-6752f0c9a1d4e83b27c5f601.3b4f1c2a-9d7e-4a6b-8c5d-1e2f3a4b5c6d"
	proxy   = "atlas-pe-eastus2-6752f0c9a1d4e83b27c5f601.c8a1e5f3-2b7d-4e9c-a6f0-3d1b8e4c7a92"
	userUPN = "ada.okafor@contoso.com"
	// Actors of the fixtures' callers.
	managedIdentityClientID = "6d2f8b1e-3c9a-4e7d-a5b0-1f4c7e9d2a68"
	managedIdentityObjectID = "a8e3c5f1-0b2d-4c6e-9f7a-3d5b1e8c0f42"
	servicePrincipalAZP     = "0f9d3b7a-1e5c-4a2b-8d6f-9c3e1a7b5d24"
)

var kv = resource.ID{SubscriptionID: sub, ResourceGroup: rg, Name: kvName}

func readFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func ptime(s string) *time.Time { t := utc(s); return &t }

// diffTrigger lists the fields in which got differs from want.
func diffTrigger(got, want Trigger) []string {
	var d []string
	field := func(name string, g, w any) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	field("Kind", got.Kind, want.Kind)
	field("Type", got.Type, want.Type)
	field("EventID", got.EventID, want.EventID)
	if !got.Time.Equal(want.Time) {
		d = append(d, fmt.Sprintf("Time = %v, want %v", got.Time, want.Time))
	}
	field("Vault", got.Vault, want.Vault)
	field("Scope", got.Scope, want.Scope)
	field("Object", got.Object, want.Object)
	field("Version", got.Version, want.Version)
	field("Operation", got.Operation, want.Operation)
	field("Actor", got.Actor, want.Actor)
	ptr := func(name string, g, w *time.Time) {
		switch {
		case g == nil && w == nil:
		case g == nil || w == nil || !g.Equal(*w) || g.Location() != time.UTC:
			d = append(d, fmt.Sprintf("%s = %v, want %v (UTC)", name, g, w))
		}
	}
	ptr("NotBefore", got.NotBefore, want.NotBefore)
	ptr("Expires", got.Expires, want.Expires)
	return d
}

// fixtureCases maps an event fixture (without extension) to the Trigger it
// must give. Where "<name>.cloudevents.json" exists it must give the same.
var fixtureCases = []struct {
	name string
	want Trigger
}{
	{"keyvault-key-new-version-created", Trigger{
		Kind: KeyNewVersion, Type: azsystemevents.TypeKeyVaultKeyNewVersionCreated,
		EventID: "c1f0e8a2-6b3d-4f7e-9a15-3d2c8b7e4f60", Time: utc("2026-11-28T09:29:41.6634514Z"),
		Vault: kv, Scope: kvID, Object: keyName, Version: keyV2,
		NotBefore: ptime("2026-11-28T09:29:41Z"), Expires: ptime("2027-11-28T09:30:59Z"),
	}},
	{"keyvault-key-near-expiry", Trigger{
		Kind: KeyNearExpiry, Type: azsystemevents.TypeKeyVaultKeyNearExpiry,
		EventID: "5a7d2c9e-1f4b-4a83-b6e0-9c2d4f8a1b37", Time: utc("2026-12-02T00:00:07.1185203Z"),
		Vault: kv, Scope: kvID, Object: keyName, Version: keyV1,
		NotBefore: ptime("2026-01-01T00:00:43Z"), Expires: ptime("2027-01-01T00:00:59Z"),
	}},
	{"keyvault-key-near-expiry-docs-sample", Trigger{
		Kind: KeyNearExpiry, Type: azsystemevents.TypeKeyVaultKeyNearExpiry,
		EventID: "00eccf70-95a7-4e7c-8299-2eb17ee9ad64", Time: utc("2026-12-02T00:00:07.1185203Z"),
		Vault: kv, Scope: kvID, Object: keyName, Version: keyV1,
		NotBefore: ptime("2026-01-01T00:00:43Z"), Expires: ptime("2027-01-01T00:00:59Z"),
	}},
	{"keyvault-key-expired", Trigger{
		Kind: KeyExpired, Type: azsystemevents.TypeKeyVaultKeyExpired,
		EventID: "e93b1f60-2c8a-4d5e-a7f1-6b0c3d9e2a45", Time: utc("2027-01-01T03:21:05.9042217Z"),
		Vault: kv, Scope: kvID, Object: keyName, Version: keyV1,
		NotBefore: ptime("2026-01-01T00:00:43Z"), Expires: ptime("2027-01-01T00:00:59Z"),
	}},
	{"keyvault-vault-access-policy-changed", Trigger{
		Kind: AccessPolicyChanged, Type: azsystemevents.TypeKeyVaultAccessPolicyChanged,
		EventID: "0b6e4d2a-8c1f-4f93-a5d7-2e9b1c6f3a80", Time: utc("2026-11-28T10:02:13.4471926Z"),
		Vault: kv, Scope: kvID,
	}},
	{"keyvault-secret-new-version-created", Trigger{
		Kind: Unrelated, Type: azsystemevents.TypeKeyVaultSecretNewVersionCreated,
		EventID: "3d8f1a6c-4e2b-4c70-9b5a-1f7e2d8c6a93", Time: utc("2026-11-28T09:31:40.1036736Z"),
	}},
	{"keyvault-certificate-near-expiry", Trigger{
		Kind: Unrelated, Type: azsystemevents.TypeKeyVaultCertificateNearExpiry,
		EventID: "91c4e7b2-5d3a-4f08-8e6b-2a1c9f7d4b03", Time: utc("2026-12-02T00:00:09.5521873Z"),
	}},
	{"arm-pec-write-rejected", Trigger{
		Kind: ConnectionChanged, Type: azsystemevents.TypeResourceWriteSuccess,
		EventID: "8b2d5f9a-3c6e-4a1b-9e7d-0f4c8a2e6b13", Time: utc("2026-11-28T09:41:17.3306522Z"),
		Vault: kv, Scope: kvID, Object: pecName, Operation: OpConnectionWrite, Actor: userUPN,
	}},
	{"arm-pec-write-approved-by-managed-identity", Trigger{
		Kind: ConnectionChanged, Type: azsystemevents.TypeResourceWriteSuccess,
		EventID: "2e7a9c1f-5b3d-4d8e-a6f0-9c1b4e7d2a58", Time: utc("2026-11-28T09:48:02.0913477Z"),
		Vault: kv, Scope: kvID, Object: pecName, Operation: OpConnectionWrite, Actor: managedIdentityClientID,
	}},
	{"arm-pec-delete", Trigger{
		Kind: ConnectionChanged, Type: azsystemevents.TypeResourceDeleteSuccess,
		EventID: "f4c8a2e6-7b1d-4e3f-9a5c-2d6b0e8f1a37", Time: utc("2026-11-28T09:52:44.7718093Z"),
		Vault: kv, Scope: kvID, Object: pecName, Operation: OpConnectionDelete, Actor: userUPN,
	}},
	{"arm-pec-proxy-write", Trigger{
		Kind: ConnectionChanged, Type: azsystemevents.TypeResourceWriteSuccess,
		EventID: "6a1e3c5b-9d7f-4b2a-8e0c-4f6d2a8b1c95", Time: utc("2026-11-28T09:12:05.5520148Z"),
		Vault: kv, Scope: kvID, Object: proxy, Operation: OpConnectionProxyWrite, Actor: servicePrincipalAZP,
	}},
	{"arm-pec-proxy-delete", Trigger{
		Kind: ConnectionChanged, Type: azsystemevents.TypeResourceDeleteSuccess,
		EventID: "7c3a5e1d-2f8b-4c9e-a1d6-8b0e4f2c6a73", Time: utc("2026-11-28T11:03:29.8847102Z"),
		Vault: kv, Scope: kvID, Object: proxy, Operation: OpConnectionProxyDelete, Actor: servicePrincipalAZP,
	}},
	{"arm-pec-proxy-validate-action", Trigger{
		Kind: Unrelated, Type: azsystemevents.TypeResourceActionSuccess,
		EventID: "1d9f5b3a-8e2c-4a7d-b6e1-3c5a9f7d2b04", Time: utc("2026-11-28T09:12:03.1205876Z"),
	}},
	{"arm-pec-write-failure", Trigger{
		Kind: Unrelated, Type: azsystemevents.TypeResourceWriteFailure,
		EventID: "b5e9d3a7-4c1f-4e6b-8a2d-7f3c1e9b5d60", Time: utc("2026-11-28T09:40:58.0021945Z"),
	}},
	{"arm-vault-write", Trigger{
		Kind: VaultChanged, Type: azsystemevents.TypeResourceWriteSuccess,
		EventID: "3f7b1d9e-6a4c-4f2e-8d0b-5c9a3e7f1b26", Time: utc("2026-11-28T08:15:36.6619230Z"),
		Vault: kv, Scope: kvID, Operation: OpVaultWrite, Actor: managedIdentityObjectID,
	}},
	{"arm-vault-delete", Trigger{
		Kind: VaultChanged, Type: azsystemevents.TypeResourceDeleteSuccess,
		EventID: "a2c6e0b4-1d5f-4a9c-b3e7-6f0a4c8e2d19", Time: utc("2026-11-28T12:20:51.4432908Z"),
		Vault: kv, Scope: kvID, Operation: OpVaultDelete, Actor: userUPN,
	}},
	{"arm-role-assignment-delete-rg-scope", Trigger{
		Kind: RoleAssignmentDeleted, Type: azsystemevents.TypeResourceDeleteSuccess,
		EventID: "c9e3a7f1-5b2d-4d6e-9f8a-1b4c7e0d3a62", Time: utc("2026-11-28T13:05:12.2094471Z"),
		Scope: rgID, Operation: OpRoleAssignmentDelete, Actor: servicePrincipalAZP,
	}},
	{"arm-role-assignment-delete-vault-scope", Trigger{
		Kind: RoleAssignmentDeleted, Type: azsystemevents.TypeResourceDeleteSuccess,
		EventID: "e1b5d9a3-7f4c-4b8e-a2d6-9c3f7b1e5a04", Time: utc("2026-11-28T13:07:48.9920315Z"),
		Vault: kv, Scope: kvID, Operation: OpRoleAssignmentDelete,
		Actor: "ada.okafor_fabrikam.com#EXT#@contoso.onmicrosoft.com",
	}},
	{"arm-role-assignment-delete-storage-account-scope", Trigger{
		Kind: Unrelated, Type: azsystemevents.TypeResourceDeleteSuccess,
		EventID: "4e8a2c6f-0b3d-4f7a-9c1e-6d2b8f4a0c57", Time: utc("2026-11-28T13:09:02.1187764Z"),
	}},
	{"arm-storage-write-unrelated", Trigger{
		Kind: Unrelated, Type: azsystemevents.TypeResourceWriteSuccess,
		EventID: "9d3f7b1a-4e8c-4a2d-b6f0-1c5e9a3d7b80", Time: utc("2026-11-28T08:01:19.7753204Z"),
	}},
}

func decodeOneEvent(t *testing.T, raw []byte) Event {
	t.Helper()
	evs, err := Decode(raw)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if len(evs) != 1 {
		t.Fatalf("Decode: %d events, want 1", len(evs))
	}
	return evs[0]
}

func TestDecodeClassifyFixtures(t *testing.T) {
	ceSeen := 0
	for _, tc := range fixtureCases {
		for _, schema := range []string{SchemaEventGrid, SchemaCloudEvents} {
			file := tc.name + ".json"
			if schema == SchemaCloudEvents {
				file = tc.name + ".cloudevents.json"
				if _, err := os.Stat(filepath.Join("testdata", file)); err != nil {
					continue
				}
				ceSeen++
			}
			t.Run(file, func(t *testing.T) {
				e := decodeOneEvent(t, readFixture(t, file))
				if e.Schema != schema {
					t.Errorf("Schema = %q, want %q", e.Schema, schema)
				}
				if e.Data == nil || e.Source == "" || e.Subject == "" {
					t.Errorf("Data, Source or Subject empty: %+v", e)
				}
				got, err := Classify(e)
				if err != nil {
					t.Fatalf("Classify: %v", err)
				}
				for _, d := range diffTrigger(got, tc.want) {
					t.Error(d)
				}
			})
		}
	}
	// Every related kind is covered in CloudEvents too.
	if ceSeen < 12 {
		t.Errorf("only %d CloudEvents fixtures", ceSeen)
	}
}

// TestKeyVaultEpochPrecision guards against float32 decoding of NBF/EXP
// (azsystemevents' model), which rounds current timestamps by up to a minute.
func TestKeyVaultEpochPrecision(t *testing.T) {
	e := decodeOneEvent(t, readFixture(t, "keyvault-key-near-expiry.json"))
	var lossy azsystemevents.KeyVaultKeyNearExpiryEventData
	if err := json.Unmarshal(e.Data, &lossy); err != nil {
		t.Fatal(err)
	}
	tr, err := Classify(e)
	if err != nil {
		t.Fatal(err)
	}
	if lossySec := int64(*lossy.EXP); lossySec == tr.Expires.Unix() {
		t.Fatalf("fixture does not exercise float32 rounding: %d", lossySec)
	}
	if got, want := tr.Expires.Unix(), int64(1798761659); got != want {
		t.Errorf("Expires = %d, want %d", got, want)
	}
}

func TestHostEnvelopes(t *testing.T) {
	want := map[string]Trigger{}
	for _, tc := range fixtureCases {
		want[tc.want.EventID] = tc.want
	}
	tests := []struct {
		file     string
		wantIDs  []string
		schema   string
		function string
	}{
		{"host-eventgrid-string-wrapped.json", []string{"8b2d5f9a-3c6e-4a1b-9e7d-0f4c8a2e6b13"}, SchemaEventGrid, "PrivateLinkEvents"},
		{"host-eventgrid-double-wrapped.json", []string{"5a7d2c9e-1f4b-4a83-b6e0-9c2d4f8a1b37"}, SchemaEventGrid, "KeyVaultEvents"},
		{"host-eventgrid-object.json", []string{"a2c6e0b4-1d5f-4a9c-b3e7-6f0a4c8e2d19"}, SchemaEventGrid, "PrivateLinkEvents"},
		{"host-eventgrid-array.json", []string{"f4c8a2e6-7b1d-4e3f-9a5c-2d6b0e8f1a37", "9d3f7b1a-4e8c-4a2d-b6f0-1c5e9a3d7b80"}, SchemaEventGrid, "PrivateLinkEvents"},
		{"host-cloudevents-string-wrapped.json", []string{"c1f0e8a2-6b3d-4f7e-9a15-3d2c8b7e4f60"}, SchemaCloudEvents, "KeyVaultEvents"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			inv, err := DecodeInvocation(readFixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			var meta struct{ Sys struct{ MethodName string } }
			if err := json.Unmarshal(inv.Metadata["sys"], &meta.Sys); err != nil || meta.Sys.MethodName != tc.function {
				t.Errorf("Metadata.sys.MethodName = %q (%v), want %q", meta.Sys.MethodName, err, tc.function)
			}
			raw, err := inv.Binding("event")
			if err != nil {
				t.Fatal(err)
			}
			evs, err := Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != len(tc.wantIDs) {
				t.Fatalf("%d events, want %d", len(evs), len(tc.wantIDs))
			}
			for i, e := range evs {
				if e.ID != tc.wantIDs[i] || e.Schema != tc.schema {
					t.Errorf("event %d: id %q schema %q, want %q %q", i, e.ID, e.Schema, tc.wantIDs[i], tc.schema)
				}
				got, err := Classify(e)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range diffTrigger(got, want[e.ID]) {
					t.Errorf("event %d: %s", i, d)
				}
			}
		})
	}
}

func TestDecodeTimer(t *testing.T) {
	tests := []struct {
		file    string
		want    *ScheduleStatus
		pastDue bool
	}{
		{"host-timer.json", &ScheduleStatus{
			Last: utc("2026-11-28T09:29:00.0043791Z"), Next: utc("2026-11-28T09:30:00Z"), LastUpdated: utc("2026-11-28T09:29:00.0043791Z"),
		}, false},
		{"host-timer-null-status.json", nil, false},
		{"host-timer-past-due.json", &ScheduleStatus{
			Next: utc("2026-11-28T09:30:00.0019297Z"), LastUpdated: utc("2026-11-28T09:24:31.5507046Z"),
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			inv, err := DecodeInvocation(readFixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := inv.Binding("timer")
			if err != nil {
				t.Fatal(err)
			}
			tm, err := DecodeTimer(raw)
			if err != nil {
				t.Fatal(err)
			}
			if tm.IsPastDue != tc.pastDue {
				t.Errorf("IsPastDue = %v, want %v", tm.IsPastDue, tc.pastDue)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, tm.Schedule); err != nil || compact.String() != `{"AdjustForDST":true}` {
				t.Errorf("Schedule = %s", tm.Schedule)
			}
			switch got := tm.ScheduleStatus; {
			case tc.want == nil && got != nil:
				t.Errorf("ScheduleStatus = %+v, want nil", got)
			case tc.want != nil && got == nil:
				t.Errorf("ScheduleStatus = nil, want %+v", tc.want)
			case tc.want != nil:
				if !got.Last.Equal(tc.want.Last) || !got.Next.Equal(tc.want.Next) || !got.LastUpdated.Equal(tc.want.LastUpdated) {
					t.Errorf("ScheduleStatus = %+v, want %+v", got, tc.want)
				}
				if tc.want.Last.IsZero() != got.Last.IsZero() {
					t.Errorf("Last.IsZero = %v", got.Last.IsZero())
				}
			}
		})
	}
	// The timer value may also arrive string-wrapped.
	tm, err := DecodeTimer(json.RawMessage(`"{\"Schedule\":{},\"ScheduleStatus\":null,\"IsPastDue\":true}"`))
	if err != nil || !tm.IsPastDue || tm.ScheduleStatus != nil {
		t.Errorf("string-wrapped timer: %+v, %v", tm, err)
	}
}

// TestMalformed: every decoder rejects bad input with an error that wraps
// ErrMalformed and says what is wrong.
func TestMalformed(t *testing.T) {
	decodeClassify := func(b []byte) error {
		evs, err := Decode(b)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if _, err := Classify(e); err != nil {
				return err
			}
		}
		return nil
	}
	invocation := func(b []byte) error { _, err := DecodeInvocation(b); return err }
	timer := func(b []byte) error { _, err := DecodeTimer(b); return err }
	fixture := func(name string) []byte { return readFixture(t, name) }
	wrap := func(b []byte, n int) []byte {
		for range n {
			b, _ = json.Marshal(string(b))
		}
		return b
	}
	keyEvent := fixture("keyvault-key-near-expiry.json")
	tests := []struct {
		name  string
		input []byte
		run   func([]byte) error
		want  []string
	}{
		{"truncated", fixture("malformed-truncated.json"), decodeClassify, []string{"event:", "unexpected end of JSON input"}},
		{"truncated string-wrapped", wrap(fixture("malformed-truncated.json"), 1), decodeClassify, []string{"unexpected end of JSON input"}},
		{"data is a number", fixture("malformed-data-is-number.json"), decodeClassify, []string{"KeyNearExpiry", "data: want an object, got a number"}},
		{"eventTime not a time", fixture("malformed-eventtime-not-a-time.json"), decodeClassify, []string{"eventTime", `"yesterday" is not an RFC 3339 time`}},
		{"missing data", fixture("malformed-missing-data.json"), decodeClassify, []string{"ResourceWriteSuccess", "missing data"}},
		{"missing type", fixture("malformed-missing-type.json"), decodeClassify, []string{"missing type"}},
		{"EXP not a number", fixture("malformed-keyvault-exp-not-a-number.json"), decodeClassify, []string{"KeyExpired", "epoch seconds", "next tuesday"}},
		{"pec write not on a vault", fixture("malformed-arm-pec-write-not-a-vault.json"), decodeClassify, []string{"resourceUri", "not a Key Vault resource ID"}},
		{"empty array", fixture("malformed-empty-array.json"), decodeClassify, []string{"event array is empty"}},
		{"string-wrapped garbage", fixture("malformed-string-wrapped-garbage.json"), decodeClassify, []string{"event:", "invalid character"}},
		{"not JSON", fixture("malformed-host-not-json.txt"), decodeClassify, []string{`invalid JSON starting "<html>`}},
		{"empty", nil, decodeClassify, []string{"event is empty"}},
		{"empty string", []byte(`"  "`), decodeClassify, []string{"event is empty"}},
		{"number", []byte(`42`), decodeClassify, []string{"want an object or an array, got a number"}},
		{"array of strings", []byte(`["x"]`), decodeClassify, []string{"item 0: want an object, got a string"}},
		{"array item bad", []byte(`[` + string(keyEvent) + `,{"eventType":"x"}]`), decodeClassify, []string{"item 1", "missing eventTime"}},
		{"wrapped five times", wrap(keyEvent, 5), decodeClassify, []string{"wrapped in more than 4 JSON strings"}},
		{"bad string escape", []byte(`"{\q}"`), decodeClassify, []string{"not a valid JSON string"}},
		{"id is a number", []byte(`{"id":7,"eventType":"T","eventTime":"2026-11-28T09:29:41Z"}`), decodeClassify, []string{"field id: want string, got number"}},
		{"missing id", []byte(`{"eventType":"T","eventTime":"2026-11-28T09:29:41Z"}`), decodeClassify, []string{"event T: missing id"}},
		{"cloudevent without source", []byte(`{"id":"1","type":"T","specversion":"1.0"}`), decodeClassify, []string{"cloudevent T: missing source"}},
		{"cloudevent bad time", []byte(`{"id":"1","type":"T","source":"/s","specversion":"1.0","time":"noon"}`), decodeClassify, []string{"cloudevent T: time", `"noon"`}},
		{"cloudevent 0.3", []byte(`{"id":"1","type":"T","source":"/s","specversion":"0.3"}`), decodeClassify, []string{`specversion "0.3"`}},
		{"both schemas", []byte(`{"id":"1","type":"T","eventType":"T","specversion":"1.0"}`), decodeClassify, []string{"both specversion"}},
		{"key event on a non-vault topic", []byte(`{"id":"1","eventType":"Microsoft.KeyVault.KeyExpired","topic":"/subscriptions/s","eventTime":"2026-11-28T09:29:41Z","data":{"ObjectName":"k"}}`), decodeClassify, []string{"source/topic", "not a Key Vault resource ID"}},
		{"key event without key", []byte(`{"id":"1","eventType":"Microsoft.KeyVault.KeyExpired","topic":"` + kvID + `","eventTime":"2026-11-28T09:29:41Z","data":{}}`), decodeClassify, []string{"names no key"}},
		{"role assignment without id", []byte(`{"id":"1","eventType":"Microsoft.Resources.ResourceDeleteSuccess","eventTime":"2026-11-28T09:29:41Z","data":{"operationName":"Microsoft.Authorization/roleAssignments/delete"}}`), decodeClassify, []string{"no resourceUri"}},
		{"claims wrong type", []byte(`{"id":"1","eventType":"Microsoft.Resources.ResourceDeleteSuccess","eventTime":"2026-11-28T09:29:41Z","data":{"operationName":"Microsoft.KeyVault/vaults/delete","claims":"x"}}`), decodeClassify, []string{"field claims"}},
		{"host: no Data", fixture("malformed-host-no-data.json"), invocation, []string{"no Data object"}},
		{"host: not JSON", fixture("malformed-host-not-json.txt"), invocation, []string{"want a JSON object", "<html>"}},
		{"host: truncated", []byte(`{"Data":{"event":"{`), invocation, []string{"invocation body", "unexpected end of JSON input"}},
		{"host: Data is a string", []byte(`{"Data":"x"}`), invocation, []string{"invocation Data: want an object, got a string"}},
		{"host: Data is null", []byte(`{"Data":null}`), invocation, []string{"Data is null"}},
		{"host: Metadata is a number", []byte(`{"Data":{},"Metadata":1}`), invocation, []string{"invocation Metadata: want an object, got a number"}},
		{"host: an event, not an invocation", fixture("arm-pec-delete.json"), invocation, []string{"no Data object", "posted directly"}},
		{"host: empty", []byte(" \n"), invocation, []string{"invocation body is empty"}},
		{"timer: bad time", fixture("malformed-timer-bad-time.json"), timer, []string{"timer:", `"28/11/2026 09:29" is not an RFC 3339 time`}},
		{"timer: not a timer", []byte(`{"id":"x"}`), timer, []string{"not a timer payload"}},
		{"timer: number", []byte(`1`), timer, []string{"timer: want an object, got a number"}},
		{"timer: IsPastDue string", []byte(`{"IsPastDue":"yes"}`), timer, []string{"field IsPastDue"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(tc.input)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %q does not wrap ErrMalformed", err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestBinding: a missing or null binding is an error naming it.
func TestBinding(t *testing.T) {
	inv, err := DecodeInvocation([]byte(`{"Data":{"event":null},"Metadata":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Binding("event"); err == nil || !strings.Contains(err.Error(), "Data.event is null") {
		t.Errorf("null binding: %v", err)
	}
	if _, err := inv.Binding("timer"); err == nil || !strings.Contains(err.Error(), "no Data.timer") {
		t.Errorf("missing binding: %v", err)
	}
}

// bigEvent returns a valid Key Vault event of about size bytes.
func bigEvent(tb testing.TB, size int) []byte {
	var e map[string]any
	if err := json.Unmarshal(readFixture(tb, "keyvault-key-near-expiry.json"), &e); err != nil {
		tb.Fatal(err)
	}
	e["padding"] = strings.Repeat("x", size)
	b, err := json.Marshal(e)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestLargeBodies(t *testing.T) {
	const twoMiB = 2 << 20

	// A 2 MiB event in a valid host body: the body is accepted, the event is
	// not (Event Grid never delivers more than 1 MB per event).
	body, _ := json.Marshal(map[string]any{"Data": map[string]any{"event": string(bigEvent(t, twoMiB))}})
	inv, err := DecodeInvocation(body)
	if err != nil {
		t.Fatalf("DecodeInvocation(%d bytes): %v", len(body), err)
	}
	raw, _ := inv.Binding("event")
	if _, err := Decode(raw); err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "more than the 1048576 Event Grid allows") {
		t.Errorf("Decode 2 MiB event: %v", err)
	}

	// An event just under the limit decodes.
	if _, err := Decode(bigEvent(t, MaxEventSize-2048)); err != nil {
		t.Errorf("Decode event under the limit: %v", err)
	}

	// 2 MiB of string-wrapped garbage.
	garbage, _ := json.Marshal(strings.Repeat("\x00{[", twoMiB/3))
	if _, err := Decode(garbage); err == nil || !errors.Is(err, ErrMalformed) {
		t.Errorf("Decode 2 MiB garbage: %v", err)
	}

	// A body over MaxInvocationSize is refused before parsing.
	huge := bytes.Repeat([]byte(" "), MaxInvocationSize+1)
	if _, err := DecodeInvocation(huge); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("DecodeInvocation huge: %v", err)
	}

	// A deeply nested body is an error, not a stack overflow.
	deep := []byte(`{"Data":{"event":` + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + `}}`)
	if _, err := DecodeInvocation(deep); err == nil {
		t.Error("DecodeInvocation deep: no error")
	}
}

func TestEpochSeconds(t *testing.T) {
	tests := []struct {
		in      string
		want    int64 // 0: none
		wantErr bool
	}{
		{`1798761659`, 1798761659, false},
		{`"1798761659"`, 1798761659, false},
		{`" 1798761659 "`, 1798761659, false},
		{`1.798761659e9`, 1798761659, false},
		{`1798761659.0`, 1798761659, false},
		{`null`, 0, false},
		{`""`, 0, false},
		{`0`, 0, false},
		{`-1`, 0, true},
		{`1798761659.5`, 0, true},
		{`1e300`, 0, true},
		{`253402300800`, 0, true},
		{`"soon"`, 0, true},
		{`true`, 0, true},
	}
	for _, tc := range tests {
		var s epochSeconds
		err := json.Unmarshal([]byte(tc.in), &s)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		got := s.time()
		switch {
		case tc.want == 0 && got != nil:
			t.Errorf("%s: %v, want none", tc.in, got)
		case tc.want != 0 && (got == nil || got.Unix() != tc.want):
			t.Errorf("%s: %v, want %d", tc.in, got, tc.want)
		}
	}
}

// TestActor: who did it, in order of preference.
func TestActor(t *testing.T) {
	const (
		xmlsoap = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
		oidURI  = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	)
	tests := []struct {
		claims map[string]any
		want   string
	}{
		{map[string]any{xmlsoap + "upn": "u@x", xmlsoap + "name": "n@x", "appid": "app", oidURI: "oid"}, "u@x"},
		{map[string]any{"upn": "short@x", "appid": "app"}, "short@x"},
		{map[string]any{"unique_name": "live.com#a@b", "appid": "app"}, "live.com#a@b"},
		{map[string]any{"email": "e@x", "appid": "app"}, "e@x"},
		{map[string]any{xmlsoap + "emailaddress": "e2@x", "appid": "app"}, "e2@x"},
		{map[string]any{xmlsoap + "name": "n@x", "name": "Display Name", "appid": "app"}, "n@x"},
		{map[string]any{"name": "Display Name", "appid": "app", oidURI: "oid"}, "app"},
		{map[string]any{"azp": "azp", "oid": "oid"}, "azp"},
		{map[string]any{oidURI: "oid-uri"}, "oid-uri"},
		{map[string]any{"oid": "oid"}, "oid"},
		{map[string]any{xmlsoap + "upn": 42, "oid": "oid"}, "oid"},
		{map[string]any{xmlsoap + "upn": "  ", "oid": "oid"}, "oid"},
		{map[string]any{}, ""},
		{nil, ""},
	}
	for _, tc := range tests {
		data, _ := json.Marshal(map[string]any{
			"operationName": "microsoft.keyvault/VAULTS/privateendpointconnections/WRITE", // ARM is case-insensitive
			"resourceUri":   kvID + "/privateEndpointConnections/c1",
			"claims":        tc.claims,
		})
		tr, err := Classify(Event{ID: "1", Type: "microsoft.resources.resourcewritesuccess", Data: data})
		if err != nil {
			t.Fatalf("%v: %v", tc.claims, err)
		}
		if tr.Kind != ConnectionChanged || tr.Object != "c1" || !tr.Vault.Equal(kv) {
			t.Errorf("%v: %+v", tc.claims, tr)
		}
		if tr.Actor != tc.want {
			t.Errorf("%v: Actor %q, want %q", tc.claims, tr.Actor, tc.want)
		}
	}
}

func TestRoleAssignmentScopes(t *testing.T) {
	const ra = "/providers/Microsoft.Authorization/roleAssignments/9a4c2e7f-1b3d-4f6a-8c0e-5d7b9f1a3c26"
	tests := []struct {
		scope     string
		kind      Kind
		wantVault bool
	}{
		{"/subscriptions/" + sub, RoleAssignmentDeleted, false},
		{rgID, RoleAssignmentDeleted, false},
		{kvID, RoleAssignmentDeleted, true},
		{kvID + "/keys/" + keyName, RoleAssignmentDeleted, true},
		{"/providers/Microsoft.Management/managementGroups/mg-platform", RoleAssignmentDeleted, false},
		{"", RoleAssignmentDeleted, false},
		{rgID + "/providers/Microsoft.Storage/storageAccounts/st1", Unrelated, false},
		{"/subscriptions/" + sub + "/resourceGroups", Unrelated, false},
	}
	for _, tc := range tests {
		data, _ := json.Marshal(map[string]any{"operationName": OpRoleAssignmentDelete, "resourceUri": tc.scope + ra})
		tr, err := Classify(Event{ID: "1", Type: azsystemevents.TypeResourceDeleteSuccess, Data: data})
		if err != nil {
			t.Fatalf("%q: %v", tc.scope, err)
		}
		if tr.Kind != tc.kind || tr.Vault.IsZero() == tc.wantVault {
			t.Errorf("%q: Kind %s Vault %v, want %s (vault %v)", tc.scope, tr.Kind, tr.Vault, tc.kind, tc.wantVault)
		}
		if tc.kind == RoleAssignmentDeleted && tr.Scope != orElse(tc.scope, "/") {
			t.Errorf("%q: Scope %q", tc.scope, tr.Scope)
		}
		if tc.kind == Unrelated && (tr.Scope != "" || tr.Actor != "" || tr.Operation != "") {
			t.Errorf("%q: unrelated trigger carries data: %+v", tc.scope, tr)
		}
	}
}

func TestCovers(t *testing.T) {
	other := resource.ID{SubscriptionID: sub, ResourceGroup: rg, Name: kvName + "-dr"}
	otherRG := resource.ID{SubscriptionID: sub, ResourceGroup: rg + "2", Name: kvName}
	upper := resource.ID{SubscriptionID: strings.ToUpper(sub), ResourceGroup: strings.ToUpper(rg), Name: strings.ToUpper(kvName)}
	tests := []struct {
		tr   Trigger
		v    resource.ID
		want bool
	}{
		{Trigger{Kind: KeyExpired, Vault: kv, Scope: kvID}, kv, true},
		{Trigger{Kind: KeyExpired, Vault: kv, Scope: kvID}, upper, true},
		{Trigger{Kind: KeyExpired, Vault: kv, Scope: kvID}, other, false},
		{Trigger{Kind: RoleAssignmentDeleted, Scope: rgID}, kv, true},
		{Trigger{Kind: RoleAssignmentDeleted, Scope: strings.ToLower(rgID)}, upper, true},
		{Trigger{Kind: RoleAssignmentDeleted, Scope: rgID}, otherRG, false},
		{Trigger{Kind: RoleAssignmentDeleted, Scope: rgID[:len(rgID)-1]}, kv, false}, // prefix of a name is not an ancestor
		{Trigger{Kind: RoleAssignmentDeleted, Scope: "/subscriptions/" + sub}, otherRG, true},
		{Trigger{Kind: RoleAssignmentDeleted, Scope: "/subscriptions/" + sub + "/"}, kv, true},
		{Trigger{Kind: RoleAssignmentDeleted, Scope: "/subscriptions/0000"}, kv, false},
		{Trigger{Kind: RoleAssignmentDeleted, Scope: "/providers/Microsoft.Management/managementGroups/mg"}, kv, true},
		{Trigger{Kind: RoleAssignmentDeleted, Scope: "/"}, kv, true},
		{Trigger{Kind: Unrelated, Vault: kv}, kv, false},
		{Trigger{Kind: KeyExpired, Vault: kv}, resource.ID{}, false},
	}
	for i, tc := range tests {
		if got := tc.tr.Covers(tc.v); got != tc.want {
			t.Errorf("%d: %+v Covers(%v) = %v, want %v", i, tc.tr, tc.v, got, tc.want)
		}
	}
}

// TestSubscriptionLists pins the lists the Bicep event subscriptions are
// checked against.
func TestSubscriptionLists(t *testing.T) {
	if got, want := KeyVaultEventTypes(), []string{
		"Microsoft.KeyVault.KeyNewVersionCreated",
		"Microsoft.KeyVault.KeyNearExpiry",
		"Microsoft.KeyVault.KeyExpired",
		"Microsoft.KeyVault.VaultAccessPolicyChanged",
	}; !slices.Equal(got, want) {
		t.Errorf("KeyVaultEventTypes = %q", got)
	}
	if got, want := ARMEventTypes(), []string{
		"Microsoft.Resources.ResourceWriteSuccess",
		"Microsoft.Resources.ResourceDeleteSuccess",
	}; !slices.Equal(got, want) {
		t.Errorf("ARMEventTypes = %q", got)
	}
	if got, want := ARMOperations(), []string{
		"Microsoft.KeyVault/vaults/privateEndpointConnections/write",
		"Microsoft.KeyVault/vaults/privateEndpointConnections/delete",
		"Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/write",
		"Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/delete",
		"Microsoft.KeyVault/vaults/write",
		"Microsoft.KeyVault/vaults/delete",
		"Microsoft.Authorization/roleAssignments/delete",
	}; !slices.Equal(got, want) {
		t.Errorf("ARMOperations = %q", got)
	}
	// Callers may not corrupt the lists.
	ARMEventTypes()[0] = "x"
	ARMOperations()[0] = "x"
	KeyVaultEventTypes()[0] = "x"
	if ARMEventTypes()[0] == "x" || ARMOperations()[0] == "x" || KeyVaultEventTypes()[0] == "x" {
		t.Error("lists share memory with the caller")
	}

	// Each listed type/operation classifies as related; the rest of the
	// Key Vault and Resources families as Unrelated.
	for _, typ := range KeyVaultEventTypes() {
		e := Event{ID: "1", Type: typ, Source: kvID, Subject: keyName, Data: json.RawMessage(`{"ObjectName":"k"}`)}
		if tr, err := Classify(e); err != nil || tr.Kind == Unrelated {
			t.Errorf("%s: %s, %v", typ, tr.Kind, err)
		}
	}
	for _, typ := range []string{
		azsystemevents.TypeKeyVaultSecretNewVersionCreated, azsystemevents.TypeKeyVaultSecretNearExpiry,
		azsystemevents.TypeKeyVaultSecretExpired, azsystemevents.TypeKeyVaultCertificateNewVersionCreated,
		azsystemevents.TypeKeyVaultCertificateNearExpiry, azsystemevents.TypeKeyVaultCertificateExpired,
		azsystemevents.TypeResourceActionSuccess, azsystemevents.TypeResourceWriteFailure,
		azsystemevents.TypeResourceDeleteCancel, "Microsoft.EventGrid.SubscriptionValidationEvent", "",
	} {
		data := json.RawMessage(`{"operationName":"` + OpConnectionWrite + `","resourceUri":"` + kvID + `/privateEndpointConnections/c"}`)
		if tr, err := Classify(Event{ID: "1", Type: typ, Source: kvID, Data: data}); err != nil || tr.Kind != Unrelated {
			t.Errorf("%s: %s, %v", typ, tr.Kind, err)
		}
	}
	for _, op := range ARMOperations() {
		uri := kvID + "/privateEndpointConnections/c"
		if strings.HasPrefix(op, "Microsoft.Authorization") {
			uri = rgID + "/providers/Microsoft.Authorization/roleAssignments/r"
		}
		data, _ := json.Marshal(map[string]string{"operationName": op, "resourceUri": uri})
		if tr, err := Classify(Event{ID: "1", Type: azsystemevents.TypeResourceWriteSuccess, Data: data}); err != nil || tr.Kind == Unrelated || tr.Operation != op {
			t.Errorf("%s: %+v, %v", op, tr, err)
		}
	}
}

// TestUnrelatedIgnoresData: an unrelated type is never an error, whatever its
// data.
func TestUnrelatedIgnoresData(t *testing.T) {
	for _, data := range []string{``, `42`, `"x"`, `{"claims":7}`, `[`} {
		e := Event{ID: "1", Type: azsystemevents.TypeKeyVaultSecretNewVersionCreated, Data: json.RawMessage(data)}
		if data == "" {
			e.Data = nil
		}
		if tr, err := Classify(e); err != nil || tr.Kind != Unrelated {
			t.Errorf("%q: %s, %v", data, tr.Kind, err)
		}
	}
	// A Resources event whose operation is unrelated ignores malformed
	// claims too, as long as data is an object.
	data := json.RawMessage(`{"operationName":"Microsoft.Storage/storageAccounts/write","claims":{"upn":7}}`)
	if tr, err := Classify(Event{ID: "1", Type: azsystemevents.TypeResourceWriteSuccess, Data: data}); err != nil || tr.Kind != Unrelated {
		t.Errorf("storage write: %s, %v", tr.Kind, err)
	}
}

var writeFuzzCorpus = flag.Bool("write-fuzz-corpus", false, "rewrite testdata/fuzz/Fuzz*/ seed files from the fixtures")

// fuzzSeeds returns the seed inputs of FuzzDecode: every event and host
// fixture, and the binding values of the host fixtures.
func fuzzSeeds(tb testing.TB) map[string][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	files = append(files, filepath.Join("testdata", "malformed-host-not-json.txt"))
	seeds := map[string][]byte{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		b := readFixture(tb, filepath.Base(f))
		seeds[name] = b
		if inv, err := DecodeInvocation(b); err == nil {
			for k, v := range inv.Data {
				seeds[name+"."+k] = v
			}
		}
	}
	return seeds
}

// TestWriteFuzzCorpus regenerates the committed seed corpus when run with
// -write-fuzz-corpus; otherwise it checks that the corpus exists.
func TestWriteFuzzCorpus(t *testing.T) {
	for _, fz := range []struct {
		dir    string
		filter func(name string) bool
	}{
		{"FuzzDecode", func(name string) bool { return !strings.Contains(name, "timer") }},
		{"FuzzDecodeTimer", func(name string) bool { return strings.Contains(name, "timer") }},
	} {
		dir := filepath.Join("testdata", "fuzz", fz.dir)
		if !*writeFuzzCorpus {
			if ents, err := os.ReadDir(dir); err != nil || len(ents) < 3 {
				t.Errorf("seed corpus %s: %d files, %v", dir, len(ents), err)
			}
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range fuzzSeeds(t) {
			if !fz.filter(name) {
				continue
			}
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

var knownKinds = []Kind{KeyNewVersion, KeyNearExpiry, KeyExpired, AccessPolicyChanged, ConnectionChanged, VaultChanged, RoleAssignmentDeleted, Unrelated}

func checkDecodeClassify(t *testing.T, b []byte) {
	evs, err := Decode(b)
	if err != nil {
		if !errors.Is(err, ErrMalformed) || evs != nil {
			t.Fatalf("Decode: %v (events %d)", err, len(evs))
		}
		return
	}
	if len(evs) == 0 {
		t.Fatal("Decode: no events and no error")
	}
	for _, e := range evs {
		if e.ID == "" || e.Type == "" || (e.Schema != SchemaEventGrid && e.Schema != SchemaCloudEvents) {
			t.Fatalf("Decode: invalid event %+v", e)
		}
		tr, err := Classify(e)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Classify: %v", err)
		}
		if !slices.Contains(knownKinds, tr.Kind) {
			t.Fatalf("Classify: kind %q", tr.Kind)
		}
		if err != nil || tr.Kind == Unrelated {
			continue
		}
		if tr.Kind == RoleAssignmentDeleted {
			if tr.Scope == "" {
				t.Fatalf("role assignment without scope: %+v", tr)
			}
		} else if tr.Vault.IsZero() || tr.Scope != tr.Vault.String() {
			t.Fatalf("%s without vault: %+v", tr.Kind, tr)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeClassify(t, b)
		inv, err := DecodeInvocation(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeInvocation: %v", err)
			}
			return
		}
		if inv.Data == nil {
			t.Fatal("DecodeInvocation: nil Data")
		}
		for _, v := range inv.Data {
			checkDecodeClassify(t, v)
		}
	})
}

func FuzzDecodeTimer(f *testing.F) {
	for name, b := range fuzzSeeds(f) {
		if strings.Contains(name, "timer") {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tm, err := DecodeTimer(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeTimer: %v", err)
			}
			return
		}
		if s := tm.ScheduleStatus; s != nil && (s.Last.Year() > 9999 || s.Next.Year() > 9999) {
			t.Fatalf("DecodeTimer: %+v", s)
		}
	})
}

func BenchmarkDecodeClassify(b *testing.B) {
	binding := func(file, name string) []byte {
		inv, err := DecodeInvocation(readFixture(b, file))
		if err != nil {
			b.Fatal(err)
		}
		raw, err := inv.Binding(name)
		if err != nil {
			b.Fatal(err)
		}
		return raw
	}
	for _, bc := range []struct {
		name string
		raw  []byte
		want Kind
	}{
		{"arm-string-wrapped", binding("host-eventgrid-string-wrapped.json", "event"), ConnectionChanged},
		{"arm-object", readFixture(b, "arm-pec-write-rejected.json"), ConnectionChanged},
		{"keyvault-object", readFixture(b, "keyvault-key-near-expiry.json"), KeyNearExpiry},
		{"keyvault-double-wrapped", binding("host-eventgrid-double-wrapped.json", "event"), KeyNearExpiry},
		{"keyvault-cloudevents-string-wrapped", binding("host-cloudevents-string-wrapped.json", "event"), KeyNewVersion},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.raw)))
			for b.Loop() {
				evs, err := Decode(bc.raw)
				if err != nil {
					b.Fatal(err)
				}
				tr, err := Classify(evs[0])
				if err != nil || tr.Kind != bc.want {
					b.Fatal(tr.Kind, err)
				}
			}
		})
	}
	b.Run("invocation-arm-string-wrapped", func(b *testing.B) {
		body := readFixture(b, "host-eventgrid-string-wrapped.json")
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			inv, err := DecodeInvocation(body)
			if err != nil {
				b.Fatal(err)
			}
			raw, _ := inv.Binding("event")
			evs, err := Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Classify(evs[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
