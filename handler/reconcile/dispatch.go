package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// indexTTL is how long an instance trusts its in-memory vault index before
// re-reading the stored one; refreshEvery bounds how often an event for an
// unknown vault may make it re-read every project's EAR config from Atlas
// (so a flood of forged events costs at most that).
const (
	indexTTL     = 5 * time.Minute
	refreshEvery = time.Minute
)

// Events reconciles the projects whose vault the triggers concern.
func (r *Reconciler) Events(ctx context.Context, triggers []event.Trigger) (RunResult, error) {
	hints := map[string][]plan.Hint{}
	for _, t := range triggers {
		projects, err := r.projectsFor(ctx, t)
		if err != nil {
			return RunResult{}, err
		}
		if len(projects) == 0 {
			r.log.DebugContext(ctx, "event concerns no guarded project", "kind", string(t.Kind), "scope", t.Scope)
			continue
		}
		for _, p := range projects {
			hints[p] = append(hints[p], hintOf(t))
		}
	}
	if len(hints) == 0 {
		return RunResult{Logs: []string{"no guarded project uses the vault this event concerns"}}, nil
	}
	projects := make([]string, 0, len(hints))
	for p := range hints {
		projects = append(projects, p)
	}
	slices.Sort(projects)
	return r.run(ctx, projects, hints)
}

// Timer reconciles every guarded project within the configured deadline.
func (r *Reconciler) Timer(ctx context.Context, t event.Timer) (RunResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if t.IsPastDue {
		r.log.InfoContext(ctx, "timer is past due")
	}
	out, err := r.run(ctx, r.projects, nil)
	// A timer is not retried by the platform: report failures in the
	// result, and fail the invocation only when no project succeeded.
	var failed *RunError
	if errors.As(err, &failed) && failed.Failed < len(r.projects) {
		return out, nil
	}
	return out, err
}

// RunError says how many of a run's projects failed.
type RunError struct {
	Failed, Total int
	transient     bool
	first         error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("%d of %d projects failed; first: %v", e.Failed, e.Total, e.first)
}
func (e *RunError) Transient() bool { return e.transient }
func (e *RunError) Unwrap() error   { return e.first }

// RunResult is a run's outcome: one report per project (the invocation's
// return value) and one log line per project for the host.
type RunResult struct {
	Reports []Report `json:"reports"`
	Logs    []string `json:"-"`
}

// All reconciles every guarded project once (no events) and returns the
// reports, for `handler check` and tests.
func (r *Reconciler) All(ctx context.Context) ([]Report, error) {
	out, err := r.run(ctx, r.projects, nil)
	return out.Reports, err
}

// run reconciles projects with bounded concurrency; one project's failure
// never stops the others.
func (r *Reconciler) run(ctx context.Context, projects []string, hints map[string][]plan.Hint) (RunResult, error) {
	reports := make([]Report, len(projects))
	errs := make([]error, len(projects))
	sem := make(chan struct{}, r.concurrency)
	var wg sync.WaitGroup
	for i, p := range projects {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				reports[i] = Report{ProjectID: p, Error: "not started: " + ctx.Err().Error()}
				errs[i] = &Error{ProjectID: p, Err: ctx.Err(), transient: true}
				return
			}
			defer func() { <-sem }()
			defer func() {
				if v := recover(); v != nil {
					r.log.ErrorContext(ctx, "panic in reconcile", "project", p, "panic", fmt.Sprint(v))
					errs[i] = &Error{ProjectID: p, Err: fmt.Errorf("panic: %v", v)}
					reports[i] = Report{ProjectID: p, Error: "internal error"}
				}
			}()
			reports[i], errs[i] = r.Project(ctx, p, hints[p])
		})
	}
	wg.Wait()

	out := RunResult{Reports: reports}
	run := &RunError{Total: len(projects)}
	for i, rep := range reports {
		out.Logs = append(out.Logs, reportLine(rep))
		if errs[i] != nil {
			run.Failed++
			run.transient = run.transient || isTransientRun(errs[i])
			if run.first == nil {
				run.first = errs[i]
			}
			r.log.WarnContext(ctx, "reconcile failed", "project", rep.ProjectID, "error", errs[i].Error())
		}
		r.log.InfoContext(ctx, "reconciled", "project", rep.ProjectID, "approved", len(rep.Approved),
			"notices", rep.Notices, "open", rep.Open, "atlasCalls", rep.AtlasCalls, "armCalls", rep.ARMCalls,
			"durationMs", rep.DurationMS, "blind", strings.Join(rep.Blind, ","))
	}
	if run.Failed > 0 {
		return out, run
	}
	return out, nil
}

