package transient_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

func TestMarkAndIs(t *testing.T) {
	base := errors.New("429 too many requests")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", io.EOF, false},
		{"marked", transient.Mark(base), true},
		{"wrapped after marking", fmt.Errorf("read config: %w", transient.Mark(base)), true},
		{"joined with a permanent one", errors.Join(io.EOF, transient.Mark(base)), true},
	} {
		if got := transient.Is(tc.err); got != tc.want {
			t.Errorf("%s: Is = %v, want %v", tc.name, got, tc.want)
		}
	}
	m := transient.Mark(base)
	if m.Error() != base.Error() || !errors.Is(m, base) {
		t.Fatalf("Mark must keep the message and the chain: %v", m)
	}
	if transient.Mark(nil) != nil {
		t.Fatal("Mark(nil) must be nil")
	}
}
