package event

import (
	"bytes"
	"encoding/json"
	"maps"
	"testing"
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
