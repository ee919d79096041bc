package atlas

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// FuzzErrorFromBody checks that any answer becomes a one-line, bounded
// *Error that keeps the status, never echoes a body that isn't an Atlas error,
// and reads Retry-After sanely. Seeds: testdata/fuzz/FuzzErrorFromBody.
func FuzzErrorFromBody(f *testing.F) {
	f.Add(404, "application/json", "", []byte(`{"detail":"No group with ID 5f1e2d3c4b5a69788796a5b4 exists.","error":404,"errorCode":"GROUP_NOT_FOUND","parameters":["5f1e2d3c4b5a69788796a5b4"],"reason":"Not Found"}`))
	f.Fuzz(func(t *testing.T, status int, contentType, retryAfter string, body []byte) {
		h := http.Header{}
		h.Set("Content-Type", contentType)
		h.Set("Retry-After", retryAfter)
		e := errorFromBody("Clusters", status, h, body, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		if e.StatusCode != status {
			t.Fatalf("StatusCode = %d, want %d", e.StatusCode, status)
		}
		if e.RetryAfter < 0 || e.RetryAfter > 24*time.Hour {
			t.Fatalf("RetryAfter = %s", e.RetryAfter)
		}
		msg := e.Error()
		if len(msg) > 1024 {
			t.Fatalf("message is %d bytes long", len(msg))
		}
		for _, r := range msg {
			if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
				t.Fatalf("message has control character %U: %q", r, msg)
			}
		}
		if !strings.HasPrefix(msg, "atlas: Clusters:") {
			t.Fatalf("message doesn't name the call: %q", msg)
		}
		var ae struct{ ErrorCode string }
		if json.Unmarshal(body, &ae) != nil && len(body) >= 16 && !strings.Contains(contentType, string(body)) &&
			strings.Contains(msg, string(body)) {
			t.Fatalf("message echoes a non-Atlas body: %q", msg)
		}
		if json.Unmarshal(body, &ae) == nil && ae.ErrorCode != "" && e.ErrorCode != alert.ScrubN(ae.ErrorCode, 64) {
			t.Fatalf("ErrorCode lost: body %q gave %+v", body, e)
		}
	})
}
