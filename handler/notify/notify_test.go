package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const vaultID = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ear/providers/Microsoft.KeyVault/vaults/kv-ear"

var runbookSteps = []string{"Re-enable it: az keyvault key set-attributes --enabled true --name k<1>", "Check: curl https://cloud.mongodb.com/x"}

func notice(id string, action alert.Action, sev alert.Severity, kind alert.Kind) alert.Notice {
	return alert.Notice{
		ID:     id,
		Action: action,
		At:     t0,
		Alert: alert.Alert{
			Fingerprint: "fp-" + string(kind),
			Kind:        kind,
			Severity:    sev,
			ProjectID:   "65a1b2c3d4e5f60718293a4b",
			Vault:       vaultID,
			Subject:     "pe-conn-1",
			Summary:     "Key version used by Atlas is disabled <now> & clusters pause",
			Details:     map[string]string{"keyVersion": "abc123", "checkIn": "15m"},
			Actor:       "alice@example.com",
			Runbook:     runbookSteps,
			FirstSeen:   t0.Add(-time.Minute),
			LastSeen:    t0,
		},
	}
}

func sample() []alert.Notice {
	return []alert.Notice{
		notice("n1", alert.Raised, alert.Critical, alert.KeyDisabled),
		notice("n2", alert.Raised, alert.Warning, alert.ForeignConnection),
		notice("n3", alert.AuditEvent, alert.Info, alert.Approved),
		notice("n4", alert.Resolved, alert.Critical, alert.KeyDisabled),
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestLogSink(t *testing.T) {
	var buf bytes.Buffer
	l := notify.NewLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if l.Name() != "log" {
		t.Fatalf("name %q", l.Name())
	}
	must(t, l.Send(t.Context(), sample()))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d records, want 4:\n%s", len(lines), buf.String())
	}
	wantLevel := []string{"ERROR", "WARN", "INFO", "INFO"}
	for i, line := range lines {
		var rec map[string]any
		must(t, json.Unmarshal([]byte(line), &rec))
		n := sample()[i]
		if rec["level"] != wantLevel[i] {
			t.Errorf("record %d level %v, want %s", i, rec["level"], wantLevel[i])
		}
		want := map[string]any{
			"msg": "alert " + string(n.Action), "notice_id": n.ID, "action": string(n.Action), "fingerprint": n.Alert.Fingerprint,
			"kind": string(n.Alert.Kind), "severity": string(n.Alert.Severity), "project": n.Alert.ProjectID,
			"vault": vaultID, "subject": "pe-conn-1", "summary": n.Alert.Summary, "actor": "alice@example.com",
			"at": "2026-03-01T12:00:00Z",
		}
		for k, v := range want {
			if rec[k] != v {
				t.Errorf("record %d: %s = %v, want %v", i, k, rec[k], v)
			}
		}
		if d, _ := rec["details"].(map[string]any); d["keyVersion"] != "abc123" || d["checkIn"] != "15m" {
			t.Errorf("record %d: details = %v", i, rec["details"])
		}
	}
}

// webhookServer serves rec over plain http on loopback; the path carries a
// token as real webhook URLs do.
func webhookServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/webhookb2/SECRET-TOKEN-0123456789?sig=SIGNATURE-abcdefghij"
}

func newWebhook(t *testing.T, u string, f notify.Format) *notify.Webhook {
	t.Helper()
	w, err := notify.NewWebhook(notify.WebhookOptions{URL: u, Format: f, Timeout: 5 * time.Second})
	must(t, err)
	return w
}

var update = flag.Bool("update", false, "rewrite the golden payloads in testdata")

