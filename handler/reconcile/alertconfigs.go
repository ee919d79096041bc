package reconcile

import (
	"context"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
)

// AlertConfigsEvery is how often the reconciler reads a project's Atlas
// alert configurations: they change rarely and feed one info rule, so a
// quiet reconcile makes no call for them within the hour and one per hour.
const AlertConfigsEvery = time.Hour

// AlertConfigsRetry is how soon a failed read is tried again: a guard-blind
// it raised must not outlive the failure by an hour once Atlas answers again.
const AlertConfigsRetry = 5 * time.Minute

// alertConfigCache keeps, per project, the last read of its alert
// configurations: the answer, or the failure as the source error it was.
// The zero value is ready to use.
type alertConfigCache struct {
	mu sync.Mutex
	m  map[string]alertConfigRead
}

type alertConfigRead struct {
	at   time.Time
	cfgs []atlas.AlertConfig
	err  *plan.SourceError
}

// alertConfigs returns the project's alert configurations, reading them
// from Atlas at most once per AlertConfigsEvery (by the reconciler's clock).
// A failure is kept for AlertConfigsRetry and reported as the same source
// error meanwhile (the guard-blind it raises stays open, once); it never asks
// the platform for a retry (a retry would only meet the cache). A read cut
// short by the reconcile's context is not kept.
func (r *Reconciler) alertConfigs(ctx context.Context, projectID string) ([]atlas.AlertConfig, *plan.SourceError) {
	c := &r.alertCfgs
	now := r.now()
	c.mu.Lock()
	last, ok := c.m[projectID]
	c.mu.Unlock()
	if ok && (now.Sub(last.at) < AlertConfigsEvery && last.err == nil || now.Sub(last.at) < AlertConfigsRetry) {
		return last.cfgs, last.err
	}
	cfgs, err := r.atlas.AlertConfigs(ctx, projectID)
	read := alertConfigRead{at: now, cfgs: nonNil(cfgs, err)}
	if err != nil {
		se := sourceError(plan.SourceAlertConfigs, err)
		read.err = &se
	}
	if ctx.Err() == nil {
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]alertConfigRead{}
		}
		c.m[projectID] = read
		c.mu.Unlock()
	}
	return read.cfgs, read.err
}
