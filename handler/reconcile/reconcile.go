// Package reconcile joins the handler to Atlas and Azure: for one project it
// observes (Atlas EAR config, endpoints, clusters; the vault, its connections
// and the key version Atlas uses), plans (pure, package plan) and applies
// (approvals through ARM, notices to the sinks, state in the store).
//
// It is level-based: events only choose which projects to reconcile and add
// hints (who did it) to alerts; every decision is re-derived from Atlas and
// ARM at the moment of acting.
package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Sink delivers notices somewhere (log, webhook, Event Grid topic); see
// package notify.
type Sink = notify.Sink

// Options configure a Reconciler. Atlas, Azure, Store and Log are required.
type Options struct {
	// Projects are the Atlas project ids to guard.
	Projects []string
	Atlas    Atlas
	Azure    AzureFor
	Store    state.Store
	// Log is the always-on sink: every notice becomes one structured record.
	Log Sink
	// Sinks are the optional external sinks (webhook, Event Grid topic).
	Sinks  []Sink
	Policy plan.Policy
	// Concurrency bounds the projects reconciled at once (default 8).
	Concurrency int
	// Timeout bounds a timer reconcile of all projects (default 4m).
	Timeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Instance names this process in delivery claims (default host-pid-random).
	Instance string
	Logger   *slog.Logger
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
	concurrency int
	timeout     time.Duration
	now         func() time.Time
	instance    string
	log         *slog.Logger

	mu          sync.Mutex
	unsaved     map[string][]alert.Notice // audit notices not yet recorded in the store, by project
	index       vaultIndex
	indexLoaded time.Time
	refreshed   time.Time
}

// SourceApprove is the blind spot raised when an approval fails (403 names
// the missing role action).
const SourceApprove plan.Source = "arm:approve"

// claimTTL is how long a delivery claim keeps other instances off a notice.
const claimTTL = 2 * time.Minute

