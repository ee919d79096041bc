package notifytest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
)

// Each recorder answers what the real receiver would, fails on demand, and
// records only what it accepted.
func TestRecorders(t *testing.T) {
	var seen atomic.Int32
	hook, topic := &notifytest.WebhookRecorder{OnNotice: func(alert.Notice) { seen.Add(1) }}, notifytest.NewTopicRecorder("k", "")
	const js, ce = "application/json", "application/cloudevents-batch+json; charset=utf-8"
	const publish, ev = "/api/events?api-version=2018-01-01", `[{"id":"1","source":"/s","type":"T","specversion":"1.0","data":{},"x1":"y"}]`
	const notices = `{"source":"atlas-akv-guard","notices":[{"id":"a"},{"id":"b"}]}`
	for _, c := range []struct {
		h                   http.Handler
		fail                int
		path, ct, key, body string
		want                int
	}{
		{hook, 503, "/hook", js, "", notices, 503},
		{hook, 0, "/hook", js, "", notices, 200},
		{hook, 0, "/hook", js, "", `not json`, 400},
		{hook, 0, "/hook", "text/plain", "", `{}`, 415},
		{hook, 0, "/hook", js, "", `{"text":"slack"}`, 200},
		{topic, 0, publish, ce, "", ev, 401},
		{topic, 0, publish, ce, "wrong", ev, 401},
		{topic, 0, "/other?api-version=2018-01-01", ce, "k", ev, 404},
		{topic, 0, "/api/events", ce, "k", ev, 400},
		{topic, 0, publish, js, "k", ev, 400},
		{topic, 0, publish, ce, "k", `[{"id":"1"}]`, 400},
		{topic, 0, publish, ce, "k", `[` + strings.Repeat(" ", 1<<20) + `]`, 413},
		{topic, 500, publish, ce, "k", ev, 500},
		{topic, 0, publish, ce, "k", ev, 200},
	} {
		if c.fail != 0 {
			c.h.(interface{ FailNext(...int) }).FailNext(c.fail)
		}
		srv := httptest.NewServer(c.h)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ct)
		if c.key != "" {
			req.Header.Set("aeg-sas-key", c.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s key=%q %.20s: %d, want %d", c.path, c.ct, c.key, c.body, resp.StatusCode, c.want)
		}
	}
	if len(hook.Requests()) != 2 || len(hook.Notices()) != 2 || seen.Load() != 2 {
		t.Errorf("webhook: %d requests, %d notices, %d seen", len(hook.Requests()), len(hook.Notices()), seen.Load())
	}
	if evs := topic.Events(); len(evs) != 1 || evs[0].Extensions["x1"] != "y" {
		t.Errorf("topic events %+v", evs)
	}
}