func reportLine(rep Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "project %s: %d approved, %d notices, %d open alerts, %d Atlas + %d ARM calls, %d ms",
		rep.ProjectID, len(rep.Approved), rep.Notices, rep.Open, rep.AtlasCalls, rep.ARMCalls, rep.DurationMS)
	if len(rep.WouldApprove) > 0 {
		fmt.Fprintf(&b, ", would approve %s", strings.Join(rep.WouldApprove, " "))
	}
	if len(rep.Blind) > 0 {
		fmt.Fprintf(&b, ", blind: %s", strings.Join(rep.Blind, " "))
	}
	if rep.Error != "" {
		fmt.Fprintf(&b, ", error: %s", rep.Error)
	}
	return b.String()
}

func hintOf(t event.Trigger) plan.Hint {
	return plan.Hint{Kind: t.Kind, Actor: t.Actor, Object: t.Object, Operation: t.Operation, EventID: t.EventID, Time: t.Time}
}

// projectsFor returns the guarded projects whose vault t concerns: from the
// in-memory index, else the stored one, else (at most once per refreshEvery)
// by reading every project's EAR config from Atlas.
func (r *Reconciler) projectsFor(ctx context.Context, t event.Trigger) ([]string, error) {
	if ps := r.lookup(t); len(ps) > 0 && r.indexFresh() {
		return ps, nil
	}
	if err := r.loadIndex(ctx); err != nil {
		r.log.WarnContext(ctx, "reading the vault index failed", "error", err.Error())
	}
	if ps := r.lookup(t); len(ps) > 0 {
		return ps, nil
	}
	if !r.mayRefresh() {
		return nil, nil
	}
	if err := r.refreshIndex(ctx); err != nil {
		return nil, err
	}
	return r.lookup(t), nil
}

func (r *Reconciler) lookup(t event.Trigger) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.projects {
		id, err := resource.ParseID(r.index.Projects[p])
		if err == nil && t.Covers(id) {
			out = append(out, p)
		}
	}
	return out
}

func (r *Reconciler) indexFresh() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Since(r.indexLoaded) < indexTTL
}

func (r *Reconciler) mayRefresh() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.refreshed) < refreshEvery {
		return false
	}
	r.refreshed = time.Now()
	return true
}

func (r *Reconciler) loadIndex(ctx context.Context) error {
	data, _, err := r.store.Get(ctx, indexKey)
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var idx vaultIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.index.Projects == nil {
		r.index.Projects = map[string]string{}
	}
	for p, v := range idx.Projects {
		r.index.Projects[p] = v
	}
	r.indexLoaded = time.Now()
	return nil
}

// refreshIndex reads every project's EAR config from Atlas and stores the
// vault each names. A transient Atlas failure is returned (the event is
// retried); projects that cannot be read keep their old entry.
func (r *Reconciler) refreshIndex(ctx context.Context) error {
	type entry struct {
		project, vault string
		err            error
	}
	results := make([]entry, len(r.projects))
	sem := make(chan struct{}, r.concurrency)
	var wg sync.WaitGroup
	for i, p := range r.projects {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ear, err := r.atlas.EncryptionAtRest(ctx, p)
			if err != nil {
				results[i] = entry{project: p, err: err}
				return
			}
			c := ear.AzureKeyVault
			id := resource.ID{SubscriptionID: c.SubscriptionID, ResourceGroup: c.ResourceGroupName, Name: c.KeyVaultName}
			v := ""
			if id.SubscriptionID != "" && id.ResourceGroup != "" && id.Name != "" {
				v = id.String()
			}
			results[i] = entry{project: p, vault: v}
		})
	}
	wg.Wait()
	var firstErr error
	for _, e := range results {
		if e.err != nil {
			if firstErr == nil {
				firstErr = e.err
			}
			continue
		}
		r.remember(ctx, e.project, e.vault)
	}
	if firstErr != nil && isTransient(firstErr) {
		return &Error{ProjectID: "index", Err: firstErr, transient: true}
	}
	return nil
}

// isTransientRun reports whether a project's failure asks for a retry.
func isTransientRun(err error) bool {
	var t interface{ Transient() bool }
	return errors.As(err, &t) && t.Transient()
}

func isTransient(err error) bool {
	return atlas.IsTransient(err) || vault.IsTransient(err) || state.IsTransient(err)
}

// remember records a project's vault in the in-memory index and, when it
// changed, in the stored one.
func (r *Reconciler) remember(ctx context.Context, project, vaultID string) {
	if vaultID == "" {
		return
	}
	r.mu.Lock()
	if r.index.Projects == nil {
		r.index.Projects = map[string]string{}
	}
	changed := !strings.EqualFold(r.index.Projects[project], vaultID)
	r.index.Projects[project] = vaultID
	r.mu.Unlock()
	if !changed {
		return
	}
	_, err := state.Update(ctx, r.store, indexKey, func(idx *vaultIndex) error {
		if idx.Projects == nil {
			idx.Projects = map[string]string{}
		}
		idx.Projects[project] = vaultID
		idx.Updated = r.now()
		return nil
	})
	if err != nil {
		r.log.WarnContext(ctx, "storing the vault index failed", "error", err.Error())
	}
}
