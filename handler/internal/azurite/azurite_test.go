//go:build unix

package azurite_test

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
)

// Stop ends the process, Restart brings the same service back (same
// connection string), Close leaves no process and no workspace behind.
func TestLifecycle(t *testing.T) {
	az, err := azurite.StartProcess(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer az.Close()
	alive := func(pid int) bool { return pid != 0 && syscall.Kill(pid, 0) == nil }
	pid, conn := az.PID(), az.ConnectionString
	if az.Stop(); alive(pid) || az.PID() != 0 {
		t.Fatalf("process %d still there after Stop", pid)
	}
	if err := az.Restart(); err != nil || az.ConnectionString != conn || !alive(az.PID()) {
		t.Fatalf("restart: %v; %q, was %q", err, az.ConnectionString, conn)
	}
	pid = az.PID()
	if err := az.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(az.Dir); !os.IsNotExist(err) || alive(pid) {
		t.Errorf("after Close: workspace %v, process %d alive %v", err, pid, alive(pid))
	}
}

func TestMissingBinaryIsAnError(t *testing.T) {
	t.Setenv("AZURITE_BIN", "/nonexistent/azurite-blob")
	if _, err := azurite.StartProcess(t.Context()); err == nil || !strings.Contains(err.Error(), "make test") {
		t.Fatalf("error %v does not say `make test`", err)
	}
}
