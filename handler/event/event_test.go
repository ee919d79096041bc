package event

import (
	"cmp"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/azsystemevents"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
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
	miApp   = "6d2f8b1e-3c9a-4e7d-a5b0-1f4c7e9d2a68" // managed identity client id
	miOID   = "a8e3c5f1-0b2d-4c6e-9f7a-3d5b1e8c0f42" // managed identity object id
	spAZP   = "0f9d3b7a-1e5c-4a2b-8d6f-9c3e1a7b5d24" // service principal
	write   = azsystemevents.TypeResourceWriteSuccess
	deleted = azsystemevents.TypeResourceDeleteSuccess
)

var kv = resource.ID{SubscriptionID: sub, ResourceGroup: rg, Name: kvName}

func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func ptime(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

// fixtureCases maps an event fixture (without extension) to the Trigger it
// must give (Time is checked against the fixture's own eventTime). Where
// "<name>.cloudevents.json" exists it must give the same.
var fixtureCases = []struct {
	name string
	want Trigger
}{
	{"keyvault-key-new-version-created", Trigger{Kind: KeyNewVersion, Type: azsystemevents.TypeKeyVaultKeyNewVersionCreated, EventID: "c1f0e8a2-6b3d-4f7e-9a15-3d2c8b7e4f60",
		Vault: kv, Scope: kvID, Object: keyName, Version: keyV2, NotBefore: ptime("2026-11-28T09:29:41Z"), Expires: ptime("2027-11-28T09:30:59Z")}},
	{"keyvault-key-near-expiry", Trigger{Kind: KeyNearExpiry, Type: azsystemevents.TypeKeyVaultKeyNearExpiry, EventID: "5a7d2c9e-1f4b-4a83-b6e0-9c2d4f8a1b37",
		Vault: kv, Scope: kvID, Object: keyName, Version: keyV1, NotBefore: ptime("2026-01-01T00:00:43Z"), Expires: ptime("2027-01-01T00:00:59Z")}},
	{"keyvault-key-near-expiry-docs-sample", Trigger{Kind: KeyNearExpiry, Type: azsystemevents.TypeKeyVaultKeyNearExpiry, EventID: "00eccf70-95a7-4e7c-8299-2eb17ee9ad64",
		Vault: kv, Scope: kvID, Object: keyName, Version: keyV1, NotBefore: ptime("2026-01-01T00:00:43Z"), Expires: ptime("2027-01-01T00:00:59Z")}},
	{"keyvault-key-expired", Trigger{Kind: KeyExpired, Type: azsystemevents.TypeKeyVaultKeyExpired, EventID: "e93b1f60-2c8a-4d5e-a7f1-6b0c3d9e2a45",
		Vault: kv, Scope: kvID, Object: keyName, Version: keyV1, NotBefore: ptime("2026-01-01T00:00:43Z"), Expires: ptime("2027-01-01T00:00:59Z")}},
	{"keyvault-vault-access-policy-changed", Trigger{Kind: AccessPolicyChanged, Type: azsystemevents.TypeKeyVaultAccessPolicyChanged, EventID: "0b6e4d2a-8c1f-4f93-a5d7-2e9b1c6f3a80", Vault: kv, Scope: kvID}},
	{"keyvault-secret-new-version-created", Trigger{Kind: Unrelated, Type: azsystemevents.TypeKeyVaultSecretNewVersionCreated, EventID: "3d8f1a6c-4e2b-4c70-9b5a-1f7e2d8c6a93"}},
	{"keyvault-certificate-near-expiry", Trigger{Kind: Unrelated, Type: azsystemevents.TypeKeyVaultCertificateNearExpiry, EventID: "91c4e7b2-5d3a-4f08-8e6b-2a1c9f7d4b03"}},
	{"arm-pec-write-rejected", Trigger{Kind: ConnectionChanged, Type: write, EventID: "8b2d5f9a-3c6e-4a1b-9e7d-0f4c8a2e6b13", Vault: kv, Scope: kvID, Object: pecName, Operation: OpConnectionWrite, Actor: userUPN}},
	{"arm-pec-write-approved-by-managed-identity", Trigger{Kind: ConnectionChanged, Type: write, EventID: "2e7a9c1f-5b3d-4d8e-a6f0-9c1b4e7d2a58", Vault: kv, Scope: kvID, Object: pecName, Operation: OpConnectionWrite, Actor: miApp}},
	{"arm-pec-delete", Trigger{Kind: ConnectionChanged, Type: deleted, EventID: "f4c8a2e6-7b1d-4e3f-9a5c-2d6b0e8f1a37", Vault: kv, Scope: kvID, Object: pecName, Operation: OpConnectionDelete, Actor: userUPN}},
	{"arm-pec-proxy-write", Trigger{Kind: ConnectionChanged, Type: write, EventID: "6a1e3c5b-9d7f-4b2a-8e0c-4f6d2a8b1c95", Vault: kv, Scope: kvID, Object: proxy, Operation: OpConnectionProxyWrite, Actor: spAZP}},
	{"arm-pec-proxy-delete", Trigger{Kind: ConnectionChanged, Type: deleted, EventID: "7c3a5e1d-2f8b-4c9e-a1d6-8b0e4f2c6a73", Vault: kv, Scope: kvID, Object: proxy, Operation: OpConnectionProxyDelete, Actor: spAZP}},
	{"arm-pec-proxy-validate-action", Trigger{Kind: Unrelated, Type: azsystemevents.TypeResourceActionSuccess, EventID: "1d9f5b3a-8e2c-4a7d-b6e1-3c5a9f7d2b04"}},
	{"arm-pec-write-failure", Trigger{Kind: Unrelated, Type: azsystemevents.TypeResourceWriteFailure, EventID: "b5e9d3a7-4c1f-4e6b-8a2d-7f3c1e9b5d60"}},
	{"arm-vault-write", Trigger{Kind: VaultChanged, Type: write, EventID: "3f7b1d9e-6a4c-4f2e-8d0b-5c9a3e7f1b26", Vault: kv, Scope: kvID, Operation: OpVaultWrite, Actor: miOID}},
	{"arm-vault-delete", Trigger{Kind: VaultChanged, Type: deleted, EventID: "a2c6e0b4-1d5f-4a9c-b3e7-6f0a4c8e2d19", Vault: kv, Scope: kvID, Operation: OpVaultDelete, Actor: userUPN}},
	{"arm-role-assignment-delete-rg-scope", Trigger{Kind: RoleAssignmentDeleted, Type: deleted, EventID: "c9e3a7f1-5b2d-4d6e-9f8a-1b4c7e0d3a62", Scope: rgID, Operation: OpRoleAssignmentDelete, Actor: spAZP}},
	{"arm-role-assignment-delete-vault-scope", Trigger{Kind: RoleAssignmentDeleted, Type: deleted, EventID: "e1b5d9a3-7f4c-4b8e-a2d6-9c3f7b1e5a04", Vault: kv, Scope: kvID, Operation: OpRoleAssignmentDelete,
		Actor: "ada.okafor_fabrikam.com#EXT#@contoso.onmicrosoft.com"}},
	{"arm-role-assignment-delete-storage-account-scope", Trigger{Kind: Unrelated, Type: deleted, EventID: "4e8a2c6f-0b3d-4f7a-9c1e-6d2b8f4a0c57"}},
	{"arm-storage-write-unrelated", Trigger{Kind: Unrelated, Type: write, EventID: "9d3f7b1a-4e8c-4a2d-b6f0-1c5e9a3d7b80"}},
}

func sameTrigger(got, want Trigger) bool {
	eqTime := func(g, w *time.Time) bool {
		return (g == nil) == (w == nil) && (g == nil || g.Equal(*w) && g.Location() == time.UTC)
	}
	if !eqTime(got.NotBefore, want.NotBefore) || !eqTime(got.Expires, want.Expires) {
		return false
	}
	got.NotBefore, got.Expires, want.NotBefore, want.Expires = nil, nil, nil, nil
	got.Time, want.Time = time.Time{}, time.Time{}
	return got == want
}

func decodeOne1(t *testing.T, raw []byte) Event {
	t.Helper()
	evs, err := Decode(raw)
	if err != nil || len(evs) != 1 {
		t.Fatalf("Decode: %d events, %v", len(evs), err)
	}
	return evs[0]
}

// TestFixtures: every fixture, in both schemas, gives its Trigger; the SDK's
// own models read the same type, data and object names from it.
func TestFixtures(t *testing.T) {
	ceSeen := 0
	for _, tc := range fixtureCases {
		for _, file := range []string{tc.name + ".json", tc.name + ".cloudevents.json"} {
			if _, err := os.Stat(filepath.Join("testdata", file)); err != nil {
				continue
			}
			t.Run(file, func(t *testing.T) {
				e := decodeOne1(t, fixture(t, file))
				if cloud := strings.Contains(file, ".cloudevents"); cloud != (e.Schema == SchemaCloudEvents) {
					t.Errorf("Schema = %q", e.Schema)
				} else if cloud {
					ceSeen++
				}
				if e.Data == nil || e.Source == "" || e.Subject == "" || e.Time.IsZero() {
					t.Errorf("Data, Source, Subject or Time empty: %+v", e)
				}
				got, err := Classify(e)
				if err != nil || !sameTrigger(got, tc.want) || !got.Time.Equal(e.Time) {
					t.Fatalf("Classify = %+v, %v\nwant %+v", got, err, tc.want)
				}
				if !strings.Contains(file, "docs-sample") { // string NBF/EXP: the SDK can't read it
					crossCheckSDK(t, e, got)
				}
			})
		}
	}
	if ceSeen < 12 {
		t.Errorf("only %d CloudEvents fixtures", ceSeen)
	}
}

// crossCheckSDK decodes e's data into azsystemevents' models and compares
// with what Classify read.
func crossCheckSDK(t *testing.T, e Event, tr Trigger) {
	switch tr.Kind {
	case KeyNewVersion, KeyNearExpiry, KeyExpired:
		var d azsystemevents.KeyVaultKeyNearExpiryEventData
		if err := json.Unmarshal(e.Data, &d); err != nil || d.Version == nil || *d.Version != tr.Version {
			t.Errorf("SDK reads version %v (%v), Classify %q", d.Version, err, tr.Version)
		}
	case ConnectionChanged, VaultChanged, RoleAssignmentDeleted:
		var d azsystemevents.ResourceWriteSuccessEventData
		if err := json.Unmarshal(e.Data, &d); err != nil || d.OperationName == nil || *d.OperationName != tr.Operation {
			t.Errorf("SDK reads operation %v (%v), Classify %q", d.OperationName, err, tr.Operation)
		}
	}
}

// TestEpochPrecision guards against float32 decoding of NBF/EXP (the SDK's
// model), which rounds current timestamps by up to a minute.
func TestEpochPrecision(t *testing.T) {
	e := decodeOne1(t, fixture(t, "keyvault-key-near-expiry.json"))
	var lossy azsystemevents.KeyVaultKeyNearExpiryEventData
	if err := json.Unmarshal(e.Data, &lossy); err != nil {
		t.Fatal(err)
	}
	tr, err := Classify(e)
	if err != nil || int64(*lossy.EXP) == tr.Expires.Unix() || tr.Expires.Unix() != 1798761659 {
		t.Fatalf("Expires %v (SDK %v), %v", tr.Expires, *lossy.EXP, err)
	}
	for in, want := range map[string]int64{`1798761659`: 1798761659, `" 1798761659 "`: 1798761659, `1.798761659e9`: 1798761659,
		`null`: 0, `""`: 0, `0`: 0, `-1`: -1, `1798761659.5`: -1, `1e300`: -1, `253402300800`: -1, `"soon"`: -1, `true`: -1} {
		var s epochSeconds
		err := json.Unmarshal([]byte(in), &s)
		if got := s.t; (err != nil) != (want < 0) || want == 0 && got != nil || want > 0 && (got == nil || got.Unix() != want) {
			t.Errorf("%s: %v, %v; want %d", in, got, err, want)
		}
	}
}

func TestDecodeTimer(t *testing.T) {
	utc := func(s string) HostTime { return HostTime{*ptime(s)} }
	for file, want := range map[string]Timer{
		"host-timer.json": {ScheduleStatus: &ScheduleStatus{Last: utc("2026-11-28T09:29:00.0043791Z"),
			Next: utc("2026-11-28T09:30:00Z"), LastUpdated: utc("2026-11-28T09:29:00.0043791Z")}},
		"host-timer-null-status.json": {},
		"host-timer-past-due.json": {IsPastDue: true, ScheduleStatus: &ScheduleStatus{
			Next: utc("2026-11-28T09:30:00.0019297Z"), LastUpdated: utc("2026-11-28T09:24:31.5507046Z")}},
	} {
		raw, err := DecodeInvocation(fixture(t, file), "timer")
		tm, terr := DecodeTimer(raw)
		if err != nil || terr != nil || tm.IsPastDue != want.IsPastDue || tm.Schedule == nil ||
			(tm.ScheduleStatus == nil) != (want.ScheduleStatus == nil) {
			t.Fatalf("%s: %+v, %v %v", file, tm, err, terr)
		}
		if s, w := tm.ScheduleStatus, want.ScheduleStatus; s != nil && (!s.Last.Equal(w.Last.Time) || !s.Next.Equal(w.Next.Time) || !s.LastUpdated.Equal(w.LastUpdated.Time)) {
			t.Errorf("%s: ScheduleStatus %+v, want %+v", file, s, w)
		}
	}
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
		for _, e := range evs {
			if _, cerr := Classify(e); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		return err
	}
	invocation := func(b []byte) error { _, err := DecodeInvocation(b, "event"); return err }
	timer := func(b []byte) error { _, err := DecodeTimer(b); return err }
	fix := func(name string) []byte { return fixture(t, name) }
	wrap := func(b []byte, n int) []byte {
		for range n {
			b, _ = json.Marshal(string(b))
		}
		return b
	}
	const at = `"eventTime":"2026-11-28T09:29:41Z"`
	tests := []struct {
		name  string
		input []byte
		run   func([]byte) error
		want  []string
	}{
		{"truncated", fix("malformed-truncated.json"), decodeClassify, []string{"event:", "unexpected end of JSON input"}},
		{"truncated string-wrapped", wrap(fix("malformed-truncated.json"), 1), decodeClassify, []string{"unexpected end of JSON input"}},
		{"data is a number", fix("malformed-data-is-number.json"), decodeClassify, []string{"KeyNearExpiry", `data: want an object, got "42"`}},
		{"eventTime not a time", fix("malformed-eventtime-not-a-time.json"), decodeClassify, []string{"eventTime", `"yesterday" is not an RFC 3339 time`}},
		{"missing data", fix("malformed-missing-data.json"), decodeClassify, []string{"ResourceWriteSuccess", `data: want an object, got ""`}},
		{"missing type", fix("malformed-missing-type.json"), decodeClassify, []string{"missing type"}},
		{"EXP not a number", fix("malformed-keyvault-exp-not-a-number.json"), decodeClassify, []string{"KeyExpired", "epoch seconds", "next tuesday"}},
		{"pec write not on a vault", fix("malformed-arm-pec-write-not-a-vault.json"), decodeClassify, []string{"resourceUri", "not a Key Vault resource ID"}},
		{"empty array", fix("malformed-empty-array.json"), decodeClassify, []string{"event array is empty"}},
		{"string-wrapped garbage", fix("malformed-string-wrapped-garbage.json"), decodeClassify, []string{"event:", "invalid character"}},
		{"not JSON", fix("malformed-host-not-json.txt"), decodeClassify, []string{`event: want an object, got "<html>`}},
		{"empty", nil, decodeClassify, []string{"event is empty"}},
		{"empty string", []byte(`"  "`), decodeClassify, []string{"event is empty"}},
		{"number", []byte(`42`), decodeClassify, []string{`event: want an object, got "42"`}},
		{"array of strings", []byte(`["x"]`), decodeClassify, []string{"item 0: ", "event: want an object, got"}},
		{"wrapped five times", wrap(fix("keyvault-key-near-expiry.json"), 5), decodeClassify, []string{"wrapped in more than 4 JSON strings"}},
		{"bad string escape", []byte(`"{\q}"`), decodeClassify, []string{"not a valid JSON string"}},
		{"id is a number", []byte(`{"id":7,"eventType":"T",` + at + `}`), decodeClassify, []string{"field ID: want string, got number"}},
		{"missing id", []byte(`{"eventType":"T",` + at + `}`), decodeClassify, []string{"event T: missing id"}},
		{"cloudevent without source", []byte(`{"id":"1","type":"T","specversion":"1.0"}`), decodeClassify, []string{"event T: missing source"}},
		{"cloudevent bad time", []byte(`{"id":"1","type":"T","source":"/s","specversion":"1.0","time":"noon"}`), decodeClassify, []string{"event T: time", `"noon"`}},
		{"cloudevent 0.3", []byte(`{"id":"1","type":"T","source":"/s","specversion":"0.3"}`), decodeClassify, []string{`specversion "0.3"`}},
		{"both schemas", []byte(`{"id":"1","type":"T","eventType":"T","specversion":"1.0"}`), decodeClassify, []string{"both specversion"}},
		{"key event on a non-vault topic", []byte(`{"id":"1","eventType":"Microsoft.KeyVault.KeyExpired","topic":"/subscriptions/s",` + at + `,"data":{"ObjectName":"k"}}`), decodeClassify, []string{"source/topic", "not a Key Vault resource ID"}},
		{"key event without key", []byte(`{"id":"1","eventType":"Microsoft.KeyVault.KeyExpired","topic":"` + kvID + `",` + at + `,"data":{}}`), decodeClassify, []string{"names no key"}},
		{"role assignment without id", []byte(`{"id":"1","eventType":"` + deleted + `",` + at + `,"data":{"operationName":"` + OpRoleAssignmentDelete + `"}}`), decodeClassify, []string{"no resourceUri"}},
		{"claims wrong type", []byte(`{"id":"1","eventType":"` + deleted + `",` + at + `,"data":{"operationName":"` + OpVaultDelete + `","claims":"x"}}`), decodeClassify, []string{"field Claims"}},
		{"oversized event", wrap([]byte(`{"id":"1","eventType":"T",`+at+`,"data":"`+strings.Repeat("x", MaxEventSize)+`"}`), 1), decodeClassify, []string{"more than the 1048576 Event Grid allows"}},
		{"host: no Data", fix("malformed-host-no-data.json"), invocation, []string{"no Data object"}},
		{"host: not JSON", fix("malformed-host-not-json.txt"), invocation, []string{"want an object", "<html>"}},
		{"host: truncated", []byte(`{"Data":{"event":"{`), invocation, []string{"invocation body", "unexpected end of JSON input"}},
		{"host: Data is a string", []byte(`{"Data":"x"}`), invocation, []string{`invocation Data: want an object, got "\"x\""`}},
		{"host: Data is null", []byte(`{"Data":null}`), invocation, []string{`invocation Data: want an object, got "null"`}},
		{"host: null binding", []byte(`{"Data":{"event":null}}`), invocation, []string{"Data.event is missing or null"}},
		{"host: no binding", []byte(`{"Data":{"timer":{}}}`), invocation, []string{"Data.event is missing or null"}},
		{"host: an event, not an invocation", fix("arm-pec-delete.json"), invocation, []string{"no Data object", "posted directly"}},
		{"host: empty", []byte(" \n"), invocation, []string{`invocation body: want an object, got ""`}},
		{"host: too large", make([]byte, MaxInvocationSize+1), invocation, []string{"more than"}},
		{"host: deeply nested", []byte(`{"Data":{"event":` + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + `}}`), invocation, []string{"invocation body"}},
		{"timer: bad time", fix("malformed-timer-bad-time.json"), timer, []string{"timer:", `"28/11/2026 09:29" is not an RFC 3339 time`}},
		{"timer: not a timer", []byte(`{"id":"x"}`), timer, []string{"not a timer payload"}},
		{"timer: number", []byte(`1`), timer, []string{`timer: want an object, got "1"`}},
		{"timer: IsPastDue string", []byte(`{"IsPastDue":"yes"}`), timer, []string{"field IsPastDue"}},
	}
	for _, tc := range tests {
		err := tc.run(tc.input)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v does not wrap ErrMalformed", tc.name, err)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not contain %q", tc.name, err, s)
			}
		}
	}
}

