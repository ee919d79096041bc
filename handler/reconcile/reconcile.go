// Package reconcile joins the handler to Atlas and Azure. For one project it
// observes (Atlas EAR config, endpoints, clusters; the vault, its connections
// and the key version Atlas uses), plans once (pure, package plan), applies
// the plan's approvals, and records the new memory and the notices owed to
// the sinks in one conditional write of the project's document.
//
// It is level-based: events only choose which projects to reconcile and add
// hints (who did it) to alerts; every decision is re-derived from Atlas and
// ARM at the moment of acting.
package reconcile

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// Sink delivers notices somewhere (log, webhook, Event Grid topic); see
// package notify.
type Sink = notify.Sink

// Options configure a Reconciler. Atlas, Azure, Store and Log are required.
type Options struct {
	Projects    []string // the Atlas project ids to guard
	Atlas       Atlas
	Azure       AzureFor
	Store       state.Store
	Log         Sink   // the always-on sink: every notice becomes one structured record
	Sinks       []Sink // the optional external sinks (webhook, Event Grid topic)
	Policy      plan.Policy
	AppSecrets  AppSecrets       // when set, tells when the Atlas application's secret expires
	Concurrency int              // projects reconciled at once (default 8)
	Timeout     time.Duration    // bounds a timer or event reconcile (default 4m)
	Now         func() time.Time // default time.Now
	Instance    string           // names this process in claims (default host-pid-random)
	Logger      *slog.Logger
}

// Reconciler reconciles guarded projects. It is safe for concurrent use and
// safe to run in many processes against one store.
type Reconciler struct {
	projects    []string
	atlas       Atlas
	azureFor    AzureFor
	store       state.Store
	logSink     Sink
	sinks       []Sink
	policy      plan.Policy
	appSecrets  AppSecrets
	concurrency int
	timeout     time.Duration
	now         func() time.Time
	instance    string
	log         *slog.Logger

	flight  singleflight.Group
	mu      sync.Mutex
	locks   map[string]chan struct{}  // one reconcile per project at a time
	unsaved map[string][]alert.Notice // audit notices not yet recorded, by project
	vaults  map[string]string         // project → vault resource ID
	looked  time.Time                 // last Atlas look for projects of unknown vault

	alertCfgs map[string]alertConfigRead // per project, read hourly
}

// Sources the reconciler adds to the plan's snapshot: a failed approval (a
// 403 names the missing role action) and an unreadable state document.
const (
	SourceApprove plan.Source = "arm:approve"
	SourceState               = plan.SourceState
)

const (
	claimTTL   = 2 * time.Minute // how long a claim (on an approval or a delivery) keeps other runs off it
	maxPending = 500             // deliveries kept per project; the oldest go first (logged when dropped)
	docVersion = 1               // the Doc version this code writes; a later version is unreadable here
)

