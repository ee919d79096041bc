package perf

import (
	"testing"
	"time"
)

// TestScaleSmoke runs the scale harness on a few projects: every project
// reconciles, and the simulators serve exactly 3 Atlas and 3 ARM requests
// per project (tokens were fetched in the warm-up). It asserts no timing;
// the figures are logged (go test -v) and produced at full size by
// cmd/perfreport.
func TestScaleSmoke(t *testing.T) {
	w := sharedWorld(t)
	for _, c := range []ScaleCase{
		{Projects: 10, Concurrency: 4, Latency: 10 * time.Millisecond},
		{Projects: 10, Concurrency: 4, Latency: 10 * time.Millisecond, Auth: AuthDigest},
	} {
		res, err := w.Scale(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		perCall := int64(1)
		if c.Auth == AuthDigest {
			perCall = 2
		}
		if res.Failed != 0 || res.AtlasRequests != 3*perCall*int64(c.Projects) || res.ARMRequests != 3*int64(c.Projects) || res.Atlas429 != 0 {
			t.Errorf("%+v: failed %d, Atlas %d requests (%d × 429), ARM %d requests", c, res.Failed, res.AtlasRequests, res.Atlas429, res.ARMRequests)
		}
		t.Logf("%d projects, concurrency %d, %s latency, %s: wall %s, lone project %s, ideal %s (×%.2f), heap +%.0f B/project",
			c.Projects, res.Concurrency, c.Latency, c.Auth, res.Wall, res.CriticalPath, res.Ideal, res.Ratio(), res.HeapPerProject())
	}
}
