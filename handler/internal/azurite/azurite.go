// Package azurite runs a real Azurite blob service (npm package azurite,
// binary azurite-blob) for tests and the demo: on a free loopback port, with
// a throw-away workspace, stopped with its whole process group.
//
// The binary is $AZURITE_BIN, else .cache/azurite/node_modules/.bin/azurite-blob
// at the module root (where `make test` installs it), else azurite-blob on
// $PATH.
package azurite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The well-known Azurite development account (what UseDevelopmentStorage=true
// means).
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Instance is one Azurite blob service.
type Instance struct {
	// ConnectionString is a full connection string for the dev account at
	// http://127.0.0.1:PORT/devstoreaccount1.
	ConnectionString string
	Dir              string // the workspace; Restart keeps it, so data survives

	bin  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts Azurite for the test and stops it when the test ends. A
// missing binary fails the test: `make test` installs it.
func Start(t testing.TB) *Instance {
	t.Helper()
	in, err := start(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	return in
}

// StartProcess starts Azurite outside a test (a TestMain, the demo); Close
// stops it and removes its workspace.
func StartProcess(ctx context.Context) (*Instance, error) {
	dir, err := os.MkdirTemp("", "azurite-*")
	if err != nil {
		return nil, fmt.Errorf("azurite: %w", err)
	}
	in, err := start(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
	}
	return in, err
}

func start(ctx context.Context, dir string) (*Instance, error) {
	in := &Instance{Dir: dir}
	var err error
	if in.bin, err = binary(); err != nil {
		return nil, err
	}
	// A free port: another process may take it before Azurite binds it, so
	// try a few.
	for range 5 {
		ln, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			return nil, fmt.Errorf("azurite: %w", lerr)
		}
		in.port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if err = in.launch(ctx); err == nil {
			in.ConnectionString = fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=http://127.0.0.1:%d/%[1]s;",
				AccountName, AccountKey, in.port)
			return in, nil
		}
	}
	return nil, err
}

// binary finds azurite-blob or says how to install it.
func binary() (string, error) {
	if p := os.Getenv("AZURITE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("azurite: AZURITE_BIN: %w; run `make test`, which installs Azurite", err)
		}
		return p, nil
	}
	_, src, _, _ := runtime.Caller(0) // <root>/handler/internal/azurite/azurite.go
	if p := filepath.Join(src, "../../../../.cache/azurite/node_modules/.bin/azurite-blob"); fileExists(p) {
		return p, nil
	}
	if p, err := exec.LookPath("azurite-blob"); err == nil {
		return p, nil
	}
	return "", errors.New("azurite: azurite-blob not found (AZURITE_BIN unset, not in .cache/azurite, not on PATH); run `make test`, which installs it")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// launch starts the process on in.port and waits (a minute at most) until
// it answers HTTP.
func (in *Instance) launch(ctx context.Context) error {
	log, err := os.Create(filepath.Join(in.Dir, "azurite.log"))
	if err != nil {
		return fmt.Errorf("azurite: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(in.bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(in.port), "--location", in.Dir,
		"--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry")
	// AZURITE_ACCOUNTS would replace the well-known account.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "AZURITE_ACCOUNTS=") })
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = in.Dir, log, log, procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("azurite: %w", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	in.mu.Lock()
	in.cmd, in.done = cmd, done
	in.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/%s?comp=list", in.port, AccountName)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-done:
			err = errors.New("exited")
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(50 * time.Millisecond):
			continue
		}
		in.Stop()
		out, _ := os.ReadFile(log.Name())
		return fmt.Errorf("azurite: not answering on port %d: %w; output: %s", in.port, err, out[max(0, len(out)-2000):])
	}
}

// Stop stops the service (its whole process group) and waits for it to
// exit; Dir is kept. Stopping a stopped instance does nothing.
func (in *Instance) Stop() {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.cmd = nil
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	signal(cmd.Process.Pid, false)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		signal(cmd.Process.Pid, true)
		<-done
	}
}

// Restart starts the service again on the same port with the same data, so
// that clients built from ConnectionString work again.
func (in *Instance) Restart() error {
	in.Stop()
	var err error
	for range 20 { // the old socket may linger for a moment
		if err = in.launch(context.Background()); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// PID returns the process (and process group) id, or 0 when stopped.
func (in *Instance) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// Close stops the service and removes its workspace.
func (in *Instance) Close() error {
	in.Stop()
	return os.RemoveAll(in.Dir)
}
