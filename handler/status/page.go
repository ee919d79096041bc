package status

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

//go:embed page.html
var pageHTML string

// pageTmpl renders the Status page. html/template escapes every value: alert
// summaries, names and error messages come from outside.
var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"ts":           formatTime,
	"ago":          ago,
	"stateLabel":   func(s State) string { return stateLabels[s][0] },
	"stateIcon":    func(s State) string { return stateLabels[s][1] },
	"verdictClass": verdictClass,
	"statusClass":  statusClass,
	"sevClass":     func(s alert.Severity) string { return "sev-" + string(s) },
	"vaultName":    vaultName,
	"days":         days,
	"yes":          func(b *bool) bool { return b != nil && *b },
	"no":           func(b *bool) bool { return b != nil && !*b },
	"join":         strings.Join,
	"deref":        func(n *int) int { return *n },
	"unreadTile":   func(title, why string) unreadTile { return unreadTile{title, why} },
	"projectData":  func(now time.Time, p Project) projectData { return projectData{Now: now, P: p} },
}).Parse(pageHTML))

var stateLabels = map[State][2]string{Healthy: {"Healthy", "✓"}, Warning: {"Warning", "!"}, Critical: {"Critical", "✕"}, Unknown: {"Unknown", "?"}}

type htmlData struct {
	Page
	Now    time.Time
	Counts []stateCount
	Worst  State
}

type projectData struct {
	Now time.Time
	P   Project
}

type unreadTile struct{ Title, Why string }

type stateCount struct {
	State State
	N     int
}

func writeHTML(w http.ResponseWriter, p Page) {
	d := htmlData{Page: p, Now: p.GeneratedAt, Worst: Healthy}
	n := map[State]int{}
	rank := map[State]int{Healthy: 0, Unknown: 1, Warning: 2, Critical: 3}
	for _, pr := range p.Projects {
		n[pr.State]++
		if rank[pr.State] > rank[d.Worst] {
			d.Worst = pr.State
		}
	}
	if len(p.Projects) == 0 {
		d.Worst = Unknown
	}
	// Worst first: what needs a person comes at the top.
	d.Projects = slices.Clone(p.Projects)
	slices.SortStableFunc(d.Projects, func(a, b Project) int { return rank[b.State] - rank[a.State] })
	for _, s := range []State{Critical, Warning, Unknown, Healthy} {
		if n[s] > 0 {
			d.Counts = append(d.Counts, stateCount{s, n[s]})
		}
	}
	var buf bytes.Buffer
	if err := pageTmpl.ExecuteTemplate(&buf, "page", d); err != nil {
		writeHTMLError(w, http.StatusInternalServerError, "the status page could not be rendered")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

func writeHTMLError(w http.ResponseWriter, status int, msg string) {
	var buf bytes.Buffer
	pageTmpl.ExecuteTemplate(&buf, "error", struct {
		Status  int
		Message string
	}{status, msg})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// timeOf accepts a time.Time or a *time.Time (nil is the zero time).
func timeOf(t any) time.Time {
	switch v := t.(type) {
	case time.Time:
		return v
	case *time.Time:
		if v != nil {
			return *v
		}
	}
	return time.Time{}
}

func formatTime(t any) string {
	if at := timeOf(t); !at.IsZero() {
		return at.UTC().Format("2006-01-02 15:04 UTC")
	}
	return "—"
}

// ago says how long before now t was, coarsely ("just now", "5 min ago").
func ago(now time.Time, t any) string {
	at := timeOf(t)
	switch d := now.Sub(at); {
	case at.IsZero():
		return ""
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " h ago"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days ago"
	}
}

// verdictClass colours a decision: good (approved or would be), bad (a
// problem the operator must look at), neutral otherwise.
func verdictClass(v string) string {
	switch v {
	case plan.VerdictApprove, plan.VerdictAlreadyApproved, plan.VerdictWouldApprove:
		return "good"
	case plan.VerdictForeign, plan.VerdictConnectionMissing, plan.VerdictHeld, plan.VerdictEndpointNotRequesting,
		plan.VerdictVaultUnreadable, plan.VerdictEndpointsUnreadable, plan.VerdictConnectionsUnreadable, plan.VerdictConfigUnreadable:
		return "bad"
	}
	return "neutral"
}

func statusClass(s string) string {
	switch strings.ToUpper(s) {
	case "ACTIVE", "APPROVED":
		return "good"
	case "FAILED", "REJECTED", "DISCONNECTED", "PENDING_RECREATION", "DELETING":
		return "bad"
	case "PENDING", "INITIATING", "PENDING_ACCEPTANCE":
		return "warn"
	}
	return "neutral"
}

// vaultName shortens a vault resource ID to "name (resource group)".
func vaultName(id string) string {
	v, err := resource.ParseID(id)
	if err != nil {
		return id
	}
	return v.Name + " (" + v.ResourceGroup + ")"
}

func days(n *int) string {
	switch {
	case n == nil:
		return ""
	case *n < 0:
		return "expired " + strconv.Itoa(-*n) + " days ago"
	case *n == 0:
		return "expires today"
	case *n == 1:
		return "1 day left"
	}
	return strconv.Itoa(*n) + " days left"
}
