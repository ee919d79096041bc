// Package azurite starts a real Azurite blob service (the npm package
// azurite, binary azurite-blob) for tests: on a free loopback port, with a
// throw-away workspace, stopped with its whole process group when the test
// ends.
//
// The binary is looked up in this order: $AZURITE_BIN, then
// <module root>/.cache/azurite/node_modules/.bin/azurite-blob (where
// `make test` installs it), then azurite-blob on $PATH.
package azurite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The well-known Azurite development account (the key is the one Azurite
// itself uses: EMULATOR_ACCOUNT_KEY in its source, also what
// UseDevelopmentStorage=true expands to).
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// EnvBin names the environment variable that points at azurite-blob.
const EnvBin = "AZURITE_BIN"

// startTimeout bounds how long Azurite may take to listen and answer.
const startTimeout = 60 * time.Second

// Instance is one running (or stopped) Azurite blob service.
type Instance struct {
	// BlobURL is the blob service URL of the dev account,
	// http://127.0.0.1:PORT/devstoreaccount1.
	BlobURL string
	// ConnectionString is a full connection string for the dev account.
	ConnectionString string
	// Port is the blob service port; Restart keeps it.
	Port int
	// Dir is the workspace (--location); Restart keeps it, so data survives.
	Dir string

	bin       string
	removeDir bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts Azurite for the test and stops it in t.Cleanup. A missing
// binary fails the test (it does not skip): `make test` installs it.
func Start(t testing.TB) *Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	dir := t.TempDir()
	in, err := start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	return in
}

// StartProcess starts Azurite outside a test (for a TestMain or the demo).
// The caller must call Close, which stops it and removes its workspace.
func StartProcess(ctx context.Context) (*Instance, error) {
	dir, err := os.MkdirTemp("", "azurite-*")
	if err != nil {
		return nil, fmt.Errorf("azurite: workspace: %w", err)
	}
	in, err := start(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	in.removeDir = true
	return in, nil
}

func start(ctx context.Context, dir string) (*Instance, error) {
	bin, err := FindBinary()
	if err != nil {
		return nil, err
	}
	in := &Instance{Dir: dir, bin: bin}
	if err := in.launch(ctx, 0); err != nil {
		return nil, err
	}
	return in, nil
}

// FindBinary returns the path of azurite-blob or an error that says how to
// install it.
func FindBinary() (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("azurite: %s=%s does not exist; run `make test`, which installs Azurite", EnvBin, p)
		}
		return p, nil
	}
	var tried []string
	if root, ok := moduleRoot(); ok {
		p := filepath.Join(root, ".cache", "azurite", "node_modules", ".bin", "azurite-blob")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("azurite-blob"); err == nil {
		return p, nil
	}
	tried = append(tried, "azurite-blob on PATH")
	return "", fmt.Errorf("azurite: azurite-blob not found (%s unset; tried %s); run `make test`, which installs it "+
		"(npm install --no-audit --no-fund --prefix .cache/azurite azurite@3.37.0 at the module root)",
		EnvBin, strings.Join(tried, ", "))
}

// moduleRoot walks up from the working directory to the nearest go.mod.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

var listenRE = regexp.MustCompile(`successfully listens on https?://[^\s:]+:(\d+)`)

// launch starts the process on port (0 = any free port) and waits until it
// answers HTTP.
func (in *Instance) launch(ctx context.Context, port int) error {
	cmd := exec.Command(in.bin,
		"--blobHost", "127.0.0.1",
		"--blobPort", strconv.Itoa(port),
		"--location", in.Dir,
		"--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry")
	cmd.Dir = in.Dir
	// AZURITE_ACCOUNTS would replace the well-known account and key.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "AZURITE_ACCOUNTS=") })
	cmd.SysProcAttr = procAttr()
	tl := &tail{}
	portc := make(chan int, 1)
	lw := &lineWriter{fn: func(line string) {
		tl.add(line)
		if m := listenRE.FindStringSubmatch(line); m != nil {
			p, _ := strconv.Atoi(m[1])
			select {
			case portc <- p:
			default:
			}
		}
	}}
	cmd.Stdout, cmd.Stderr = lw, lw
	cmd.WaitDelay = 2 * time.Second // don't hang on output held open by a stray child
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("azurite: start %s: %w", in.bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	in.mu.Lock()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()

	fail := func(err error) error {
		in.Stop()
		return fmt.Errorf("azurite: %w; output: %s", err, tl.String())
	}
	var got int
	select {
	case got = <-portc:
	case <-done:
		return fail(errors.New("exited before listening"))
	case <-ctx.Done():
		return fail(fmt.Errorf("not listening: %w", ctx.Err()))
	}
	in.Port = got
	in.BlobURL = fmt.Sprintf("http://127.0.0.1:%d/%s", got, AccountName)
	in.ConnectionString = fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;",
		AccountName, AccountKey, in.BlobURL)
	if err := waitReady(ctx, in.BlobURL, done); err != nil {
		return fail(err)
	}
	return nil
}

// waitReady polls the service until it answers any HTTP response.
func waitReady(ctx context.Context, blobURL string, done <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, blobURL+"?comp=list", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-done:
			return errors.New("exited while starting")
		case <-ctx.Done():
			return fmt.Errorf("not answering: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop stops the service and its process group and waits for it to exit.
// Stopping a stopped instance does nothing. Data in Dir is kept (Restart
// brings it back) until the test's temporary directory is removed or, for
// an instance from StartProcess, until Close.
func (in *Instance) Stop() {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.cmd = nil
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	terminate(cmd)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		kill(cmd)
		<-done
	}
}

// Restart starts the service again on the same port with the same data, so
// clients built from BlobURL or ConnectionString work again. It stops the
// service first if it is running.
func (in *Instance) Restart() error {
	in.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var err error
	// The old socket may linger for a moment; retry the bind briefly.
	for range 20 {
		if err = in.launch(ctx, in.Port); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Running reports whether the process is up.
func (in *Instance) Running() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return false
	}
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

// PID returns the process id (also the process group id) of the running
// service, or 0.
func (in *Instance) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil || in.cmd.Process == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// Close stops the service and, for an instance from StartProcess, removes
// its workspace.
func (in *Instance) Close() error {
	in.Stop()
	if in.removeDir {
		return os.RemoveAll(in.Dir)
	}
	return nil
}

// lineWriter calls fn for each complete line written to it. exec copies
// the process output into it from one goroutine.
type lineWriter struct {
	buf []byte
	fn  func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.fn(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // no newline in sight: don't grow without bound
		w.fn(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// tail keeps the last lines of the process output for error messages.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > 20 {
		t.lines = t.lines[len(t.lines)-20:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "(none)"
	}
	return strings.Join(t.lines, " | ")
}