// New returns a Reconciler.
func New(o Options) (*Reconciler, error) {
	switch {
	case o.Atlas == nil:
		return nil, errors.New("reconcile: no Atlas client")
	case o.Azure == nil:
		return nil, errors.New("reconcile: no Azure client factory")
	case o.Store == nil:
		return nil, errors.New("reconcile: no state store")
	case o.Log == nil:
		return nil, errors.New("reconcile: no log sink")
	}
	host, _ := os.Hostname()
	r := &Reconciler{
		projects: slices.Clone(o.Projects), atlas: o.Atlas, azureFor: o.Azure, store: o.Store,
		logSink: o.Log, sinks: o.Sinks, policy: o.Policy, appSecrets: o.AppSecrets,
		concurrency: cmp.Or(max(o.Concurrency, 0), 8), timeout: cmp.Or(max(o.Timeout, 0), 4*time.Minute), now: o.Now,
		instance: cmp.Or(o.Instance, fmt.Sprintf("%s-%d-%s", host, os.Getpid(), rand.Text()[:8])), log: cmp.Or(o.Logger, logging.Discard()),
		locks: map[string]chan struct{}{}, unsaved: map[string][]alert.Notice{}, vaults: map[string]string{},
		alertCfgs: map[string]alertConfigRead{},
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Report is the outcome of one project's reconcile.
type Report struct {
	ProjectID    string   `json:"projectId"`
	Approved     []string `json:"approved,omitempty"`
	WouldApprove []string `json:"wouldApprove,omitempty"`
	Notices      int      `json:"notices"`
	Delivered    int      `json:"delivered"`
	Open         int      `json:"open"`
	Blind        []string `json:"blind,omitempty"`
	AtlasCalls   int64    `json:"atlasCalls"`
	ARMCalls     int64    `json:"armCalls"`
	DurationMS   int64    `json:"durationMs"`
	Error        string   `json:"error,omitempty"`
}

// Error is a failed reconcile of one project; transient.Is tells whether a
// retry may help (the handler answers the host non-2xx only then).
type Error struct {
	ProjectID string
	Err       error
}

func (e *Error) Error() string { return "reconcile " + e.ProjectID + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Project reconciles one project: observe, plan once, approve, record.
// hints (from events) only enrich alerts. Approvals and log notices happen
// even when the store is down; the error then says so and is transient.
func (r *Reconciler) Project(ctx context.Context, projectID string, hints []plan.Hint) (rep Report, err error) {
	start := r.now()
	calls := &meter.Calls{}
	ctx = meter.WithCalls(logging.With(ctx, slog.String("project", projectID)), calls)
	rep = Report{ProjectID: projectID}
	defer func() {
		rep.AtlasCalls, rep.ARMCalls = calls.Atlas(), calls.ARM()
		rep.DurationMS = r.now().Sub(start).Milliseconds()
		if err != nil {
			rep.Error = err.Error()
			err = &Error{ProjectID: projectID, Err: err}
		}
	}()
	unlock, err := r.lock(ctx, projectID)
	if err != nil {
		return rep, err
	}
	defer unlock()

	run := r.instance + "/" + rand.Text()[:8]
	key := ProjectKey(projectID)
	prev, cur, unreadable, stateErr := r.load(ctx, key)
	snap, az, retry := r.observe(ctx, projectID, hints)
	snap.Errors = append(snap.Errors, prev.Failed...)
	if unreadable != nil {
		snap.Errors = append(snap.Errors, *unreadable)
	}
	if stateErr == nil {
		snap.OtherRequests = r.otherRequests(ctx, projectID, snap.Vault)
	}
	res := plan.Plan(snap, prev.Memory, r.policy, r.now())

	ap := r.approve(ctx, projectID, az, res.Approvals, key, cur, run)
	rep.Approved = ap.approved
	for _, d := range res.Decisions {
		if d.Verdict == plan.VerdictWouldApprove {
			rep.WouldApprove = append(rep.WouldApprove, d.Connection)
		}
	}
	for _, e := range append(snap.Errors, ap.failed...) {
		if !slices.Contains(rep.Blind, string(e.Source)) {
			rep.Blind = append(rep.Blind, string(e.Source))
		}
	}
	// Approvals made while the store was down are owed to the sinks too.
	audit := append(r.takeAudit(projectID), ap.audit...)
	rec := record{base: prev, snap: snap, res: res, audit: audit, failed: ap.failed, run: run, approved: ap.approved, calls: calls, start: start}
	var doc Doc
	var read state.Read
	err = stateErr
	if err == nil {
		doc, read, err = state.Update(ctx, r.store, key, cur, func(d *Doc) error { return r.record(ctx, d, &rec) })
	}
	if err != nil {
		// Without state there is no de-duplication: the approvals stand, the
		// notices go to the log only, and the error is transient so the next
		// run delivers them everywhere.
		r.logSink.Send(ctx, append(res.Notices, audit...))
		r.keepAudit(projectID, audit)
		rep.Notices = len(res.Notices) + len(audit)
		return rep, transient.Mark(err)
	}
	rep.Notices, rep.Open = len(rec.notices), len(doc.Memory.Open)
	r.remember(projectID, doc.Vault)
	r.logSink.Send(ctx, rec.notices)

	outcome := r.deliver(ctx, rec.claimed)
	for _, msg := range outcome {
		if msg == "" {
			rep.Delivered++
		}
	}
	if err := r.settle(ctx, key, &read, run, outcome); err != nil {
		r.log.WarnContext(ctx, "recording deliveries failed; they will be retried", "error", err.Error())
	}
	if ap.transient || retry {
		return rep, transient.Mark(fmt.Errorf("%s unreadable or not applied; retry", strings.Join(rep.Blind, ", ")))
	}
	return rep, nil
}

// lock waits until no other reconcile of projectID runs in this process.
func (r *Reconciler) lock(ctx context.Context, projectID string) (func(), error) {
	r.mu.Lock()
	ch := r.locks[projectID]
	if ch == nil {
		ch = make(chan struct{}, 1)
		r.locks[projectID] = ch
	}
	r.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, transient.Mark(fmt.Errorf("waiting for another reconcile of the project: %w", ctx.Err()))
	}
}

// load reads the project's document. A store failure is returned as
// stateErr (cur is then nil). A document that does not decode, or that a
// later version wrote, is copied aside to a quarantine key and replaced by
// an empty one: load returns an empty Doc, a cur that conditions the next
// write on the unreadable document, and the source error that says so.
func (r *Reconciler) load(ctx context.Context, key string) (prev Doc, cur *state.Read, unreadable *plan.SourceError, stateErr error) {
	read, err := state.Load(ctx, r.store, key)
	if err != nil {
		return Doc{}, nil, nil, err
	}
	if !read.Found {
		return Doc{}, &read, nil, nil
	}
	err = json.Unmarshal(read.Data, &prev)
	if err == nil && prev.Version > docVersion {
		err = fmt.Errorf("written by a later version (%d)", prev.Version)
	}
	if err == nil {
		return prev, &read, nil, nil
	}
	aside := "quarantine/" + key + "/" + r.now().UTC().Format("20060102T150405.000000000Z")
	if _, qerr := r.store.Put(ctx, aside, read.Data, "", nil); qerr != nil {
		return Doc{}, nil, nil, fmt.Errorf("keeping the unreadable state document aside: %w", qerr)
	}
	msg := fmt.Sprintf("the state document %s did not decode (%v); it is kept as %s and memory restarted empty: "+
		"alerts already sent may be sent again", key, err, aside)
	r.log.WarnContext(ctx, "state document unreadable; quarantined", "key", key, "copy", aside, "error", err.Error())
	return Doc{}, &state.Read{Data: []byte("{}"), ETag: read.ETag, Found: true},
		&plan.SourceError{Source: SourceState, Message: msg, Service: "storage", Cause: "state document unreadable"}, nil
}

// record is one reconcile's contribution to the project's document, and what
// writing it decided: the notices to send and the deliveries this run claimed.
type record struct {
	base     Doc // the document the plan started from
	snap     plan.Snapshot
	res      plan.Result
	audit    []alert.Notice
	failed   []plan.SourceError
	approved []string
	run      string
	calls    *meter.Calls
	start    time.Time

	notices []alert.Notice
	claimed []Delivery
}

// record writes rec into d, the project's document as now stored. When
// another reconcile notified about a fingerprint since rec.base was read, its
// alert state wins for that fingerprint and rec's notices of it are dropped;
// every other fingerprint takes the plan's result. Notices are stamped after
// the last notice recorded for their fingerprint, so a consumer ordering by
// time sees them in causal order.
func (r *Reconciler) record(ctx context.Context, d *Doc, rec *record) error {
	now := r.now().Round(0)
	rec.notices, rec.claimed = nil, nil
	open := make(map[string]alert.Alert, len(rec.res.Memory.Open))
	for fp, a := range rec.res.Memory.Open {
		open[fp] = a
	}
	theirs := map[string]bool{}
	for fp, at := range d.Notified {
		if !at.Equal(rec.base.Notified[fp]) {
			theirs[fp] = true
			delete(open, fp)
			if a, ok := d.Memory.Open[fp]; ok {
				open[fp] = a
			}
		}
	}
	if d.Notified == nil {
		d.Notified = map[string]time.Time{}
	}
	for _, n := range append(slices.Clone(rec.res.Notices), rec.audit...) {
		fp := n.Alert.Fingerprint
		if theirs[fp] && n.Action != alert.AuditEvent {
			continue
		}
		if last, ok := d.Notified[fp]; ok && !n.At.After(last) {
			n.At = last.Add(time.Microsecond)
			if now.After(n.At) {
				n.At = now
			}
			n.ID = fmt.Sprintf("%s-%s-%d", fp, n.Action, n.At.UnixNano())
		}
		d.Notified[fp] = n.At
		rec.notices = append(rec.notices, n)
	}
	for fp, at := range d.Notified {
		if _, ok := open[fp]; !ok && now.Sub(at) > 30*24*time.Hour {
			delete(d.Notified, fp)
		}
	}

	d.Version, d.ProjectID, d.Updated = docVersion, rec.snap.ProjectID, now
	if !rec.snap.Vault.IsZero() {
		d.Vault = rec.snap.Vault.String()
	}
	if rec.snap.Endpoints != nil {
		d.Requests = requested(rec.snap.Endpoints)
	}
	d.Memory = rec.res.Memory
	d.Memory.Open = open
	d.Failed = rec.failed
	for c, cl := range d.Claims {
		if cl.By == rec.run || !now.Before(cl.Until) {
			delete(d.Claims, c)
		}
	}
	d.Summary = summarize(rec.snap, rec.res, r.policy.Mode, now, rec.approved)
	// The Status page shows this run's approval failures, not the last run's.
	d.Summary.Errors = append(slices.DeleteFunc(slices.Clone(d.Summary.Errors),
		func(e plan.SourceError) bool { return e.Source == SourceApprove }), rec.failed...)
	d.Summary.AtlasCalls, d.Summary.ARMCalls = rec.calls.Atlas(), rec.calls.ARM()
	d.Summary.DurationMS = now.Sub(rec.start).Milliseconds()

	// Deliveries to a sink no longer configured (or to the log, which is
	// written directly) have nobody to go to.
	d.Pending = slices.DeleteFunc(d.Pending, func(p Delivery) bool {
		return !slices.ContainsFunc(r.sinks, func(s Sink) bool { return s.Name() == p.Sink })
	})
	for _, n := range rec.notices {
		for _, s := range r.sinks {
			d.Pending = append(d.Pending, Delivery{Notice: n, Sink: s.Name()})
		}
	}
	if drop := len(d.Pending) - maxPending; drop > 0 {
		for _, p := range d.Pending[:drop] {
			r.log.ErrorContext(ctx, "dropping undeliverable notice", "sink", p.Sink, "notice", p.Notice.ID,
				"fingerprint", p.Notice.Alert.Fingerprint, "attempts", p.Attempts)
		}
		d.Pending = slices.Clone(d.Pending[drop:])
	}
	// Claims are per run, not per process: two invocations of one process
	// must not both send the same notice.
	for i := range d.Pending {
		p := &d.Pending[i]
		if p.ClaimedBy == "" || !now.Before(p.ClaimUntil) || p.ClaimedBy == rec.run {
			p.ClaimedBy, p.ClaimUntil = rec.run, now.Add(claimTTL)
			rec.claimed = append(rec.claimed, *p)
		}
	}
	return nil
}

// keepAudit keeps audit notices (approvals) the store could not record for the project's next
// successful run to deliver everywhere; at most maxPending, the oldest dropped.
func (r *Reconciler) keepAudit(projectID string, audit []alert.Notice) {
	if len(audit) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := append(r.unsaved[projectID], audit...)
	r.unsaved[projectID] = kept[max(0, len(kept)-maxPending):]
}

// takeAudit returns and forgets the audit notices keepAudit holds for a project.
func (r *Reconciler) takeAudit(projectID string) []alert.Notice {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.unsaved[projectID]
	delete(r.unsaved, projectID)
	return out
}

type deliveryKey struct{ notice, sink string }

// deliver sends the claimed deliveries, one batch per external sink, and
// returns each one's outcome: "" when it went through, else the error.
func (r *Reconciler) deliver(ctx context.Context, claimed []Delivery) map[deliveryKey]string {
	out := map[deliveryKey]string{}
	for _, s := range r.sinks {
		var batch []alert.Notice
		for _, d := range claimed {
			if d.Sink == s.Name() {
				batch = append(batch, d.Notice)
			}
		}
		if len(batch) == 0 {
			continue
		}
		err := s.Send(ctx, batch)
		for _, n := range batch {
			out[deliveryKey{n.ID, s.Name()}] = ""
		}
		for _, n := range notify.Undelivered(err, batch) {
			out[deliveryKey{n.ID, s.Name()}] = err.Error()
		}
		if err != nil {
			r.log.WarnContext(ctx, "alert sink failed; notices stay pending", "sink", s.Name(), "notices", len(batch), "error", err.Error())
		}
	}
	return out
}

// settle removes this run's delivered notices from the project's pending
// list and releases the claims of failed ones for the next reconcile. cur is
// the Read of the record write, so an undisturbed settle costs one write.
func (r *Reconciler) settle(ctx context.Context, key string, cur *state.Read, run string, outcome map[deliveryKey]string) error {
	if len(outcome) == 0 {
		return nil
	}
	_, _, err := state.Update(ctx, r.store, key, cur, func(d *Doc) error {
		d.Pending = slices.DeleteFunc(d.Pending, func(p Delivery) bool {
			msg, ok := outcome[deliveryKey{p.Notice.ID, p.Sink}]
			return ok && p.ClaimedBy == run && msg == ""
		})
		for i := range d.Pending {
			p := &d.Pending[i]
			if msg := outcome[deliveryKey{p.Notice.ID, p.Sink}]; msg != "" && p.ClaimedBy == run {
				p.Attempts, p.LastError, p.ClaimedBy, p.ClaimUntil = p.Attempts+1, msg, "", time.Time{}
			}
		}
		return nil
	})
	return err
}
