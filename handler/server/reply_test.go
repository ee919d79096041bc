package server

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestEncodeReplyMatchesMarshal checks the hand-written reply encoder against
// json.Marshal of the equivalent struct.
func TestEncodeReplyMatchesMarshal(t *testing.T) {
	type response struct {
		Outputs     map[string]any `json:"Outputs"`
		Logs        []string       `json:"Logs"`
		ReturnValue any            `json:"ReturnValue"`
	}
	for _, tc := range []struct {
		logs []string
		ret  any
	}{
		{nil, nil},
		{[]string{"unrelated event 1 (Microsoft.Storage.BlobCreated) ignored"}, nil},
		{[]string{"a", `q"u\o<t>e&`, "tab\tnl\n", "é ü \u2028 \u2029", "bad \xff utf-8", ""}, map[string]int{"projects": 1}},
		{[]string{"x"}, "<ret>"},
	} {
		want, err := json.Marshal(response{Outputs: map[string]any{}, Logs: append([]string{}, tc.logs...), ReturnValue: tc.ret})
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeReply(tc.logs, tc.ret)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("encodeReply(%q, %v) = %s, %v; json.Marshal %s", tc.logs, tc.ret, got, err, want)
		}
	}
	if _, err := encodeReply(nil, func() {}); err == nil {
		t.Error("encodeReply of a func: no error")
	}
}