// TestBadItemKeepsTheGood: in an array, the bad items are reported and the
// good ones decoded.
func TestBadItemKeepsTheGood(t *testing.T) {
	good := string(fixture(t, "arm-pec-delete.json"))
	evs, err := Decode(json.RawMessage(`[` + good + `,{"eventType":"x"},7,` + good + `]`))
	if len(evs) != 2 || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "item 1") || !strings.Contains(err.Error(), "item 2") {
		t.Fatalf("%d events, %v", len(evs), err)
	}
}

// TestOutsideStringsBounded: a 100 KB claim with control characters reaches
// the Trigger bounded and without control characters.
func TestOutsideStringsBounded(t *testing.T) {
	actor := "\x1b[31mevil\r\n" + strings.Repeat("a\x00", 50<<10)
	data, _ := json.Marshal(map[string]any{"operationName": OpConnectionWrite, "claims": map[string]string{"upn": actor},
		"resourceUri": kvID + "/privateEndpointConnections/" + strings.Repeat("c", 100<<10)})
	tr, err := Classify(Event{ID: strings.Repeat("i", 100<<10), Type: write, Data: data})
	if err != nil || tr.Kind != ConnectionChanged {
		t.Fatal(tr.Kind, err)
	}
	for _, s := range []string{tr.Actor, tr.Object, tr.EventID} {
		if len(s) > alert.MaxMessage+len("…") || strings.ContainsAny(s, "\x1b\r\n\x00") {
			t.Errorf("unbounded or unscrubbed: %d bytes %q…", len(s), s[:32])
		}
	}
}

