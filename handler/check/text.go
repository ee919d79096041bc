package check

import (
	"bufio"
	"cmp"
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
		writeConfig(w, s)
		writeKey(w, s)
		writeEndpoints(w, s)
		writeClusters(w, s)
	}
	writeAlerts(w, s)
	writeProblems(w, p)
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

// notRead prints "(not read: why)" when src was not read and says so.
func notRead(w io.Writer, s status.Project, src plan.Source) bool {
	why := s.NotRead(src)
	if why != "" {
		fmt.Fprintf(w, "  (not read: %s)\n", clean(why))
	}
	return why != ""
}

func writeConfig(w io.Writer, s status.Project) {
	section(w, "EAR config (Atlas)")
	if notRead(w, s, plan.SourceEncryptionAtRest) {
		return
	}
	vaultLine := cmp.Or(s.Vault, "-")
	if s.VaultFound != nil && !*s.VaultFound {
		vaultLine += "  (NOT FOUND in Azure)"
	}
	kvLine(w, "vault", clean(vaultLine))
	kvLine(w, "key identifier", clean(cmp.Or(s.KeyIdentifier, "-")))
	kvLine(w, "valid (Atlas says)", flag(s.Valid))
	kvLine(w, "requirePrivateNetworking", flag(s.RequirePrivateNetworking))
	kvLine(w, "hold tag on the vault", flag(s.Hold))
}

func writeKey(w io.Writer, s status.Project) {
	section(w, "Key")
	k := s.Key
	if k == nil {
		notRead(w, s, plan.SourceKey)
		return
	}
	kvLine(w, "version (pinned)", clean(k.Name)+"/"+clean(k.Version))
	if !k.Found {
		kvLine(w, "found", "NO: the key or this version is missing")
	}
	kvLine(w, "enabled", flag(&k.Enabled))
	kvLine(w, "expires", expiry(k.Expires, s.KeyExpiresInDays))
	kvLine(w, "not before", timeOr(k.NotBefore, "-"))
	latest := cmp.Or(clean(k.Latest), "-")
	if k.Latest != "" {
		latest += "  (" + map[bool]string{true: "enabled", false: "disabled"}[k.LatestEnabled] + ")"
	}
	if k.Latest != "" && k.Latest != k.Version {
		latest += "  newer than the pinned version: rotate keyIdentifier in Atlas"
	}
	kvLine(w, "latest version", latest)
}

func writeEndpoints(w io.Writer, s status.Project) {
	section(w, "Atlas endpoints and vault connections")
	switch {
	case notRead(w, s, plan.SourcePrivateEndpoints):
	case len(s.Endpoints) == 0:
		fmt.Fprintln(w, "  (Atlas lists no EAR private endpoint)")
	default:
		absent := map[bool]string{true: "not read", false: "absent"}[s.NotRead(plan.SourceConnections) != ""]
		rows := [][]string{{"REGION", "ATLAS STATUS", "CONNECTION", "VAULT STATUS", "DECISION", "WHY"}}
		for _, e := range s.Endpoints {
			atlasStatus := e.AtlasStatus
			if e.ErrorMessage != "" {
				atlasStatus += " (" + e.ErrorMessage + ")"
			}
			rows = append(rows, []string{e.Region, atlasStatus, e.ConnectionName, cmp.Or(e.ConnectionStatus, absent), e.Verdict, e.Reason})
		}
		writeTable(w, rows)
	}
	if len(s.ForeignConnections) > 0 {
		section(w, "Other connections on the vault (not requested for this project)")
		rows := [][]string{{"CONNECTION", "VAULT STATUS", "DECISION", "WHY"}}
		for _, c := range s.ForeignConnections {
			rows = append(rows, []string{c.Name, c.Status, c.Verdict, c.Reason})
		}
		writeTable(w, rows)
	}
}

func writeClusters(w io.Writer, s status.Project) {
	c := s.Clusters
	if c == nil {
		section(w, "Clusters")
		notRead(w, s, plan.SourceClusters)
		return
	}
	section(w, fmt.Sprintf("Clusters (%d, %d with EAR, %d paused)", c.Total, c.EAR, len(c.Paused)))
	rows := [][]string{{"NAME", "EAR", "PAUSED", "STATE"}}
	for _, c := range c.Items {
		rows = append(rows, []string{c.Name, flag(&c.EAR), flag(&c.Paused), c.StateName})
	}
	writeTable(w, rows)
}

func writeAlerts(w io.Writer, s status.Project) {
	section(w, fmt.Sprintf("Open alerts (%d)", len(s.OpenAlerts)))
	rows := [][]string{{"SEVERITY", "KIND", "SINCE", "SUMMARY"}}
	for _, a := range s.OpenAlerts {
		summary := a.Summary
		if a.Actor != "" {
			summary += " (by " + a.Actor + ")"
		}
		rows = append(rows, []string{string(a.Severity), string(a.Kind), a.FirstSeen.UTC().Format(time.RFC3339), summary})
	}
	writeTable(w, rows)
	for _, a := range s.OpenAlerts {
		if len(a.Runbook) > 0 {
			fmt.Fprintf(w, "  What to do about %s:\n", clean(strings.TrimSpace(string(a.Kind)+" "+a.Subject)))
		}
		for i, step := range a.Runbook {
			fmt.Fprintf(w, "    %d. %s\n", i+1, clean(step))
		}
	}
}

// writeProblems prints the missing permissions and the failed reads.
func writeProblems(w io.Writer, p Project) {
	if len(p.MissingPermissions) > 0 {
		section(w, "Missing permissions")
		for _, m := range p.MissingPermissions {
			fmt.Fprintf(w, "  - %s: %s\n", m.Source, clean(m.Remedy))
		}
	}
	if len(p.Status.Errors) > 0 {
		section(w, "What the guard could not read")
		rows := [][]string{{"SOURCE", "ERROR"}}
		for _, e := range p.Status.Errors {
			rows = append(rows, []string{string(e.Source), e.Message})
		}
		writeTable(w, rows)
	}
}

// kvLine prints one "label  value" line; labels share one column width
// across sections.
func kvLine(w io.Writer, label, value string) { fmt.Fprintf(w, "  %-26s%s\n", label, value) }

func section(w io.Writer, title string) { fmt.Fprintf(w, "\n%s\n", title) }

// writeTable prints rows[1:] under the header rows[0], aligned with spaces;
// nothing without rows. Every cell is cleaned; an empty one shows as "-".
func writeTable(w io.Writer, rows [][]string) {
	if len(rows) < 2 {
		return
	}
	t := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		cells := make([]string, len(r))
		for j, c := range r {
			cells[j] = cmp.Or(clean(c), "-")
		}
		fmt.Fprintln(t, "  "+strings.Join(cells, "\t"))
	}
	t.Flush()
}

func clean(s string) string { return alert.Scrub(s) }

// flag renders an optional flag for people; nil is "not read".
func flag(b *bool) string {
	switch {
	case b == nil:
		return "not read"
	case *b:
		return "yes"
	}
	return "no"
}

func expiry(exp *time.Time, days *int) string {
	if exp == nil || days == nil {
		return "never"
	}
	at := exp.UTC().Format(time.RFC3339)
	switch d := *days; {
	case d < 0:
		return fmt.Sprintf("%s  (EXPIRED %d days ago)", at, -d)
	case d == 0:
		return at + "  (today)"
	default:
		return fmt.Sprintf("%s  (in %d days)", at, d)
	}
}

func timeOr(t *time.Time, def string) string {
	if t == nil {
		return def
	}
	return t.UTC().Format(time.RFC3339)
}
