package check

import (
	"cmp"
	_ "embed"
	"fmt"
	"io"
	"path"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/status"
)

//go:embed report.tmpl
var reportText string

// reportTmpl prints the report for a person: plain text, no colours, tables
// aligned with spaces. Every value that came from outside (names, messages,
// alert text) goes through c or cell, which clean it of control characters,
// so a hostile name can't drive the terminal or break the layout.
var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"c":      clean,
	"cell":   func(v any) string { return cmp.Or(clean(v), "-") },
	"kv":     func(label string, v any) string { return fmt.Sprintf("  %-26s%s", label, cmp.Or(clean(v), "-")) },
	"flag":   status.Flag,
	"yesno":  func(b bool) string { return status.Flag(&b) },
	"no":     func(b *bool) bool { return b != nil && !*b },
	"days":   status.Days,
	"rfc":    rfc,
	"upper":  func(s status.State) string { return strings.ToUpper(string(s)) },
	"base":   path.Base,
	"join":   strings.Join,
	"inc":    func(i int) int { return i + 1 },
	"count":  prereqCount,
	"alerts": func(n map[alert.Severity]int, s alert.Severity) int { return n[s] },
}).Parse(reportText))

func writeText(out io.Writer, res Result) error {
	t := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	if err := reportTmpl.ExecuteTemplate(t, "report", res); err != nil {
		return err
	}
	return t.Flush()
}

func clean(v any) string { return alert.Scrub(fmt.Sprint(v)) }

// rfc formats a time.Time or *time.Time; "" for nil.
func rfc(t any) string {
	switch t := t.(type) {
	case time.Time:
		return t.UTC().Format(time.RFC3339)
	case *time.Time:
		if t != nil {
			return t.UTC().Format(time.RFC3339)
		}
	}
	return ""
}
