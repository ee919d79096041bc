package notify

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// Source names the guard in payloads.
const Source = "atlas-akv-guard"

// Generic is the generic webhook payload.
type Generic struct {
	Source  string         `json:"source"` // always "atlas-akv-guard"
	Notices []alert.Notice `json:"notices"`
}

// title is the one-line headline of a notice, e.g.
// "CRITICAL key-disabled raised".
func title(n alert.Notice) string {
	sev := strings.ToUpper(string(n.Alert.Severity))
	if n.Action == alert.Resolved {
		sev = "RESOLVED"
	}
	return fmt.Sprintf("%s %s %s", sev, n.Alert.Kind, n.Action)
}

type fact struct{ title, value string }

// facts lists the notice's fields for display, empty ones left out.
func facts(n alert.Notice) []fact {
	a := n.Alert
	fs := []fact{
		{"Project", a.ProjectID}, {"Vault", a.Vault}, {"Subject", a.Subject}, {"Actor", a.Actor},
	}
	for _, k := range slices.Sorted(maps.Keys(a.Details)) {
		fs = append(fs, fact{k, a.Details[k]})
	}
	if !n.At.IsZero() {
		fs = append(fs, fact{"At", n.At.UTC().Format(time.RFC3339)})
	}
	if !a.FirstSeen.IsZero() {
		fs = append(fs, fact{"First seen", a.FirstSeen.UTC().Format(time.RFC3339)})
	}
	fs = append(fs, fact{"Fingerprint", a.Fingerprint}, fact{"Notice", n.ID})
	return slices.DeleteFunc(fs, func(f fact) bool { return f.value == "" })
}

// TeamsMessage builds a Teams message with one Adaptive Card (version 1.4),
// the shape accepted by Teams Workflows ("post to a channel when a webhook
// request is received") and by incoming-webhook connectors.
func TeamsMessage(n alert.Notice) map[string]any {
	color := cmp.Or(map[alert.Severity]string{alert.Critical: "Attention", alert.Warning: "Warning", alert.Info: "Accent"}[n.Alert.Severity], "Default")
	if n.Action == alert.Resolved {
		color = "Good"
	}
	var fs []map[string]string
	for _, f := range facts(n) {
		fs = append(fs, map[string]string{"title": f.title, "value": f.value})
	}
	body := []any{
		map[string]any{"type": "TextBlock", "text": title(n), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
		map[string]any{"type": "TextBlock", "text": n.Alert.Summary, "wrap": true},
	}
	if len(n.Alert.Runbook) > 0 {
		body = append(body, map[string]any{"type": "TextBlock", "text": "What to do", "weight": "Bolder", "wrap": true},
			map[string]any{"type": "TextBlock", "text": runbook(n.Alert, nil), "wrap": true, "fontType": "Monospace"})
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"msteams": map[string]any{"width": "Full"},
		"body":    append(body, map[string]any{"type": "FactSet", "facts": fs}),
	}
	return map[string]any{
		"type": "message",
		"attachments": []any{map[string]any{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content":     card,
		}},
	}
}

// SlackMessage builds a Slack incoming-webhook message: "text" (the
// notification fallback) and Block Kit "blocks".
func SlackMessage(n alert.Notice) map[string]any {
	a := n.Alert
	text := title(n) + ": " + a.Summary
	if a.ProjectID != "" {
		text += " (project " + a.ProjectID + ")"
	}
	var fields []any
	for _, f := range facts(n) {
		if len(fields) == 10 { // Slack's limit per section
			break
		}
		fields = append(fields, map[string]any{"type": "mrkdwn", "text": clip("*"+slackEscape(f.title)+"*\n"+slackEscape(f.value), 2000)})
	}
	blocks := []any{
		map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": clip(title(n), 150)}},
	}
	if a.Summary != "" { // Slack rejects empty text objects
		blocks = append(blocks, map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": clip(slackEscape(a.Summary), 3000)}})
	}
	if len(a.Runbook) > 0 {
		blocks = append(blocks, map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": clip("*What to do*\n"+runbook(a, slackEscape), 3000)}})
	}
	if len(fields) > 0 {
		blocks = append(blocks, map[string]any{"type": "section", "fields": fields})
	}
	return map[string]any{"text": clip(slackEscape(text), 3000), "blocks": blocks}
}

// runbook numbers the alert's steps, one per line, each passed through esc
// when it is not nil.
func runbook(a alert.Alert, esc func(string) string) string {
	var b strings.Builder
	for i, step := range a.Runbook {
		if esc != nil {
			step = esc(step)
		}
		fmt.Fprintf(&b, "%d. %s\n", i+1, step)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// slackEscape escapes the three characters Slack's mrkdwn treats as control.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