// maxPending bounds the deliveries kept per project; the oldest go first
// (they are logged when dropped).
const maxPending = 500

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
	r := &Reconciler{
		projects: slices.Clone(o.Projects), atlas: o.Atlas, azureFor: o.Azure, store: o.Store,
		logSink: o.Log, sinks: o.Sinks, policy: o.Policy, concurrency: o.Concurrency,
		timeout: o.Timeout, now: o.Now, instance: o.Instance, log: o.Logger,
	}
	if r.concurrency < 1 {
		r.concurrency = 8
	}
	if r.timeout <= 0 {
		r.timeout = 4 * time.Minute
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.instance == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		rand.Read(b)
		r.instance = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if r.log == nil {
		r.log = logging.Discard()
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

// Error is a failed reconcile; Transient says whether a retry may help (the
// handler answers the host non-2xx only then).
type Error struct {
	ProjectID string
	Err       error
	transient bool
}

func (e *Error) Error() string   { return "reconcile " + e.ProjectID + ": " + e.Err.Error() }
func (e *Error) Unwrap() error   { return e.Err }
func (e *Error) Transient() bool { return e.transient }

// Project reconciles one project. hints (from events) only enrich alerts.
// Approvals and log notices happen even when the store is down; the error
// then says so and is transient.
func (r *Reconciler) Project(ctx context.Context, projectID string, hints []plan.Hint) (rep Report, err error) {
	start := time.Now()
	calls := &meter.Calls{}
	ctx = meter.WithCalls(logging.With(ctx, slog.String("project", projectID)), calls)
	rep = Report{ProjectID: projectID}
	defer func() {
		rep.AtlasCalls, rep.ARMCalls = calls.Atlas(), calls.ARM()
		rep.DurationMS = time.Since(start).Milliseconds()
	}()

	key := ProjectKey(projectID)
	var prev Doc
	stored, loadErr := state.Load(ctx, r.store, key)
	if loadErr == nil && stored.Found {
		if err := json.Unmarshal(stored.Data, &prev); err != nil {
			loadErr = fmt.Errorf("state of %s is unreadable: %w", projectID, err)
		}
	}

	snap, az, transient := r.observe(ctx, projectID, hints)
	now := r.now()
	first := plan.Plan(snap, prev.Memory, r.policy, now)

	audit, approved, failures := r.approve(ctx, projectID, az, first.Approvals, now)
	rep.Approved = approved
	snap.Errors = append(snap.Errors, failures...)
	for _, d := range first.Decisions {
		if d.Verdict == plan.VerdictWouldApprove {
			rep.WouldApprove = append(rep.WouldApprove, d.Connection)
		}
	}
	for _, e := range snap.Errors {
		rep.Blind = append(rep.Blind, string(e.Source))
	}

	if loadErr != nil {
		// Without state there is no de-duplication: log, skip the external
		// sinks, and fail transiently so the next run delivers properly.
		final := plan.Plan(snap, prev.Memory, r.policy, now)
		notices := append(final.Notices, audit...)
		r.logSink.Send(ctx, notices)
		r.keepAudit(projectID, audit)
		rep.Notices = len(notices)
		rep.Error = loadErr.Error()
		return rep, &Error{ProjectID: projectID, Err: loadErr, transient: true}
	}

	// Record the notices and claim their deliveries in one conditional write.
	// The plan is re-run on the freshest memory, so a notice another instance
	// recorded meanwhile is not raised again.
	// Claims are per run, not per process: two invocations of one process
	// (duplicate events, an event during the timer) must not both send
	// the same notice.
	claim := r.instance + "/" + randHex(4)
	// Approvals made while the store was down are owed to the sinks too.
	audit = append(r.takeAudit(projectID), audit...)
	var claimed []Delivery
	var final plan.Result
	doc, err := state.UpdateFrom(ctx, r.store, key, &stored, func(d *Doc) error {
		claimed = claimed[:0]
		final = plan.Plan(snap, d.Memory, r.policy, now)
		d.ProjectID = projectID
		if !snap.Vault.IsZero() {
			d.Vault = snap.Vault.String()
		}
		d.Memory = final.Memory
		d.Summary = summarize(snap, final, r.policy.Mode, now, rep.Approved)
		d.Summary.AtlasCalls, d.Summary.ARMCalls = calls.Atlas(), calls.ARM()
		d.Summary.DurationMS = time.Since(start).Milliseconds()
		d.Updated = now
		for _, n := range append(slices.Clone(final.Notices), audit...) {
			for _, s := range r.allSinks() {
				d.Pending = append(d.Pending, Delivery{Notice: n, Sink: s.Name()})
			}
		}
		d.Pending = r.trim(ctx, d.Pending)
		for i := range d.Pending {
			p := &d.Pending[i]
			if p.ClaimedBy == "" || !now.Before(p.ClaimUntil) || p.ClaimedBy == claim {
				p.ClaimedBy, p.ClaimUntil = claim, now.Add(claimTTL)
				claimed = append(claimed, *p)
			}
		}
		return nil
	})
	rep.Notices = len(final.Notices) + len(audit)
	if err != nil {
		// The approvals stand; the notices are logged so nothing is silent.
		r.logSink.Send(ctx, append(final.Notices, audit...))
		r.keepAudit(projectID, audit)
		rep.Error = err.Error()
		return rep, &Error{ProjectID: projectID, Err: err, transient: true}
	}
	rep.Open = len(doc.Memory.Open)
	r.remember(ctx, projectID, doc.Vault)

	delivered, failed := r.deliver(ctx, claimed)
	rep.Delivered = len(delivered)
	if err := r.settle(ctx, key, claim, delivered, failed); err != nil {
		r.log.WarnContext(ctx, "recording deliveries failed; they will be retried", "error", err.Error())
	}
	if transient {
		rep.Error = "some reads failed transiently"
		return rep, &Error{ProjectID: projectID, Err: errors.New(strings.Join(rep.Blind, ", ") + " unreadable"), transient: true}
	}
	return rep, nil
}

// approve applies the plan's approvals (none in observe mode). It returns
// the audit notices of the connections it approved, their names, and a blind
// spot for each approval that failed (a 403 names the missing action). A
// connection approved meanwhile by another reconcile is neither.
func (r *Reconciler) approve(ctx context.Context, projectID string, az Azure, approvals []plan.Approval, now time.Time) (audit []alert.Notice, approved []string, failures []plan.SourceError) {
	if az == nil {
		return nil, nil, nil
	}
	for _, a := range approvals {
		res, err := az.Approve(ctx, a.Vault, a.Connection, a.Description)
		switch {
		case err != nil && approvedMeanwhile(ctx, az, a):
			// Another invocation or instance approved it between our read
			// and our write (duplicate events, scale-out): ARM refused our
			// PUT on the etag. Approving twice is a no-op, not a blind spot.
			r.log.InfoContext(ctx, "connection approved concurrently by another reconcile", "connection", a.Connection, "endpoint", a.EndpointID)
		case err != nil:
			r.log.ErrorContext(ctx, "approval failed", "connection", a.Connection, "endpoint", a.EndpointID, "error", err.Error())
			failures = append(failures, sourceError(SourceApprove, fmt.Errorf("approve %s: %w", a.Connection, err)))
		case res.Changed:
			r.log.InfoContext(ctx, "approved", "connection", a.Connection, "endpoint", a.EndpointID, "vault", a.Vault.String())
			audit = append(audit, plan.ApprovedNotice(projectID, a, "", now))
			approved = append(approved, a.Connection)
		}
	}
	return audit, approved, failures
}

// keepAudit remembers audit notices (approvals) that could not be recorded
// in the store, so the next successful run of the project delivers them to
// every sink; at most maxPending per project, the oldest dropped.
func (r *Reconciler) keepAudit(projectID string, audit []alert.Notice) {
	if len(audit) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unsaved == nil {
		r.unsaved = map[string][]alert.Notice{}
	}
	kept := append(r.unsaved[projectID], audit...)
	if len(kept) > maxPending {
		kept = kept[len(kept)-maxPending:]
	}
	r.unsaved[projectID] = kept
}

// takeAudit returns and forgets the audit notices keepAudit holds for a
// project.
func (r *Reconciler) takeAudit(projectID string) []alert.Notice {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.unsaved[projectID]
	delete(r.unsaved, projectID)
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// approvedMeanwhile reports whether connection a is Approved on its vault
// now, after an approval of it failed.
func approvedMeanwhile(ctx context.Context, az Azure, a plan.Approval) bool {
	conns, err := az.Connections(ctx, a.Vault)
	if err != nil {
		return false
	}
	for _, c := range conns {
		if strings.EqualFold(c.Name, a.Connection) {
			return c.Status == vault.StatusApproved
		}
	}
	return false
}

func (r *Reconciler) allSinks() []Sink {
	return append([]Sink{r.logSink}, r.sinks...)
}

// trim keeps at most maxPending deliveries, dropping (and logging) the oldest.
func (r *Reconciler) trim(ctx context.Context, p []Delivery) []Delivery {
	if len(p) <= maxPending {
		return p
	}
	for _, d := range p[:len(p)-maxPending] {
		r.log.ErrorContext(ctx, "dropping undeliverable notice", "sink", d.Sink, "notice", d.Notice.ID,
			"fingerprint", d.Notice.Alert.Fingerprint, "attempts", d.Attempts)
	}
	return slices.Clone(p[len(p)-maxPending:])
}

type deliveryKey struct{ notice, sink string }

// deliver sends the claimed deliveries, one batch per sink, and says which
// went through and which failed (with the error).
func (r *Reconciler) deliver(ctx context.Context, claimed []Delivery) (map[deliveryKey]bool, map[deliveryKey]string) {
	delivered := map[deliveryKey]bool{}
	failed := map[deliveryKey]string{}
	for _, s := range r.allSinks() {
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
		undelivered := map[string]bool{}
		for _, n := range notify.Undelivered(err, batch) {
			undelivered[n.ID] = true
		}
		for _, n := range batch {
			k := deliveryKey{n.ID, s.Name()}
			if undelivered[n.ID] {
				failed[k] = err.Error()
			} else {
				delivered[k] = true
			}
		}
		if err != nil {
			r.log.WarnContext(ctx, "alert sink failed; notices stay pending", "sink", s.Name(), "notices", len(batch), "error", err.Error())
		}
	}
	return delivered, failed
}

// settle removes delivered notices from the project's pending list and
// releases the claims of failed ones for the next reconcile.
func (r *Reconciler) settle(ctx context.Context, key, claim string, delivered map[deliveryKey]bool, failed map[deliveryKey]string) error {
	if len(delivered) == 0 && len(failed) == 0 {
		return nil
	}
	_, err := state.Update(ctx, r.store, key, func(d *Doc) error {
		kept := d.Pending[:0]
		for _, p := range d.Pending {
			k := deliveryKey{p.Notice.ID, p.Sink}
			if delivered[k] && p.ClaimedBy == claim {
				continue
			}
			if msg, ok := failed[k]; ok && p.ClaimedBy == claim {
				p.Attempts++
				p.LastError = msg
				p.ClaimedBy, p.ClaimUntil = "", time.Time{}
			}
			kept = append(kept, p)
		}
		d.Pending = kept
		return nil
	})
	return err
}

func summarize(s plan.Snapshot, res plan.Result, mode plan.Mode, now time.Time, approved []string) *Summary {
	sum := &Summary{
		At: now, Mode: mode, Endpoints: s.Endpoints, Connections: s.Connections, Clusters: s.Clusters,
		Decisions: res.Decisions, Errors: s.Errors, Key: s.Key, Approved: approved,
	}
	if !s.Vault.IsZero() {
		sum.Vault = s.Vault.String()
	}
	if s.Config != nil {
		sum.KeyIdentifier = s.Config.KeyIdentifier
		sum.Valid = s.Config.Valid
		sum.RequirePrivateNetworking = s.Config.RequirePrivateNetworking
	}
	if s.VaultState != nil {
		found := s.VaultState.Found
		sum.VaultFound = &found
		sum.Hold = s.VaultState.Hold()
	}
	return sum
}
