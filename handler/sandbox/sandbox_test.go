package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
)

// The sandbox as a user meets it: it starts, `handler check` run the printed
// way reports healthy, a change from the menu shows as an alert on the Status
// page, and stopping it leaves no process and no file behind.
func TestSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler and runs Azurite")
	}
	bin := filepath.Join(t.TempDir(), "handler")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the handler: %v\n%s", err, out)
	}
	dir := t.TempDir()
	var out syncBuffer
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-handler", bin, "-period", "200ms", "-dir", dir}, &out, &out) }()

	waitCtx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	wait := func(what string, cond func() bool) {
		t.Helper()
		if err := world.WaitFor(waitCtx, what, cond); err != nil {
			t.Fatalf("%v; output:\n%s", err, out.String())
		}
	}
	wait("the sandbox to run", func() bool { return strings.Contains(out.String(), "sandbox: running") })
	text := out.String()
	statusURL := regexp.MustCompile(`Status page +(\S+)`).FindStringSubmatch(text)[1]
	var pids []int
	for _, m := range regexp.MustCompile(`(?:handler|Azurite) pid (\d+)`).FindAllStringSubmatch(text, -1) {
		pid, _ := strconv.Atoi(m[1])
		pids = append(pids, pid)
	}
	if len(pids) != 2 {
		t.Fatalf("pids %v in:\n%s", pids, text)
	}

	// The printed check command, with the handler built here.
	checkCmd := regexp.MustCompile(`handler check +\((.*)\)`).FindStringSubmatch(text)[1]
	checkCmd = strings.Replace(checkCmd, "bin/handler-local", bin, 1)
	chk := exec.CommandContext(t.Context(), "sh", "-c", checkCmd)
	report, err := chk.CombinedOutput()
	if err != nil || !strings.Contains(string(report), "RESULT: healthy") {
		t.Fatalf("%s: %v\n%s", checkCmd, err, report)
	}

	var msg bytes.Buffer
	if code := run(t.Context(), []string{"-dir", dir, "disable-key"}, &msg, &msg); code != 0 {
		t.Fatalf("disable-key: exit %d: %s", code, msg.String())
	}
	wait("key-disabled on the Status page", func() bool {
		resp, err := http.Get(statusURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return bytes.Contains(body, []byte(`"key-disabled"`))
	})
	if code := run(t.Context(), []string{"-dir", dir, "no-such-change"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("unknown change: exit %d, want 2", code)
	}

	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("sandbox exit %d\n%s", code, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the sandbox did not stop")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d is still there (%v)", pid, err)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("files left in %s: %v", dir, left)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
