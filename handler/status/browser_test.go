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
)

// TestBrowser renders the Status page in Debian's headless Chromium: it
// checks what a person would see (the badges' text, the table rows) in the
// DOM Chromium built, and writes a screenshot for a person to look at.
//
// It runs only with GUARD_BROWSER_TEST=1 (it needs /usr/bin/chromium, or
// GUARD_CHROMIUM). The screenshot goes to $GUARD_SCREENSHOT_DIR, default
// testdata/out/ (git-ignored):
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
		t.Fatalf("GUARD_BROWSER_TEST is set but %s is missing (apt-get install -y chromium): %v", chromium, err)
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
	os.Remove(strings.TrimSuffix(shot, ".png") + "-full.png")

	h := New(Options{Store: fixtureStore(t), Projects: allProjects, Now: func() time.Time { return fixtureNow }})
	srv := httptest.NewServer(h) // 127.0.0.1, a free port
	t.Cleanup(srv.Close)
	url := srv.URL + "/api/Status?format=html"

	run := func(size string, extra ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		args := append([]string{
			"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--hide-scrollbars",
			"--user-data-dir=" + t.TempDir(), "--window-size=" + size,
		}, extra...)
		cmd := exec.CommandContext(ctx, chromium, append(args, url)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
		}
		return stdout.Bytes()
	}

	dom := string(run("1280,1400", "--dump-dom"))
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

	// The first screen (what a person sees on opening the page), then every
	// card at once.
	full := strings.TrimSuffix(shot, ".png") + "-full.png"
	run("1280,1400", "--screenshot="+shot)
	run("1280,3400", "--screenshot="+full)
	for _, f := range []string{shot, full} {
		info, err := os.Stat(f)
		if err != nil || info.Size() < 10_000 {
			t.Fatalf("screenshot %s: %v (size %d)", f, err, sizeOf(info))
		}
		t.Logf("screenshot: %s", f)
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}
