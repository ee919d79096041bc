package perf

import (
	"os"
	"sync"
	"testing"
)

// worldProjects is the size of the world the tests and benchmarks share.
const worldProjects = 100

var (
	worldOnce sync.Once
	world     *World
	worldErr  error
)

// sharedWorld returns the process's one World (see World: azidentity's
// environment and token cache are process-wide), started on first use.
func sharedWorld(tb testing.TB) *World {
	tb.Helper()
	worldOnce.Do(func() {
		world, worldErr = NewWorld(worldProjects)
	})
	if worldErr != nil {
		tb.Fatal(worldErr)
	}
	return world
}

func TestMain(m *testing.M) {
	code := m.Run()
	if world != nil {
		world.Close()
	}
	os.Exit(code)
}