// TestWebhookPayloads pins each webhook format's requests (one POST per
// batch for generic, one per notice for Teams and Slack) to the golden
// files testdata/webhook-<format>.json; go test -update rewrites them.
func TestWebhookPayloads(t *testing.T) {
	for _, f := range []notify.Format{notify.FormatGeneric, notify.FormatTeams, notify.FormatSlack} {
		t.Run(string(f), func(t *testing.T) {
			rec := notifytest.NewWebhookRecorder()
			w := newWebhook(t, webhookServer(t, rec), f)
			if w.String() != "webhook ("+string(f)+")" || w.Name() != "webhook" {
				t.Fatalf("name %q, String %q", w.Name(), w.String())
			}
			must(t, w.Send(t.Context(), sample()))
			var bodies []json.RawMessage
			for _, r := range rec.Requests() {
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("content type %q", ct)
				}
				bodies = append(bodies, r.Body)
			}
			got, _ := json.MarshalIndent(bodies, "", "  ")
			golden := filepath.Join("testdata", "webhook-"+string(f)+".json")
			if *update {
				os.WriteFile(golden, append(got, '\n'), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil || string(got)+"\n" != string(want) {
				t.Fatalf("payload differs from %s (%v):\n%s", golden, err, got)
			}
			if f == notify.FormatGeneric {
				if n := rec.Notices(); len(n) != 4 || n[0].Alert.Details["keyVersion"] != "abc123" || !slices.Equal(n[0].Alert.Runbook, runbookSteps) {
					t.Fatalf("decoded notices: %+v", n)
				}
			}
		})
	}
}

func TestWebhookGenericSplitsLargeBatches(t *testing.T) {
	rec := notifytest.NewWebhookRecorder()
	w := newWebhook(t, webhookServer(t, rec), notify.FormatGeneric)
	var many []alert.Notice
	for i := range notify.MaxBatch + 3 {
		many = append(many, notice(fmt.Sprint("n", i), alert.Raised, alert.Info, alert.Approved))
	}
	must(t, w.Send(t.Context(), many))
	if len(rec.Requests()) != 2 || len(rec.Notices()) != notify.MaxBatch+3 {
		t.Fatalf("%d requests, %d notices", len(rec.Requests()), len(rec.Notices()))
	}
}

func TestDetectFormat(t *testing.T) {
	for raw, want := range map[string]notify.Format{
		"https://contoso.webhook.office.com/webhookb2/x/IncomingWebhook/y/z":                                                     notify.FormatTeams,
		"https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x":                        notify.FormatTeams,
		"https://default0123.45.environment.api.powerplatform.com:443/powerautomate/automations/direct/workflows/abc/triggers/m": notify.FormatTeams,
		"https://hooks.slack.com/services/T000/B000/XXXX":                                                                        notify.FormatSlack,
		"https://alerts.example.com/hook":                                                                                        notify.FormatGeneric,
		"https://hooks.slack.com.evil.example/services/x":                                                                        notify.FormatGeneric,
	} {
		u, _ := url.Parse(raw)
		if got := notify.DetectFormat(u); got != want {
			t.Errorf("%s: %q, want %q", raw, got, want)
		}
	}
}

func TestWebhookOptionsValidation(t *testing.T) {
	const secret = "TOKEN-must-not-leak"
	for _, tc := range []struct{ url, format, want string }{
		{"http://alerts.example.com/" + secret, "", "must be https"},
		{"ftp://x/" + secret, "", "not an absolute http(s) URL"},
		{"://" + secret, "", "not an absolute"},
		{"https://x.example/" + secret, "xml", "unknown webhook format"},
	} {
		_, err := notify.NewWebhook(notify.WebhookOptions{URL: tc.url, Format: notify.Format(tc.format)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: err = %v, want %q without the URL", tc.url, err, tc.want)
		}
	}
	for _, ok := range []string{"http://127.0.0.1:8080/x", "http://localhost/x", "http://[::1]:1/x", "https://x.example/y"} {
		if _, err := notify.NewWebhook(notify.WebhookOptions{URL: ok}); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func fastRetry(s notify.Sink) notify.Sink {
	return notify.Retry(s, notify.RetryOptions{Attempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
}

// 500, 429 and 408 are transient: Retry sends again until the one delivery.
func TestWebhookTransientRetriedDeliveredOnce(t *testing.T) {
	rec := notifytest.NewWebhookRecorder()
	rec.FailNext(http.StatusInternalServerError)
	w := newWebhook(t, webhookServer(t, rec), notify.FormatGeneric)
	if err := w.Send(t.Context(), sample()); err == nil || !transient.Is(err) {
		t.Fatalf("without Retry: err = %v, want a transient error", err)
	}
	rec.FailNext(http.StatusInternalServerError, http.StatusTooManyRequests)
	r := fastRetry(w)
	if err := r.Send(t.Context(), sample()); err != nil || r.Name() != "webhook" {
		t.Fatalf("err %v, name %q", err, r.Name())
	}
	if got := rec.Notices(); len(rec.Requests()) != 1 || len(got) != 4 || got[0].ID != "n1" {
		t.Fatalf("%d deliveries, notices %+v; want exactly 1 with 4", len(rec.Requests()), got)
	}
}

func TestWebhookPermanentNotRetried(t *testing.T) {
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "invalid_payload", http.StatusBadRequest)
	})
	err := fastRetry(newWebhook(t, webhookServer(t, h), notify.FormatSlack)).Send(t.Context(), sample()[:1])
	if transient.Is(err) || calls.Load() != 1 {
		t.Fatalf("err = %v after %d calls; want one permanent failure", err, calls.Load())
	}
	if !strings.Contains(err.Error(), "webhook: POST failed: status 400: invalid_payload") {
		t.Fatalf("message: %v", err)
	}
	var se *notify.SendError
	if !errors.As(err, &se) || se.StatusCode != 400 {
		t.Fatalf("want *SendError with status 400, got %#v", err)
	}
}

func TestWebhookErrorsNeverContainTheURL(t *testing.T) {
	// A server that echoes the request URL in its error body.
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no route for "+r.URL.String()+" at "+r.Host+r.URL.Path, http.StatusNotFound)
	})
	u := webhookServer(t, echo)
	err := newWebhook(t, u, notify.FormatGeneric).Send(t.Context(), sample())
	assertNoSecret(t, err, u)
	if !strings.Contains(err.Error(), "status 404") {
		t.Fatalf("message: %v", err)
	}

	// A server that is down.
	srv := httptest.NewServer(http.NotFoundHandler())
	down := srv.URL + "/webhookb2/SECRET-TOKEN-0123456789?sig=SIGNATURE-abcdefghij"
	srv.Close()
	err = fastRetry(newWebhook(t, down, notify.FormatTeams)).Send(t.Context(), sample())
	assertNoSecret(t, err, down)
	if !transient.Is(err) || !strings.HasPrefix(err.Error(), "webhook: POST failed: ") {
		t.Fatalf("down: %v", err)
	}

	// A server that is too slow.
	release := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	su := webhookServer(t, slow)
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	sw, _ := notify.NewWebhook(notify.WebhookOptions{URL: su, Timeout: 50 * time.Millisecond})
	err = sw.Send(t.Context(), sample())
	assertNoSecret(t, err, su)
	if !strings.Contains(err.Error(), "webhook: POST failed: timeout") {
		t.Fatalf("slow: %v", err)
	}
}

func assertNoSecret(t *testing.T, err error, u string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	t.Logf("error: %v", err)
	for _, s := range []string{u, "SECRET-TOKEN", "SIGNATURE", "webhookb2"} {
		if strings.Contains(err.Error(), s) || strings.Contains(fmt.Sprintf("%+v", err), s) {
			t.Fatalf("error %q contains %q", err, s)
		}
	}
}

func TestPartialDeliveryAndUndelivered(t *testing.T) {
	rec := notifytest.NewWebhookRecorder()
	rec.FailNext(0, http.StatusServiceUnavailable) // the second POST fails
	w := newWebhook(t, webhookServer(t, rec), notify.FormatTeams)
	err := w.Send(t.Context(), sample()[:3])
	var pe *notify.PartialError
	if !errors.As(err, &pe) || pe.Delivered != 1 {
		t.Fatalf("err = %#v, want a partial delivery of n1", err)
	}
	left := notify.Undelivered(err, sample()[:3])
	if len(left) != 2 || left[0].ID != "n2" || left[1].ID != "n3" {
		t.Fatalf("undelivered = %+v", left)
	}
	if notify.Undelivered(nil, sample()) != nil || len(notify.Undelivered(errors.New("x"), sample())) != 4 {
		t.Fatal("Undelivered of nil / plain error")
	}

	// Retry sends only what is left.
	rec.FailNext(0, http.StatusServiceUnavailable)
	must(t, fastRetry(w).Send(t.Context(), sample()[:3]))
	if got := len(rec.Requests()); got != 1+3 {
		t.Fatalf("%d requests, want 4 (1 + 3 without duplicates)", got)
	}
}

// countingSink fails with err and counts calls.
type countingSink struct {
	name  string
	err   error
	calls atomic.Int32
	got   atomic.Int32
}

func (c *countingSink) Name() string { return c.name }
func (c *countingSink) Send(ctx context.Context, n []alert.Notice) error {
	c.calls.Add(1)
	c.got.Add(int32(len(n)))
	return c.err
}

func TestRetryBoundedByAttemptsAndContext(t *testing.T) {
	s := &countingSink{name: "x", err: transient.Mark(errors.New("flaky"))}
	if err := fastRetry(s).Send(t.Context(), sample()); err == nil || s.calls.Load() != 3 {
		t.Fatalf("err %v after %d calls, want 3", err, s.calls.Load())
	}
	s2 := &countingSink{name: "y", err: transient.Mark(errors.New("flaky"))}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := notify.Retry(s2, notify.RetryOptions{Attempts: 100, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond}).Send(ctx, sample())
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}
