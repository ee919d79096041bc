package notifytest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
)

// post sends body to h and returns the status.
func post(t *testing.T, h http.Handler, path, ct, key, body string) int {
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", ct)
	if key != "" {
		req.Header.Set("aeg-sas-key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestWebhookRecorder(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	rec := &notifytest.WebhookRecorder{OnNotice: func(n alert.Notice) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, n.ID)
	}}
	const js = "application/json"
	rec.FailNext(503)
	for _, c := range []struct {
		ct, body string
		want     int
	}{
		{js, `{"source":"atlas-akv-guard","notices":[{"id":"a"}]}`, 503},
		{js, `{"source":"atlas-akv-guard","notices":[{"id":"a"},{"id":"b"}]}`, 200},
		{js, `not json`, 400},
		{"text/plain", `{}`, 415},
		{js, `{"text":"slack"}`, 200},
	} {
		if got := post(t, rec, "/hook", c.ct, "", c.body); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.ct, c.body, got, c.want)
		}
	}
	rec.SetStatus(500)
	if got := post(t, rec, "/hook", js, "", `{}`); got != 500 {
		t.Errorf("SetStatus: %d", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rec.Requests()) != 2 || len(rec.Notices()) != 2 || strings.Join(seen, ",") != "a,b" {
		t.Errorf("%d requests, %d notices, seen %v", len(rec.Requests()), len(rec.Notices()), seen)
	}
}

func TestTopicRecorder(t *testing.T) {
	rec := notifytest.NewTopicRecorder("k", "")
	const ce, path = "application/cloudevents-batch+json; charset=utf-8", "/api/events?api-version=2018-01-01"
	const ev = `[{"id":"1","source":"/s","type":"T","specversion":"1.0","data":{},"x1":"y"}]`
	for _, c := range []struct {
		path, ct, key, body string
		want                int
	}{
		{path, ce, "", ev, 401},
		{path, ce, "wrong", ev, 401},
		{"/other?api-version=2018-01-01", ce, "k", ev, 404},
		{"/api/events", ce, "k", ev, 400},
		{path, "application/json", "k", ev, 400},
		{path, ce, "k", `[{"id":"1"}]`, 400},
		{path, ce, "k", `[` + strings.Repeat(" ", 1<<20) + `]`, 413},
		{path, ce, "k", ev, 200},
	} {
		if got := post(t, rec, c.path, c.ct, c.key, c.body); got != c.want {
			t.Errorf("%s %s key=%q: %d, want %d", c.path, c.ct, c.key, got, c.want)
		}
	}
	if evs := rec.Events(); len(evs) != 1 || evs[0].Extensions["x1"] != "y" {
		t.Fatalf("events %+v", evs)
	}
}
