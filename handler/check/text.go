package check

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/status"
)

// writeText prints the report for a person: plain text, no colours, tables
// aligned with spaces. Every value that came from outside (names, messages,
// alert text) is cleaned of control characters, so a hostile name can't
// drive the terminal.
func writeText(out io.Writer, res Result) error {
	w := bufio.NewWriter(out)
	fmt.Fprintf(w, "atlas-akv-guard check  %s  observe mode: nothing is written to Azure\n",
		res.GeneratedAt.Format(time.RFC3339))
	for _, p := range res.Projects {
		writeProject(w, p)
	}
	writePrerequisites(w, res.Prerequisites)
	fmt.Fprintln(w)
	crit, warn := res.Alerts[alert.Critical], res.Alerts[alert.Warning]
	switch res.Outcome {
	case OutcomeHealthy:
		unknown := ""
		if n := prereqCount(res.Prerequisites, PrereqCannotTell); n > 0 {
			unknown = fmt.Sprintf("; %d prerequisite(s) could not be checked (cannot-tell above)", n)
		}
		fmt.Fprintf(w, "RESULT: healthy: no warning or critical alert in %d project(s)%s (exit %d)\n", len(res.Projects), unknown, res.ExitCode)
	case OutcomeProblems:
		fmt.Fprintf(w, "RESULT: problems found: %d critical, %d warning open alert(s), %d prerequisite problem(s) (exit %d)\n",
			crit, warn, prereqCount(res.Prerequisites, PrereqProblem), res.ExitCode)
	default:
		fmt.Fprintf(w, "RESULT: the check could not run: %s (exit %d)\n", clean(res.Reason), res.ExitCode)
	}
	return w.Flush()
}

