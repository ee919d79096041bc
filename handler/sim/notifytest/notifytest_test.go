package notifytest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
)

func TestWebhookRecorderWaitAndFaults(t *testing.T) {
	rec := notifytest.NewWebhookRecorder()
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	post := func(body string) int {
		resp, err := http.Post(srv.URL+"/hook", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	rec.FailNext(503)
	if got := post(`{"source":"atlas-akv-guard","notices":[{"id":"a"}]}`); got != 503 {
		t.Fatalf("FailNext: %d", got)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := rec.WaitNotices(ctx, 2)
		done <- err
	}()
	post(`{"source":"atlas-akv-guard","notices":[{"id":"a"},{"id":"b"}]}`)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := post(`not json`); got != 400 {
		t.Fatalf("bad body: %d", got)
	}
	rec.SetStatus(500)
	if got := post(`{}`); got != 500 {
		t.Fatalf("SetStatus: %d", got)
	}
	rec.SetStatus(0)
	if got := post(`{"text":"slack"}`); got != 200 || len(rec.Requests()) != 2 || len(rec.Notices()) != 2 {
		t.Fatalf("status %d, %d requests, %d notices", got, len(rec.Requests()), len(rec.Notices()))
	}
}

func TestTopicRecorderRejects(t *testing.T) {
	rec := notifytest.NewTopicRecorder("k", "")
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	do := func(path, ct, key, body string) int {
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
	const ce = "application/cloudevents-batch+json; charset=utf-8"
	const ev = `[{"id":"1","source":"/s","type":"T","specversion":"1.0","data":{},"x1":"y"}]`
	for _, tc := range []struct {
		path, ct, key, body string
		want                int
	}{
		{"/api/events?api-version=2018-01-01", ce, "", ev, 401},
		{"/api/events?api-version=2018-01-01", ce, "wrong", ev, 401},
		{"/other?api-version=2018-01-01", ce, "k", ev, 404},
		{"/api/events", ce, "k", ev, 400},
		{"/api/events?api-version=2018-01-01", "application/json", "k", ev, 400},
		{"/api/events?api-version=2018-01-01", ce, "k", `[{"id":"1"}]`, 400},
		{"/api/events?api-version=2018-01-01", ce, "k", ev, 200},
	} {
		if got := do(tc.path, tc.ct, tc.key, tc.body); got != tc.want {
			t.Errorf("%s %s key=%q: %d, want %d", tc.path, tc.ct, tc.key, got, tc.want)
		}
	}
	evs := rec.Events()
	if len(evs) != 1 || evs[0].Extensions["x1"] != "y" {
		t.Fatalf("events %+v", evs)
	}
}
