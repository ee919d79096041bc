package notify

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// Log writes one structured record per notice to a slog.Logger. The level
// follows the severity (critical → Error, warning → Warn, info → Info);
// resolved notices are Info. It never fails.
type Log struct {
	logger *slog.Logger
}

// NewLog returns a Log sink on l (slog.Default() when nil).
func NewLog(l *slog.Logger) *Log {
	if l == nil {
		l = slog.Default()
	}
	return &Log{logger: l}
}

// Name implements Sink.
func (*Log) Name() string { return "log" }

// Send implements Sink. Record message "alert <action>"; attributes
// notice_id, action, fingerprint, kind, severity, project, vault, subject,
// summary, actor, at and a details group (empty ones are left out).
func (l *Log) Send(ctx context.Context, notices []alert.Notice) error {
	for _, n := range notices {
		a := n.Alert
		attrs := []slog.Attr{slog.String("notice_id", n.ID), slog.String("action", string(n.Action)),
			slog.String("fingerprint", a.Fingerprint), slog.String("kind", string(a.Kind)),
			slog.String("severity", string(a.Severity)), slog.String("project", a.ProjectID)}
		for _, kv := range [][2]string{{"vault", a.Vault}, {"subject", a.Subject}, {"summary", a.Summary}, {"actor", a.Actor}} {
			if kv[1] != "" {
				attrs = append(attrs, slog.String(kv[0], kv[1]))
			}
		}
		if !n.At.IsZero() {
			attrs = append(attrs, slog.Time("at", n.At))
		}
		if len(a.Details) > 0 {
			var d []any
			for _, k := range slices.Sorted(maps.Keys(a.Details)) {
				d = append(d, slog.String(k, a.Details[k]))
			}
			attrs = append(attrs, slog.Group("details", d...))
		}
		level := map[alert.Severity]slog.Level{alert.Critical: slog.LevelError, alert.Warning: slog.LevelWarn}[a.Severity] // else Info
		if n.Action == alert.Resolved {
			level = slog.LevelInfo
		}
		l.logger.LogAttrs(ctx, level, "alert "+string(n.Action), attrs...)
	}
	return nil
}
