//go:build unix

package azurite_test

import (
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
)

func get(t *testing.T, url string) error {
	t.Helper()
	resp, err := http.Get(url + "?comp=list")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func TestStartStopRestart(t *testing.T) {
	az := azurite.Start(t)
	if az.Port == 0 || az.BlobURL == "" {
		t.Fatalf("no port: %+v", az)
	}
	if err := get(t, az.BlobURL); err != nil {
		t.Fatalf("running instance: %v", err)
	}
	az.Stop()
	if az.Running() {
		t.Fatal("still running after Stop")
	}
	if err := get(t, az.BlobURL); err == nil {
		t.Fatal("stopped instance still answers")
	}
	port := az.Port
	if err := az.Restart(); err != nil {
		t.Fatal(err)
	}
	if az.Port != port {
		t.Fatalf("restart moved the port: %d -> %d", port, az.Port)
	}
	if err := get(t, az.BlobURL); err != nil {
		t.Fatalf("restarted instance: %v", err)
	}
}

func TestStartProcessLeavesNoOrphan(t *testing.T) {
	az, err := azurite.StartProcess(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	pid := az.PID()
	if err := az.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pid, 0); err == nil {
		t.Fatalf("process group %d still alive after Close", pid)
	}
}

func TestMissingBinaryIsAnError(t *testing.T) {
	t.Setenv(azurite.EnvBin, "/nonexistent/azurite-blob")
	_, err := azurite.FindBinary()
	if err == nil {
		t.Fatal("want an error")
	}
	if want := "make test"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}
