package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
)

func TestContextAttributesReachEveryRecord(t *testing.T) {
	var buf bytes.Buffer
	log := logging.New(&buf, slog.LevelInfo).With("component", "test")
	ctx := logging.With(context.Background(), slog.String("invocationId", "inv-1"))
	ctx = logging.With(ctx, slog.String("eventId", "ev-9"))

	log.DebugContext(ctx, "hidden")
	log.InfoContext(ctx, "hello", "n", 3)
	log.Info("no context")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("want 2 records (debug filtered), got %d: %s", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal(lines[0], &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lines[1], &second); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"msg": "hello", "invocationId": "inv-1", "eventId": "ev-9", "component": "test", "n": 3.0} {
		if first[k] != want {
			t.Errorf("record[%q] = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := second["invocationId"]; ok {
		t.Errorf("record without context carries an invocation id: %v", second)
	}
}
