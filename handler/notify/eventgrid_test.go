package notify_test

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

const topicKey = "dG9waWMta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw=="

func topic(t *testing.T, rec *notifytest.TopicRecorder) (endpoint string, ca *simtls.Authority) {
	t.Helper()
	ca, err := simtls.New()
	must(t, err)
	return notifytest.ServeTLS(t, ca, rec) + "/api/events", ca
}

func newEventGrid(t *testing.T, endpoint string, ca *simtls.Authority, key string, cred azcore.TokenCredential) *notify.EventGrid {
	t.Helper()
	eg, err := notify.NewEventGrid(notify.EventGridOptions{
		Endpoint: endpoint, Key: key, Credential: cred,
		ClientOptions: &azcore.ClientOptions{Transport: &http.Client{Transport: ca.Transport(), Timeout: 10 * time.Second}},
	})
	must(t, err)
	return eg
}

func TestEventGridKey(t *testing.T) {
	rec := notifytest.NewTopicRecorder(topicKey, "")
	ep, ca := topic(t, rec)
	eg := newEventGrid(t, ep, ca, topicKey, nil)
	if eg.Name() != "eventgrid" || strings.Contains(eg.String(), topicKey) {
		t.Fatalf("name %q string %q", eg.Name(), eg.String())
	}
	must(t, eg.Send(t.Context(), sample()))
	reqs := rec.Requests()
	if len(reqs) != 1 || len(reqs[0].Events) != 4 {
		t.Fatalf("requests %d", len(reqs))
	}
	h := reqs[0].Header
	if h.Get("aeg-sas-key") != topicKey || h.Get("Authorization") != "" {
		t.Errorf("auth headers: aeg-sas-key %q, Authorization %q", h.Get("aeg-sas-key"), h.Get("Authorization"))
	}
	if ct := h.Get("Content-Type"); ct != "application/cloudevents-batch+json; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	wantTypes := []string{"AtlasAkvGuard.Alert.Raised", "AtlasAkvGuard.Alert.Raised", "AtlasAkvGuard.Alert.Audit", "AtlasAkvGuard.Alert.Resolved"}
	for i, ev := range reqs[0].Events {
		n := sample()[i]
		if ev.ID != n.ID || ev.Type != wantTypes[i] || ev.SpecVersion != "1.0" ||
			ev.Source != "/atlas-akv-guard/projects/65a1b2c3d4e5f60718293a4b" || ev.Subject != n.Alert.Fingerprint ||
			!ev.Time.Equal(t0) || ev.DataContentType != "application/json" {
			t.Errorf("event %d: %+v", i, ev)
		}
		if ev.Extensions["alertkind"] != string(n.Alert.Kind) || ev.Extensions["alertseverity"] != string(n.Alert.Severity) {
			t.Errorf("event %d extensions: %v", i, ev.Extensions)
		}
		a, err := ev.Alert()
		if err != nil || a.Fingerprint != n.Alert.Fingerprint || a.Vault != vaultID || a.Details["keyVersion"] != "abc123" || !a.FirstSeen.Equal(n.Alert.FirstSeen) ||
			!slices.Equal(a.Runbook, runbookSteps) {
			t.Errorf("event %d data: %+v, %v", i, a, err)
		}
	}
}

func TestEventGridToken(t *testing.T) {
	rec := notifytest.NewTopicRecorder("", "token-123")
	ep, ca := topic(t, rec)
	// An endpoint without a path gets /api/events.
	eg := newEventGrid(t, strings.TrimSuffix(ep, "/api/events"), ca, "", notifytest.StaticToken("token-123"))
	must(t, eg.Send(t.Context(), sample()[:1]))
	evs := rec.Events()
	if len(evs) != 1 || rec.Requests()[0].Header.Get("Authorization") != "Bearer token-123" || rec.Requests()[0].Header.Get("aeg-sas-key") != "" {
		t.Fatalf("events %+v headers %v", evs, rec.Requests()[0].Header)
	}
}

// 401 and 403 are permanent, 503 and 429 transient (retried by Retry, not
// by the SDK), a topic that is down is transient; no message shows the key.
func TestEventGridFailures(t *testing.T) {
	rec := notifytest.NewTopicRecorder(topicKey, "")
	ep, ca := topic(t, rec)
	wrong := "d3Jvbmcta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw=="
	err := fastRetry(newEventGrid(t, ep, ca, wrong, nil)).Send(t.Context(), sample())
	if want := "eventgrid: publish failed: status 401 (Unauthorized)"; transient.Is(err) || err.Error() != want {
		t.Fatalf("401: err = %v, want %q, permanent", err, want)
	}
	eg := newEventGrid(t, ep, ca, topicKey, nil)
	rec.SetStatus(http.StatusForbidden)
	err = fastRetry(eg).Send(t.Context(), sample())
	var se *notify.SendError
	if transient.Is(err) || !errors.As(err, &se) || se.StatusCode != 403 || !errors.As(err, new(*azcore.ResponseError)) {
		t.Fatalf("403: err = %v, want a permanent *SendError wrapping the azcore error", err)
	}
	rec.SetStatus(0)
	rec.FailNext(http.StatusServiceUnavailable)
	if err := eg.Send(t.Context(), sample()); err == nil || !transient.Is(err) {
		t.Fatalf("503 without Retry: %v (the SDK must not retry on its own)", err)
	}
	rec.FailNext(http.StatusServiceUnavailable, http.StatusTooManyRequests)
	if err := fastRetry(eg).Send(t.Context(), sample()); err != nil || len(rec.Requests()) != 1 || len(rec.Events()) != 4 {
		t.Fatalf("%v: %d requests / %d events, want 1 / 4", err, len(rec.Requests()), len(rec.Events()))
	}

	ln, err := ca.Listen()
	must(t, err)
	down := "https://" + ln.Addr().String() + "/api/events"
	ln.Close()
	err = newEventGrid(t, down, ca, topicKey, nil).Send(t.Context(), sample())
	if err == nil || !transient.Is(err) || !strings.HasPrefix(err.Error(), "eventgrid: publish failed: ") || strings.Contains(err.Error(), topicKey) {
		t.Fatalf("down: %v", err)
	}
}

func TestEventGridOptions(t *testing.T) {
	for _, o := range []notify.EventGridOptions{
		{Endpoint: "http://127.0.0.1:1/api/events", Key: topicKey},
		{Endpoint: "https://topic.westeurope-1.eventgrid.azure.net/api/events"},
		{Endpoint: "not a url", Key: topicKey},
	} {
		if _, err := notify.NewEventGrid(o); err == nil || strings.Contains(err.Error(), topicKey) {
			t.Errorf("%s: err = %v", o.Endpoint, err)
		}
	}
}