// TestActor: who did it, in order of preference.
func TestActor(t *testing.T) {
	const xmlsoap, oidURI = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/", "http://schemas.microsoft.com/identity/claims/objectidentifier"
	for _, tc := range []struct {
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
		{map[string]any{xmlsoap + "upn": 42, "oid": "oid"}, "oid"},
		{map[string]any{xmlsoap + "upn": "  ", "oid": "oid"}, "oid"},
		{nil, ""},
	} {
		data, _ := json.Marshal(map[string]any{"claims": tc.claims, "resourceUri": kvID + "/privateEndpointConnections/c1",
			"operationName": "microsoft.keyvault/VAULTS/privateendpointconnections/WRITE"}) // ARM is case-insensitive
		tr, err := Classify(Event{ID: "1", Type: "microsoft.resources.resourcewritesuccess", Data: data})
		if err != nil || tr.Kind != ConnectionChanged || tr.Object != "c1" || !tr.Vault.Equal(kv) || tr.Actor != tc.want {
			t.Errorf("%v: %+v, %v; want actor %q", tc.claims, tr, err, tc.want)
		}
	}
}

func TestRoleAssignmentScopes(t *testing.T) {
	const ra = "/providers/Microsoft.Authorization/roleAssignments/9a4c2e7f-1b3d-4f6a-8c0e-5d7b9f1a3c26"
	for _, tc := range []struct {
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
	} {
		data, _ := json.Marshal(map[string]any{"operationName": OpRoleAssignmentDelete, "resourceUri": tc.scope + ra})
		tr, err := Classify(Event{ID: "1", Type: deleted, Data: data})
		wantScope := map[Kind]string{RoleAssignmentDeleted: cmp.Or(tc.scope, "/")}[tc.kind]
		if err != nil || tr.Kind != tc.kind || tr.Vault.IsZero() == tc.wantVault || tr.Scope != wantScope ||
			tc.kind == Unrelated && (tr.Actor != "" || tr.Operation != "") {
			t.Errorf("%q: %+v, %v", tc.scope, tr, err)
		}
	}
}

