package meter_test

import (
	"context"
	"sync"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
)

func TestCountsTravelInTheContext(t *testing.T) {
	if c := meter.FromContext(context.Background()); c != nil {
		t.Fatalf("counter from an empty context = %v", c)
	}
	var none *meter.Calls
	none.AddAtlas(1) // a nil counter ignores adds
	if none.Atlas() != 0 || none.ARM() != 0 {
		t.Fatal("nil counter counts")
	}
	c := &meter.Calls{}
	ctx := meter.WithCalls(context.Background(), c)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			meter.FromContext(ctx).AddAtlas(2)
			meter.FromContext(ctx).AddARM(1)
		})
	}
	wg.Wait()
	if c.Atlas() != 100 || c.ARM() != 50 {
		t.Fatalf("counted Atlas %d, ARM %d; want 100 and 50", c.Atlas(), c.ARM())
	}
}
