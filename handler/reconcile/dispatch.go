package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// atlasLookEvery bounds how often an event for an unknown vault may make the
// guard read the EAR config of every project whose vault it does not know
// (so a flood of forged events costs at most that, plus one listing at a
// time).
const atlasLookEvery = time.Minute

// Events reconciles the projects whose vault the triggers concern, within
// the same deadline as a timer run.
func (r *Reconciler) Events(ctx context.Context, triggers []event.Trigger) (RunResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	hints := map[string][]plan.Hint{}
	for _, t := range triggers {
		projects, err := r.projectsFor(ctx, t)
		if err != nil {
			return RunResult{}, err
		}
		if len(projects) == 0 {
			r.log.DebugContext(ctx, "event concerns no guarded project", "kind", string(t.Kind), "scope", t.Scope)
		}
		for _, p := range projects {
			hints[p] = append(hints[p], plan.Hint{Kind: t.Kind, Actor: t.Actor, Object: t.Object, Operation: t.Operation, EventID: t.EventID, Time: t.Time})
		}
	}
	if len(hints) == 0 {
		return RunResult{Logs: []string{"no guarded project uses the vault this event concerns"}}, nil
	}
	return r.run(ctx, slices.Sorted(maps.Keys(hints)), hints)
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

// RunError says how many of a run's projects failed; it wraps each
// project's error (transient.Is holds when any of them is transient).
type RunError struct {
	Failed, Total int
	errs          []error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("%d of %d projects failed; first: %v", e.Failed, e.Total, e.errs[0])
}
func (e *RunError) Unwrap() []error { return e.errs }

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
// (or panic) never stops the others.
func (r *Reconciler) run(ctx context.Context, projects []string, hints map[string][]plan.Hint) (RunResult, error) {
	out := RunResult{Reports: make([]Report, len(projects))}
	errs := r.parallel(len(projects), func(i int) (err error) {
		p := projects[i]
		if ctx.Err() != nil {
			out.Reports[i] = Report{ProjectID: p, Error: "not started: " + ctx.Err().Error()}
			return &Error{ProjectID: p, Err: transient.Mark(ctx.Err())}
		}
		out.Reports[i], err = r.Project(ctx, p, hints[p])
		return err
	})
	run := &RunError{Total: len(projects)}
	for i, rep := range out.Reports {
		level := slog.LevelInfo
		if rep.ProjectID == "" { // Project panicked
			rep = Report{ProjectID: projects[i], Error: "internal error"}
			out.Reports[i], errs[i] = rep, &Error{ProjectID: projects[i], Err: errs[i]}
		}
		if errs[i] != nil {
			level, run.Failed, run.errs = slog.LevelWarn, run.Failed+1, append(run.errs, errs[i])
		}
		out.Logs = append(out.Logs, reportLine(rep))
		r.log.Log(ctx, level, "reconciled", "project", rep.ProjectID, "approved", len(rep.Approved),
			"notices", rep.Notices, "open", rep.Open, "atlasCalls", rep.AtlasCalls, "armCalls", rep.ARMCalls,
			"durationMs", rep.DurationMS, "blind", strings.Join(rep.Blind, ","), "error", rep.Error)
	}
	if run.Failed > 0 {
		return out, run
	}
	return out, nil
}

// parallel calls f(0) … f(n-1), at most r.concurrency at once, and returns
// their errors; a panic in f(i) becomes errs[i].
func (r *Reconciler) parallel(n int, f func(i int) error) []error {
	errs := make([]error, n)
	sem := make(chan struct{}, r.concurrency)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			defer func() {
				if v := recover(); v != nil {
					errs[i] = fmt.Errorf("internal error: panic: %v", v)
				}
			}()
			errs[i] = f(i)
		})
	}
	wg.Wait()
	return errs
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

// projectsFor returns the guarded projects whose vault t concerns. The
// vault → project index is derived from the project documents (each records
// its vault as metadata, listed in one call) and from what this process
// reconciled. On a miss the caller waits for a fresh look: a listing (and,
// at most once per atlasLookEvery, the EAR config of the projects whose
// vault is still unknown), shared by all concurrent callers.
func (r *Reconciler) projectsFor(ctx context.Context, t event.Trigger) ([]string, error) {
	if ps := r.projectsOn(t.Covers); len(ps) > 0 {
		return ps, nil
	}
	err := r.refreshShared(ctx)
	if ps := r.projectsOn(t.Covers); len(ps) > 0 || err == nil {
		return ps, nil
	}
	return nil, err
}

