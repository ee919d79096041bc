// Package check is `handler check`: one observe-only reconcile of every
// guarded project against the real Atlas and Azure, printed as a report for
// a person (plain text, aligned tables) or, with -json, as one JSON document
// for machines.
//
// The caller (package app) has loaded the configuration, forced observe mode,
// dropped the external alert sinks and built the Reconciler over a fresh
// in-memory store; Run reconciles once, then reads each project's document
// back from that store.
package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/status"
)

// Exit statuses of Run.
const (
	// ExitHealthy: every project was checked and none has an open warning or
	// critical alert (info alerts such as would-approve don't count).
	ExitHealthy = 0
	// ExitProblems: an open warning or critical alert in some project
	// (guard-blind included: a project that could not be read while others
	// could is a problem, not a failed check) or a prerequisite problem.
	ExitProblems = 1
	// ExitFailed: the check could not run: o is incomplete, nothing to
	// check, the context ended before the reconcile finished, the store or
	// output failed, or NOT ONE project was checked (wrong Atlas
	// credentials, unreachable Atlas, every project id wrong).
	ExitFailed = 2
)

// Outcomes, in Result.Outcome.
const (
	OutcomeHealthy  = "healthy"
	OutcomeProblems = "problems"
	OutcomeFailed   = "failed"
)

// Options are what app.check hands over: Reconciler, the Store it writes to
// (a fresh state.Memory) and Out are required; Projects are reported in
// this order; JSON prints one JSON document instead of the text report; Now
// is the clock (default time.Now); Prereqs, if set, reads each vault's
// prerequisites.
type Options struct {
	Reconciler *reconcile.Reconciler
	Store      state.Store
	Projects   []string
	JSON       bool
	Out        io.Writer
	Now        func() time.Time
	Prereqs    Prereqs
}

// Result is the JSON document of `handler check -json`.
type Result struct {
	GeneratedAt   time.Time              `json:"generatedAt"`
	Mode          plan.Mode              `json:"mode"`
	Outcome       string                 `json:"outcome"`          // healthy, problems or failed
	ExitCode      int                    `json:"exitCode"`         // the process's
	Reason        string                 `json:"reason,omitempty"` // why the check failed
	Alerts        map[alert.Severity]int `json:"alerts"`           // open alerts across all projects
	Projects      []Project              `json:"projects"`
	Prerequisites []Prerequisite         `json:"prerequisites,omitempty"` // of each vault's subscription
}

// Project is one project's part of the Result: the reconcile's own Report
// and the Status page's digest. Checked is false when the check learned
// nothing: the reconcile recorded nothing, or Atlas's EAR config (which
// names the vault) could not be read.
type Project struct {
	ProjectID          string           `json:"projectId"`
	Checked            bool             `json:"checked"`
	Report             reconcile.Report `json:"report"`
	Status             status.Project   `json:"status"`
	MissingPermissions []Permission     `json:"missingPermissions"`
}

// Permission is a permission the guard lacks (the ARM role action or, for
// Atlas, the kind of role) and what to do about it.
type Permission struct {
	Source plan.Source `json:"source"`
	Action string      `json:"action"`
	Remedy string      `json:"remedy"`
}

// Run reconciles every project once, prints the report to o.Out and returns
// the exit status (ExitHealthy, ExitProblems or ExitFailed). What is known is
// printed even when the check failed.
func Run(ctx context.Context, o Options) int {
	if o.Out == nil {
		return ExitFailed
	}
	if o.Reconciler == nil || o.Store == nil {
		fmt.Fprintln(o.Out, "check: internal error: no reconciler or store")
		return ExitFailed
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	res := Result{GeneratedAt: now().UTC(), Mode: plan.ModeObserve, Alerts: map[alert.Severity]int{}, Projects: []Project{}}
	if len(o.Projects) == 0 {
		res.Reason = "no project to check (ATLAS_PROJECT_IDS is empty)"
		return finish(o, res)
	}

	reports, runErr := o.Reconciler.All(ctx)
	byID := map[string]reconcile.Report{}
	for _, r := range reports {
		byID[r.ProjectID] = r
	}
	if err := ctx.Err(); err != nil {
		res.Reason = "the check was interrupted before the reconcile finished: " + err.Error()
	}

	checked := 0
	for _, id := range o.Projects {
		doc, note, err := status.ReadDoc(ctx, o.Store, id)
		if err != nil && res.Reason == "" {
			res.Reason = "reading the check's own state failed: " + err.Error()
		}
		p := Project{ProjectID: id, Report: byID[id], Status: status.FromDoc(id, doc, now())}
		p.Report.ProjectID = id
		p.Checked = doc != nil && doc.Summary != nil && p.Status.NotRead(plan.SourceEncryptionAtRest) == ""
		switch {
		case note != "":
			p.Status.Note = note
		case p.Checked:
			checked++
		case doc == nil || doc.Summary == nil:
			p.Status.Note = "not checked: the reconcile recorded nothing"
			if p.Report.Error != "" {
				p.Status.Note += " (" + alert.Scrub(p.Report.Error) + ")"
			}
		default:
			p.Status.Note = "not checked: Atlas's encryption-at-rest config could not be read, so the vault is unknown"
		}
		p.MissingPermissions = permissions(p.Status)
		for _, a := range p.Status.OpenAlerts {
			res.Alerts[a.Severity]++
		}
		res.Projects = append(res.Projects, p)
	}
	if o.Prereqs != nil {
		res.Prerequisites = prerequisites(ctx, o.Prereqs, res.Projects)
	}
	if res.Reason == "" && checked == 0 {
		res.Reason = "no project could be checked"
		if runErr != nil {
			res.Reason += ": " + alert.Scrub(runErr.Error())
		}
	}
	return finish(o, res)
}

func finish(o Options, res Result) int {
	switch {
	case res.Reason != "":
		res.Outcome, res.ExitCode = OutcomeFailed, ExitFailed
	case res.Alerts[alert.Critical]+res.Alerts[alert.Warning]+prereqCount(res.Prerequisites, PrereqProblem) > 0:
		res.Outcome, res.ExitCode = OutcomeProblems, ExitProblems
	default:
		res.Outcome, res.ExitCode = OutcomeHealthy, ExitHealthy
	}
	var err error
	if o.JSON {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		err = enc.Encode(res)
	} else {
		err = writeText(o.Out, res)
	}
	if err != nil {
		return ExitFailed
	}
	return res.ExitCode
}

// permissions turns the 401/403s of a project's reads into remedies.
func permissions(p status.Project) []Permission {
	out := []Permission{}
	for _, e := range p.Errors {
		if e.Permission == "" || slices.ContainsFunc(out, func(m Permission) bool { return m.Action == e.Permission }) {
			continue
		}
		remedy := "check the Atlas credentials (ATLAS_CLIENT_ID/ATLAS_CLIENT_SECRET, or ATLAS_PUBLIC_KEY/ATLAS_PRIVATE_KEY) and give them, in project " +
			p.ProjectID + ", an " + e.Permission
		if strings.HasPrefix(e.Permission, "Microsoft.") {
			remedy = "grant " + e.Permission + " " + strings.TrimSpace("on the vault "+p.Vault) + " to the guard's identity (the guard's custom role lists it)"
		}
		out = append(out, Permission{Source: e.Source, Action: e.Permission, Remedy: remedy})
	}
	return out
}