func TestCovers(t *testing.T) {
	other := resource.ID{SubscriptionID: sub, ResourceGroup: rg, Name: kvName + "-dr"}
	otherRG := resource.ID{SubscriptionID: sub, ResourceGroup: rg + "2", Name: kvName}
	upper := resource.ID{SubscriptionID: strings.ToUpper(sub), ResourceGroup: strings.ToUpper(rg), Name: strings.ToUpper(kvName)}
	kelvin := resource.ID{SubscriptionID: sub, ResourceGroup: rg, Name: strings.ReplaceAll(kvName, "k", "\u212a")}
	ra := func(scope string) Trigger { return Trigger{Kind: RoleAssignmentDeleted, Scope: scope} }
	for i, tc := range []struct {
		tr   Trigger
		v    resource.ID
		want bool
	}{
		{Trigger{Kind: KeyExpired, Vault: kv, Scope: kvID}, kv, true},
		{Trigger{Kind: KeyExpired, Vault: kv, Scope: kvID}, upper, true},
		{Trigger{Kind: KeyExpired, Vault: kv, Scope: kvID}, other, false},
		{ra(rgID), kv, true},
		{ra(strings.ToLower(rgID)), upper, true},
		{ra(rgID + "/providers/Microsoft.KeyVault/vaults/" + kelvin.Name + "/keys"), kv, false},
		{ra(rgID), otherRG, false},
		{ra(rgID[:len(rgID)-1]), kv, false}, // prefix of a name is not an ancestor
		{ra("/subscriptions/" + sub), otherRG, true},
		{ra("/subscriptions/" + sub + "/"), kv, true},
		{ra("/subscriptions/0000"), kv, false},
		{ra("/providers/Microsoft.Management/managementGroups/mg"), kv, true},
		{ra("/"), kv, true},
		{Trigger{Kind: Unrelated, Vault: kv}, kv, false},
		{Trigger{Kind: KeyExpired, Vault: kv}, resource.ID{}, false},
	} {
		if got := tc.tr.Covers(tc.v); got != tc.want {
			t.Errorf("%d: %+v Covers(%v) = %v, want %v", i, tc.tr, tc.v, got, tc.want)
		}
	}
}

