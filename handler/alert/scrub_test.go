package alert_test

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

func TestScrub(t *testing.T) {
	for in, want := range map[string]string{
		"plain message":                          "plain message",
		"Authorization: Bearer abc.def.ghi done": "Authorization: Bearer [redacted] done",
		"GET https://x/?sv=1&sig=SECRET&se=2":    "GET https://x/?sv=1&sig=[redacted]&se=2",
		"client_secret=s3cr3t&grant=x":           "client_secret=[redacted]&grant=x",
		"AccountName=a;AccountKey=k3y;Blob=x":    "AccountName=a;AccountKey=[redacted];Blob=x",
		"line1\nline2\x1b[0m\u2028":              "line1 line2 [0m ",
	} {
		if got := alert.Scrub(in); got != want {
			t.Errorf("Scrub(%q) = %q, want %q", in, got, want)
		}
	}
	got := alert.Scrub("Authorization: Bearer abc.def\x1b[31m ?sig=xyz&code=123 " + strings.Repeat("é", 600))
	for _, bad := range []string{"abc.def", "xyz", "123", "\x1b"} {
		if strings.Contains(got, bad) {
			t.Errorf("Scrub kept %q: %q", bad, got)
		}
	}
	if len(got) > alert.MaxMessage+len("…") || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
		t.Errorf("not truncated: %d bytes", len(got))
	}
	if got := alert.Scrub(fmt.Sprintf("%600s", "é")); len(got) > 520 {
		t.Errorf("not truncated: %d", len(got))
	}
}

func TestSeverityRank(t *testing.T) {
	if !(alert.Info.Rank() < alert.Warning.Rank() && alert.Warning.Rank() < alert.Critical.Rank()) || alert.Severity("bogus").Rank() != -1 {
		t.Fatal("severities must rank info < warning < critical, unknown lowest")
	}
}
