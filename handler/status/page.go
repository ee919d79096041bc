package status

import (
	"bytes"
	"cmp"
	_ "embed"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

//go:embed page.html
var pageHTML string

// pageTmpl renders the Status page. html/template escapes every value: alert
// summaries, names and error messages come from outside.
var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"ts":         func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"ago":        ago,
	"stateLabel": func(s State) string { return stateLabels[s][0] },
	"stateIcon":  func(s State) string { return stateLabels[s][1] },
	"class":      class,
	"vaultName":  vaultName,
	"days":       Days,
	"flag":       Flag,
	"yes":        func(b *bool) bool { return b != nil && *b },
	"no":         func(b *bool) bool { return b != nil && !*b },
	"join":       strings.Join,
	"deref":      func(n *int) int { return *n },
	"unreadTile": func(title, why string) any { return struct{ Title, Why string }{title, why} },
}).Parse(pageHTML))

var stateLabels = map[State][2]string{Healthy: {"Healthy", "✓"}, Warning: {"Warning", "!"}, Critical: {"Critical", "✕"}, Unknown: {"Unknown", "?"}}

// htmlData is the page with its projects worst first (what needs a person
// comes at the top), counted by state.
type htmlData struct {
	Page
	Counts []stateCount
	Worst  State
}

type stateCount struct {
	State State
	N     int
}

func newHTMLData(p Page) htmlData {
	rank := map[State]int{Healthy: 0, Unknown: 1, Warning: 2, Critical: 3}
	d := htmlData{Page: p, Worst: Unknown}
	d.Projects = slices.Clone(p.Projects)
	slices.SortStableFunc(d.Projects, func(a, b Project) int { return rank[b.State] - rank[a.State] })
	if len(d.Projects) > 0 {
		d.Worst = d.Projects[0].State
	}
	for _, s := range []State{Critical, Warning, Unknown, Healthy} {
		if n := len(slices.DeleteFunc(slices.Clone(p.Projects), func(p Project) bool { return p.State != s })); n > 0 {
			d.Counts = append(d.Counts, stateCount{s, n})
		}
	}
	return d
}

// writeHTML renders the template name (page or error) with data.
func writeHTML(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pageTmpl.ExecuteTemplate(&buf, name, data); err != nil {
		buf.Reset()
		status = http.StatusInternalServerError
		pageTmpl.ExecuteTemplate(&buf, "error", errorBody{Error: "the status page could not be rendered", Status: status})
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// ago says how long before now t was, coarsely ("just now", "5 minutes ago").
func ago(now, t time.Time) string {
	switch d := now.Sub(t); {
	case d < 0:
		return "in the future"
	case d < 2*time.Minute:
		return "just now"
	default:
		return age(d) + " ago"
	}
}

// classes colour a decision or a status: good (approved or would be), bad
// (a problem the operator must look at), warn (waiting); neutral otherwise.
var classes = map[string]string{
	plan.VerdictApprove: "good", plan.VerdictAlreadyApproved: "good", plan.VerdictWouldApprove: "good",
	plan.VerdictForeign: "bad", plan.VerdictConnectionMissing: "bad", plan.VerdictHeld: "bad", plan.VerdictEndpointNotRequesting: "bad",
	plan.VerdictVaultUnreadable: "bad", plan.VerdictEndpointsUnreadable: "bad", plan.VerdictConnectionsUnreadable: "bad", plan.VerdictConfigUnreadable: "bad",
	"ACTIVE": "good", "APPROVED": "good", "FAILED": "bad", "REJECTED": "bad", "DISCONNECTED": "bad", "PENDING_RECREATION": "bad", "DELETING": "bad",
	"PENDING": "warn", "INITIATING": "warn", "PENDING_ACCEPTANCE": "warn",
}

// class is the colour of a verdict or a status (statuses in any case).
func class(s string) string { return cmp.Or(classes[s], classes[strings.ToUpper(s)], "neutral") }

// vaultName shortens a vault resource ID to "name (resource group)".
func vaultName(id string) string {
	if v, err := resource.ParseID(id); err == nil {
		return v.Name + " (" + v.ResourceGroup + ")"
	}
	return id
}

// Days says what a KeyExpiresInDays means for people ("10 days left",
// "expires today", "expired 3 days ago"); "" for nil (no expiry).
func Days(n *int) string {
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

// Flag says an optional fact for people: "yes", "no", or "not read" for nil.
func Flag(b *bool) string {
	switch {
	case b == nil:
		return "not read"
	case *b:
		return "yes"
	}
	return "no"
}