// TestSubscriptionLists pins the lists the Bicep event subscriptions are
// checked against: the SDK's type names; each listed type/operation
// classifies as related, the rest of the Key Vault and Resources families as
// Unrelated. (The host envelopes are tested through the server.)
func TestSubscriptionLists(t *testing.T) {
	if got, want := KeyVaultEventTypes(), []string{azsystemevents.TypeKeyVaultKeyNewVersionCreated, azsystemevents.TypeKeyVaultKeyNearExpiry,
		azsystemevents.TypeKeyVaultKeyExpired, azsystemevents.TypeKeyVaultAccessPolicyChanged}; !slices.Equal(got, want) {
		t.Errorf("KeyVaultEventTypes = %q, SDK %q", got, want)
	}
	if got := ARMEventTypes(); !slices.Equal(got, []string{write, deleted}) {
		t.Errorf("ARMEventTypes = %q", got)
	}
	ARMEventTypes()[0], ARMOperations()[0], KeyVaultEventTypes()[0] = "x", "x", "x"
	if ARMEventTypes()[0] == "x" || ARMOperations()[0] == "x" || KeyVaultEventTypes()[0] == "x" {
		t.Error("lists share memory with the caller")
	}
	for _, typ := range KeyVaultEventTypes() {
		e := Event{ID: "1", Type: typ, Source: kvID, Subject: keyName, Data: json.RawMessage(`{"ObjectName":"k"}`)}
		if tr, err := Classify(e); err != nil || tr.Kind == Unrelated {
			t.Errorf("%s: %s, %v", typ, tr.Kind, err)
		}
	}
	pec := json.RawMessage(`{"operationName":"` + OpConnectionWrite + `","resourceUri":"` + kvID + `/privateEndpointConnections/c"}`)
	for _, typ := range []string{azsystemevents.TypeKeyVaultSecretNearExpiry, azsystemevents.TypeKeyVaultCertificateExpired,
		azsystemevents.TypeResourceActionSuccess, azsystemevents.TypeResourceWriteFailure, azsystemevents.TypeResourceDeleteCancel,
		"Microsoft.EventGrid.SubscriptionValidationEvent", "Microsoft.\u212aeyVault.KeyExpired", ""} {
		if tr, err := Classify(Event{ID: "1", Type: typ, Source: kvID, Data: pec}); err != nil || tr.Kind != Unrelated {
			t.Errorf("%s: %s, %v", typ, tr.Kind, err)
		}
	}
	for _, op := range ARMOperations() {
		uri := kvID + "/privateEndpointConnections/c"
		if strings.HasPrefix(op, "Microsoft.Authorization") {
			uri = rgID + "/providers/Microsoft.Authorization/roleAssignments/r"
		}
		data, _ := json.Marshal(map[string]string{"operationName": op, "resourceUri": uri})
		if tr, err := Classify(Event{ID: "1", Type: write, Data: data}); err != nil || tr.Kind == Unrelated || tr.Operation != op {
			t.Errorf("%s: %+v, %v", op, tr, err)
		}
	}
	// An unrelated type or operation is never an error, whatever its data.
	for _, data := range []string{`42`, `"x"`, `[`, `{"operationName":"Microsoft.Storage/storageAccounts/write","claims":{"upn":7}}`} {
		for _, typ := range []string{azsystemevents.TypeKeyVaultSecretNewVersionCreated, write} {
			if tr, err := Classify(Event{ID: "1", Type: typ, Data: json.RawMessage(data)}); (err != nil || tr.Kind != Unrelated) && (typ != write || data[0] == '{') {
				t.Errorf("%s %q: %s, %v", typ, data, tr.Kind, err)
			}
		}
	}
}

