package event

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"testing"
	"time"
)

// FuzzFastPath checks that the fast path agrees with encoding/json wherever
// it answers: what it accepts is valid JSON, what it decodes is what
// encoding/json decodes.
func FuzzFastPath(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	for _, s := range []string{
		`{"Data":{"event":"{}"},"Data":null}`, `{"Data":{"a":1,"a":2},"Metadata":null}`, `{"data":{}}`,
		`{"Data":{"x":"\u00e9"}}`, `{"D\u0061ta":{}}`, `{"Data":{}} x`, `"\ud800"`, `"a\/b\"c\\d\n"`,
		`{"Data":{"k":[1,-0.5e+3,true,false,null,{"a":[]}]}}`, `{"Data":{"k":01}}`, `{"Data":{"k":1.}}`,
		"\"\xff\"", `{"Data":{"\xff":1}}`, `{"Data":{},"Metadata":{"sys":{"x":"y"}}}`, `{"Data":{},"Metadata":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tb := bytes.TrimSpace(b)
		if end, ok := scanValue(tb, 0, 0); ok && end == len(tb) && !json.Valid(tb) {
			t.Fatalf("scanValue accepts invalid JSON %q", tb)
		}
		if len(tb) > 0 && tb[0] == '{' {
			if fast, ok := fastInvocation(tb); ok {
				slow, err := decodeInvocationSlow(tb)
				if err != nil {
					t.Fatalf("fast path accepts %q; encoding/json: %v", tb, err)
				}
				eq := func(a, b json.RawMessage) bool { return bytes.Equal(a, b) }
				if !maps.EqualFunc(fast.Data, slow.Data, eq) || !maps.EqualFunc(fast.Metadata, slow.Metadata, eq) ||
					(fast.Metadata == nil) != (slow.Metadata == nil) {
					t.Fatalf("%q: fast %+v, encoding/json %+v", tb, fast, slow)
				}
			}
		}
		if out, ok := fastUnquote(tb); ok {
			var s string
			if err := json.Unmarshal(tb, &s); err != nil || s != string(out) {
				t.Fatalf("fastUnquote(%q) = %q; encoding/json %q, %v", tb, out, s, err)
			}
		}
	})
}

// FuzzClassifyFastPath checks that Decode, Invocation.Events and Classify
// give exactly what the encoding/json path gives — the same events, triggers
// and error messages — for event values and host bodies alike.
func FuzzClassifyFastPath(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	for _, s := range []string{
		`{"id":"1","eventType":"Microsoft.Resources.ResourceWriteSuccess","eventTime":"2026-01-01T00:00:00Z","data":{"operationName":"Microsoft.KeyVault/vaults/write","resourceUri":"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/v"}}`,
		`{"id":"1","ID":"2","eventType":"x","eventTime":"2026-01-01T00:00:00Z"}`,
		`{"id":"1","eventType":"Microsoft.KeyVault.KeyNearExpiry","eventTime":"2026-01-01T00:00:00Z","topic":"/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/v","data":{"objectName":"k","NBF":"12","EXP":1.5e3}}`,
		`{"id":"\u0031","eventType":"a\u00e9\ud83d\ude00\ud800x","eventTime":"2026-01-01T00:00:00Z","data":null}`,
		`{"id":"1","eventType":"Microsoft.Resources.ResourceDeleteSuccess","eventTime":"2026-01-01T00:00:00Z","subject":"/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/x","data":{"operationName":"Microsoft.Authorization/roleAssignments/delete","claims":{"upn":7,"appid":"a\/b","oid":"o","OID":"p"}}}`,
		`[{"specversion":"1.0","id":"1","type":"t","source":"s","time":"2026-01-01T00:00:00+01:00","data":{"Id":"https://v.vault.azure.net/keys/k/1"}},{"id":"2","eventType":"x","eventTime":"2026-01-01T00:00:00"}]`,
		`"{\"id\":\"1\",\"eventType\":\"x\",\"eventTime\":\"2026-01-01T00:00:00Z\",\"data\":{\"claims\":\"\\u00e9\"}}"`,
		`{"Data":{"event":"{\"id\":\"1\",\"eventType\":\"x\",\"eventTime\":\"bad\"}","other":"[1]"},"Metadata":{}}`,
		`{"Data":{"event":"\"{\\\"id\\\":\\\"1\\\",\\\"eventType\\\":\\\"x\\\",\\\"eventTime\\\":\\\"2026-01-01T00:00:00Z\\\"}\""}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkEventsAgree(t, "Decode", b, func() ([]Event, error) { return decode(b, 0, true) }, b)
		inv, err := DecodeInvocation(b)
		if err != nil {
			return
		}
		for name, raw := range inv.Data {
			checkEventsAgree(t, "Invocation.Events", b, func() ([]Event, error) { return inv.Events(name) }, raw)
		}
	})
}

// checkEventsAgree compares the events got (and their triggers) with what
// the encoding/json path decodes from raw.
func checkEventsAgree(t *testing.T, what string, input []byte, got func() ([]Event, error), raw []byte) {
	t.Helper()
	fast, ferr := got()
	slow, serr := decode(raw, 0, false)
	if errString(ferr) != errString(serr) || len(fast) != len(slow) {
		t.Fatalf("%s(%q): fast %d events, %v; encoding/json %d events, %v", what, input, len(fast), ferr, len(slow), serr)
	}
	for i := range fast {
		f, s := fast[i], slow[i]
		f.fast = nil
		if !reflect.DeepEqual(f, s) && !(bytes.Equal(f.Data, s.Data) && eventsEqualButData(f, s)) {
			t.Fatalf("%s(%q) event %d: fast %+v, encoding/json %+v", what, input, i, f, s)
		}
		ts, es := classify(slow[i], false)
		for _, c := range []struct {
			name string
			e    Event
		}{{"cached", fast[i]}, {"uncached", slow[i]}} {
			tf, ef := classify(c.e, true)
			if errString(ef) != errString(es) || !triggersEqual(tf, ts) {
				t.Fatalf("%s(%q) event %d, Classify %s: fast %+v, %v; encoding/json %+v, %v", what, input, i, c.name, tf, ef, ts, es)
			}
		}
	}
}

func eventsEqualButData(a, b Event) bool {
	a.Data, b.Data = nil, nil
	return reflect.DeepEqual(a, b)
}

func triggersEqual(a, b Trigger) bool {
	eqTime := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	if !eqTime(a.NotBefore, b.NotBefore) || !eqTime(a.Expires, b.Expires) {
		return false
	}
	a.NotBefore, a.Expires, b.NotBefore, b.Expires = nil, nil, nil, nil
	return a == b
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// BenchmarkInvocationEvents is what the server does with a host invocation of
// an Event Grid function: DecodeInvocation, Invocation.Events (which reuses
// the event string DecodeInvocation unquoted) and Classify.
//
//	go test -run '^$' -bench InvocationEvents -benchmem -count 5 ./handler/event
func BenchmarkInvocationEvents(b *testing.B) {
	for _, name := range []string{"host-eventgrid-string-wrapped.json", "host-cloudevents-string-wrapped.json", "host-eventgrid-object.json"} {
		body := readFixture(b, name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				inv, err := DecodeInvocation(body)
				if err != nil {
					b.Fatal(err)
				}
				evs, err := inv.Events("event")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Classify(evs[0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