func writeProject(w *bufio.Writer, p Project) {
	s := p.Status
	fmt.Fprintf(w, "\n== project %s: %s ==\n", clean(p.ProjectID), strings.ToUpper(string(s.State)))
	if s.Note != "" {
		fmt.Fprintf(w, "   %s\n", clean(s.Note))
	}

	if s.LastReconcile != nil {
		section(w, "EAR config (Atlas)")
		if s.Unread(plan.SourceEncryptionAtRest) {
			fmt.Fprintln(w, "  (not read: see below)")
		} else {
			vaultLine := orDash(s.Vault)
			if s.VaultFound != nil && !*s.VaultFound {
				vaultLine += "  (NOT FOUND in Azure)"
			}
			kvLine(w, "vault", clean(vaultLine))
			kvLine(w, "key identifier", clean(orDash(s.KeyIdentifier)))
			kvLine(w, "valid (Atlas says)", status.YesNoUnknown(s.Valid))
			kvLine(w, "requirePrivateNetworking", status.YesNo(s.RequirePrivateNetworking))
			kvLine(w, "hold tag on the vault", status.YesNo(s.Hold))
		}

		section(w, "Key")
		if k := s.Key; k != nil {
			kvLine(w, "version (pinned)", clean(k.Name)+"/"+clean(k.Version))
			if !k.Found {
				kvLine(w, "found", "NO: the key or this version is missing")
			}
			kvLine(w, "enabled", status.YesNo(k.Enabled))
			kvLine(w, "expires", expiry(k))
			kvLine(w, "not before", timeOr(k.NotBefore, "-"))
			latest := orDash(clean(k.Latest))
			if k.Latest != "" {
				latest += "  (" + map[bool]string{true: "enabled", false: "disabled"}[k.LatestEnabled] + ")"
			}
			if k.RotationPending {
				latest += "  newer than the pinned version: rotate keyIdentifier in Atlas"
			}
			kvLine(w, "latest version", latest)
		} else {
			fmt.Fprintln(w, "  (not read)")
		}

		section(w, "Atlas endpoints and vault connections")
		if s.Unread(plan.SourcePrivateEndpoints) {
			fmt.Fprintln(w, "  (not read: see below)")
		} else if len(s.Endpoints) == 0 {
			fmt.Fprintln(w, "  (Atlas lists no EAR private endpoint)")
		} else {
			t := table(w)
			fmt.Fprintln(t, "  REGION\tATLAS STATUS\tCONNECTION\tVAULT STATUS\tDECISION\tWHY")
			absent := "absent"
			if s.Unread(plan.SourceConnections) {
				absent = "unknown"
			}
			for _, e := range s.Endpoints {
				atlasStatus := e.AtlasStatus
				if e.ErrorMessage != "" {
					atlasStatus += " (" + e.ErrorMessage + ")"
				}
				fmt.Fprintf(t, "  %s\t%s\t%s\t%s\t%s\t%s\n", clean(orDash(e.Region)), clean(atlasStatus), clean(orDash(e.ConnectionName)),
					clean(orStr(e.ConnectionStatus, absent)), clean(orDash(e.Verdict)), clean(e.Reason))
			}
			t.Flush()
		}
		if len(s.ForeignConnections) > 0 {
			section(w, "Other connections on the vault (not requested by Atlas)")
			t := table(w)
			fmt.Fprintln(t, "  CONNECTION\tVAULT STATUS\tDECISION\tWHY")
			for _, c := range s.ForeignConnections {
				fmt.Fprintf(t, "  %s\t%s\t%s\t%s\n", clean(c.Name), clean(c.Status), clean(orDash(c.Verdict)), clean(c.Reason))
			}
			t.Flush()
		}

		if s.Unread(plan.SourceClusters) {
			section(w, "Clusters")
			fmt.Fprintln(w, "  (not read: see below)")
		} else {
			section(w, fmt.Sprintf("Clusters (%d, %d with EAR, %d paused)", s.Clusters.Total, s.Clusters.EAR, len(s.Clusters.Paused)))
			if len(s.Clusters.Items) > 0 {
				t := table(w)
				fmt.Fprintln(t, "  NAME\tEAR\tPAUSED\tSTATE")
				for _, c := range s.Clusters.Items {
					fmt.Fprintf(t, "  %s\t%s\t%s\t%s\n", clean(c.Name), status.YesNo(c.EAR), status.YesNo(c.Paused), clean(orDash(c.StateName)))
				}
				t.Flush()
			}
		}
	}

	section(w, fmt.Sprintf("Open alerts (%d)", len(s.OpenAlerts)))
	if len(s.OpenAlerts) > 0 {
		t := table(w)
		fmt.Fprintln(t, "  SEVERITY\tKIND\tSINCE\tSUMMARY")
		for _, a := range s.OpenAlerts {
			summary := clean(a.Summary)
			if a.Actor != "" {
				summary += " (by " + clean(a.Actor) + ")"
			}
			fmt.Fprintf(t, "  %s\t%s\t%s\t%s\n", a.Severity, clean(string(a.Kind)), a.FirstSeen.UTC().Format(time.RFC3339), summary)
		}
		t.Flush()
	}

	if len(p.MissingPermissions) > 0 {
		section(w, "Missing permissions")
		for _, m := range p.MissingPermissions {
			fmt.Fprintf(w, "  - %s: %s\n", m.Source, clean(m.Remedy))
		}
	}
	if len(s.Errors) > 0 {
		section(w, "What the guard could not read")
		t := table(w)
		for _, e := range s.Errors {
			fmt.Fprintf(t, "  %s\t%s\n", e.Source, clean(e.Message))
		}
		t.Flush()
	}

	r := p.Report
	line := fmt.Sprintf("Reconcile: %d Atlas + %d ARM calls, %d ms", r.AtlasCalls, r.ARMCalls, r.DurationMS)
	if len(r.WouldApprove) > 0 {
		line += "; would approve " + clean(strings.Join(r.WouldApprove, ", "))
	}
	if r.Error != "" {
		line += "; error: " + clean(r.Error)
	}
	fmt.Fprintf(w, "\n%s\n", line)
}

// kvLine prints one "label  value" line; labels share one column width
// across sections.
func kvLine(w io.Writer, label, value string) { fmt.Fprintf(w, "  %-26s%s\n", label, value) }

func section(w io.Writer, title string) { fmt.Fprintf(w, "\n%s\n", title) }

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func clean(s string) string { return alert.Scrub(s) }

func expiry(k *status.Key) string {
	if k.Expires == nil {
		return "never"
	}
	d := *k.ExpiresInDays
	switch {
	case d < 0:
		return fmt.Sprintf("%s  (EXPIRED %d days ago)", k.Expires.UTC().Format(time.RFC3339), -d)
	case d == 0:
		return fmt.Sprintf("%s  (today)", k.Expires.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s  (in %d days)", k.Expires.UTC().Format(time.RFC3339), d)
}

func timeOr(t *time.Time, def string) string {
	if t == nil {
		return def
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string { return orStr(s, "-") }

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