var knownKinds = []Kind{KeyNewVersion, KeyNearExpiry, KeyExpired, AccessPolicyChanged, ConnectionChanged, VaultChanged, RoleAssignmentDeleted, Unrelated}

func checkDecodeClassify(t *testing.T, b []byte) {
	evs, err := Decode(b)
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("Decode: %v", err)
	}
	if err == nil && len(evs) == 0 {
		t.Fatal("Decode: no events and no error")
	}
	for _, e := range evs {
		if e.ID == "" || e.Type == "" || (e.Schema != SchemaEventGrid && e.Schema != SchemaCloudEvents) {
			t.Fatalf("Decode: invalid event %+v", e)
		}
		tr, err := Classify(e)
		if err != nil && !errors.Is(err, ErrMalformed) || !slices.Contains(knownKinds, tr.Kind) {
			t.Fatalf("Classify: %q, %v", tr.Kind, err)
		}
		if err == nil && tr.Kind != Unrelated && tr.Scope == "" || tr.Kind != RoleAssignmentDeleted && tr.Kind != Unrelated && err == nil && tr.Vault.IsZero() {
			t.Fatalf("%s without vault or scope: %+v", tr.Kind, tr)
		}
	}
}

// FuzzDecode fuzzes DecodeInvocation, Decode and Classify (seeds: the
// committed corpus in testdata/fuzz, made from the fixtures).
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeClassify(t, b)
		for _, binding := range []string{"event", "timer"} {
			v, err := DecodeInvocation(b, binding)
			if err != nil && !errors.Is(err, ErrMalformed) || err == nil && len(v) == 0 {
				t.Fatalf("DecodeInvocation: %v", err)
			}
			checkDecodeClassify(t, v)
		}
	})
}

func FuzzDecodeTimer(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		tm, err := DecodeTimer(b)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeTimer: %v", err)
		}
		if s := tm.ScheduleStatus; s != nil && (s.Last.Year() > 9999 || s.Next.Year() > 9999) {
			t.Fatalf("DecodeTimer: %+v", s)
		}
	})
}
