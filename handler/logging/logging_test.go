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
	outer := logging.With(context.Background(), slog.String("invocationId", "inv-1"))
	ctx := logging.With(outer, slog.String("eventId", "ev-9"))
	logging.With(outer, slog.String("eventId", "sibling")) // must not leak into ctx
	log.DebugContext(ctx, "hidden")
	log.InfoContext(ctx, "hello", "n", 3)
	log.Info("no context")
	dec := json.NewDecoder(&buf)
	var first, second map[string]any
	if err := dec.Decode(&first); err != nil || dec.Decode(&second) != nil || dec.More() {
		t.Fatalf("want 2 records (debug filtered): %v %s", err, buf.String())
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
