package reconcile

import (
	"context"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
)

const (
	// AlertConfigsEvery is how often a project's Atlas alert configurations are read: they change rarely
	// and feed one info rule.
	AlertConfigsEvery = time.Hour
	// AlertConfigsRetry is how soon a failed read is tried again, so a guard-blind it raised does not
	// outlive the failure by an hour.
	AlertConfigsRetry = 5 * time.Minute
)

// alertConfigRead is the last read of a project's alert configurations: the answer, or the failure.
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
	now := r.now()
	r.mu.Lock()
	last, ok := r.alertCfgs[projectID]
	r.mu.Unlock()
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
		r.mu.Lock()
		r.alertCfgs[projectID] = read
		r.mu.Unlock()
	}
	return read.cfgs, read.err
}