// projectsOn returns the guarded projects whose indexed vault satisfies on.
func (r *Reconciler) projectsOn(on func(resource.ID) bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.projects {
		if id, err := resource.ParseID(r.vaults[p]); err == nil && on(id) {
			out = append(out, p)
		}
	}
	return out
}

// refreshShared is refresh, shared by all concurrent callers.
func (r *Reconciler) refreshShared(ctx context.Context) error {
	_, err, _ := r.flight.Do("refresh", func() (any, error) { return nil, r.refresh(ctx) })
	return err
}

// refresh reads every project document's vault from the store's listing and, at most once per atlasLookEvery,
// reads the EAR config of each guarded project whose vault is still unknown.
// A transient failure is returned (the event is retried).
func (r *Reconciler) refresh(ctx context.Context) error {
	items, listErr := r.store.List(ctx, projectPrefix)
	for _, it := range items {
		if v := it.Meta["vault"]; v != "" {
			r.remember(strings.TrimPrefix(it.Key, projectPrefix), v)
		}
	}
	unknown := r.unknown()
	r.mu.Lock()
	now := r.now()
	look := len(unknown) > 0 && now.Sub(r.looked) >= atlasLookEvery
	if look {
		r.looked = now
	}
	r.mu.Unlock()
	if !look {
		return listErr
	}
	errs := r.parallel(len(unknown), func(i int) error {
		// A project Atlas refuses to describe counts as known without a
		// vault (its own reconcile records one), so it is not looked up
		// again and again; a transient failure leaves it unknown.
		ear, err := r.atlas.EncryptionAtRest(ctx, unknown[i])
		if v := vaultOf(ear.AzureKeyVault); err == nil && !v.IsZero() {
			r.remember(unknown[i], v.String())
		} else if !transient.Is(err) {
			r.remember(unknown[i], "")
		}
		return err
	})
	if err := errors.Join(append(errs, listErr)...); transient.Is(err) {
		return err
	}
	return nil
}

// remember records a project's vault in the in-memory index ("": the
// project names no vault).
func (r *Reconciler) remember(project, vaultID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.vaults[project] = vaultID
}

// unknown returns the guarded projects whose vault the index does not know.
func (r *Reconciler) unknown() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.projects {
		if _, ok := r.vaults[p]; !ok {
			out = append(out, p)
		}
	}
	return out
}

// otherRequests returns the connection names that the other guarded projects
// on vault v asked for (name → project): from their documents, or — for a
// project that has none yet (a fresh deployment) — from its Atlas endpoints.
// Who shares v comes from the index; projects it does not know yet are
// looked up first (bounded as for events).
func (r *Reconciler) otherRequests(ctx context.Context, projectID string, v resource.ID) map[string]string {
	if v.IsZero() {
		return nil
	}
	r.remember(projectID, v.String())
	if len(r.unknown()) > 0 {
		if err := r.refreshShared(ctx); err != nil {
			r.log.WarnContext(ctx, "looking up the other projects' vaults failed", "error", err.Error())
		}
	}
	out := map[string]string{}
	for _, p := range r.projectsOn(v.Equal) {
		if p == projectID {
			continue
		}
		names, err := r.requests(ctx, p)
		if err != nil {
			r.log.WarnContext(ctx, "reading another project's requests failed", "other", p, "error", err.Error())
		}
		for _, name := range names {
			out[name] = p
		}
	}
	return out
}

// requests returns the connection names project p's Atlas endpoints ask
// for, as its document records them or, without a document, from Atlas.
func (r *Reconciler) requests(ctx context.Context, p string) ([]string, error) {
	read, err := state.Load(ctx, r.store, ProjectKey(p))
	if err != nil || read.Found {
		var d Doc
		if err == nil {
			err = json.Unmarshal(read.Data, &d)
		}
		return d.Requests, err
	}
	eps, err := r.atlas.PrivateEndpoints(ctx, p)
	return requested(eps), err
}

// requested returns the connection names of the endpoints.
func requested(eps []atlas.PrivateEndpoint) []string {
	var names []string
	for _, e := range eps {
		if e.PrivateEndpointConnectionName != "" {
			names = append(names, e.PrivateEndpointConnectionName)
		}
	}
	return names
}
