package status

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
)

// TestBrowser renders the Status page in Debian's headless Chromium: it
// checks what a person would see (the badges' text, the table rows) in the
// DOM Chromium built, that planted markup stays text, and saves a screenshot
// of a realistic page (a healthy, a warning and a critical project).
//
// It runs only with GUARD_BROWSER_TEST=1 (it needs /usr/bin/chromium, or
// GUARD_CHROMIUM). The screenshot goes to $GUARD_SCREENSHOT_DIR/status.png,
// default testdata/out/ (git-ignored); `make test-ui` writes handler/status/status.png:
//
//	GUARD_BROWSER_TEST=1 go test -count=1 -run TestBrowser -v ./handler/status/
func TestBrowser(t *testing.T) {
	if os.Getenv("GUARD_BROWSER_TEST") == "" {
		t.Skip("set GUARD_BROWSER_TEST=1 to render the page in headless Chromium")
	}
	chromium := os.Getenv("GUARD_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(chromium); err != nil {
		t.Fatalf("GUARD_BROWSER_TEST is set but %s is missing (apt-get install -y --no-install-recommends chromium): %v", chromium, err)
	}
	outDir := os.Getenv("GUARD_SCREENSHOT_DIR")
	if outDir == "" {
		outDir = filepath.Join("testdata", "out")
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot, err := filepath.Abs(filepath.Join(outDir, "status.png"))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(shot)

	// render serves the page over store and runs Chromium on it.
	render := func(store *state.Memory, projects []string, extra ...string) []byte {
		t.Helper()
		srv := httptest.NewServer(New(Options{Store: store, Projects: projects, Now: func() time.Time { return fixtureNow }}))
		defer srv.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		args := append([]string{
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--hide-scrollbars",
			"--user-data-dir=" + t.TempDir(), "--window-size=1280,2450",
		}, extra...)
		cmd := exec.CommandContext(ctx, chromium, append(args, srv.URL+"/api/Status?format=html")...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
		}
		return stdout.Bytes()
	}

	dom := string(render(fixtureStore(t), allProjects, "--dump-dom"))
	for _, want := range []string{
		">Healthy</span>", ">Warning</span>", ">Critical</span>", ">Unknown</span>",
		"<td>EUROPE_WEST</td>", "<td>US_EAST_2</td>", "atlas-pe-eastus2-3c4d", "would-approve", "already-approved",
		"somebody-elses-endpoint", "200 days left", "paused: payments",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	// The hostile alert summary is text in the DOM, not an element.
	if strings.Contains(dom, "<script") || strings.Contains(dom, "<img") {
		t.Errorf("the hostile alert summary became markup")
	}
	if !strings.Contains(dom, `&lt;script&gt;alert("pwned")&lt;/script&gt;`) {
		t.Errorf("the hostile alert summary is not shown as text")
	}

	render(fixtures(t, false), []string{pHealthy, pWarning, pCritical}, "--screenshot="+shot)
	info, err := os.Stat(shot)
	if err != nil || info.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot saved to %s", shot)
}
