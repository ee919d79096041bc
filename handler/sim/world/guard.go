package world

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// GuardOptions configure a handler process.
type GuardOptions struct {
	Binary string            // the built handler
	Name   string            // its label in the timeline and results; empty means "guard"
	Mode   string            // GUARD_MODE; empty means enforce
	Env    map[string]string // adds or overrides environment variables ("" removes one)
	Quiet  bool              // keeps its records out of the timeline
}

// Guard is one running handler process.
type Guard struct {
	w                  *World
	name, url, errFile string
	cmd                *exec.Cmd
	done               chan struct{} // closed when the process has exited
	mu                 sync.Mutex
	records            []Record
}

// Record is one JSON log record of the handler.
type Record map[string]any

// Msg returns the record's message.
func (r Record) Msg() string { return r.Str("msg") }

// Str returns attribute key as a string ("" when absent).
func (r Record) Str(key string) string {
	if v, ok := r[key]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

// Env returns the environment of a guard process: exactly the settings the
// handler reads, pointing at this world (its TLS endpoints trusted through
// SSL_CERT_FILE, the managed identity endpoint, Azurite), nothing inherited.
func (w *World) Env(port int, mode string) map[string]string {
	var ids []string
	for _, p := range w.projects {
		ids = append(ids, p.ID)
	}
	return map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": strconv.Itoa(port),
		"ATLAS_PROJECT_IDS":            strings.Join(ids, ","),
		"ATLAS_BASE_URL":               w.sims.AtlasURL,
		"ATLAS_CLIENT_ID":              w.sims.AtlasClientID,
		"ATLAS_CLIENT_SECRET":          w.sims.AtlasSecret,
		"GUARD_ARM_ENDPOINT":           w.sims.ARMURL,
		"IDENTITY_ENDPOINT":            w.sims.IdentityURL,
		"IDENTITY_HEADER":              w.sims.ARM.IdentityHeader(),
		"SSL_CERT_FILE":                filepath.Join(w.dir, "ca.pem"),
		"AzureWebJobsStorage":          w.opts.StorageConnectionString,
		"GUARD_STATE_CONTAINER":        w.container,
		"GUARD_MODE":                   cmp.Or(mode, "enforce"),
		"GUARD_SCHEDULE":               "0 */1 * * * *",
		"GUARD_STUCK_AFTER":            "30m",
		"GUARD_RECONCILE_TIMEOUT":      "1m",
		"GUARD_ALERT_WEBHOOK_URL":      w.hookURL,
		"GUARD_ALERT_TOPIC_ENDPOINT":   w.topicURL,
		"GUARD_ALERT_TOPIC_KEY":        w.topic.Key,
		"GUARD_LOG_LEVEL":              "info",
		"TMPDIR":                       os.TempDir(),
	}
}

// StartGuard starts the handler binary as a separate process configured only
// through its environment, waits until GET / answers (as the host does) and
// attaches it to event and timer delivery.
func (w *World) StartGuard(ctx context.Context, o GuardOptions) (*Guard, error) {
	if w.opts.StorageConnectionString == "" {
		return nil, errors.New("world: no storage connection string (Options.StorageConnectionString)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the guard
	if err != nil {
		return nil, fmt.Errorf("world: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	env := w.Env(port, o.Mode)
	for k, v := range o.Env {
		env[k] = v
	}
	g := &Guard{w: w, name: cmp.Or(o.Name, "guard"), url: "http://" + ln.Addr().String(), cmd: exec.Command(o.Binary, "serve"),
		done: make(chan struct{})}
	for k, v := range env {
		if v != "" {
			g.cmd.Env = append(g.cmd.Env, k+"="+v)
		}
	}
	stderr, err := os.CreateTemp(w.dir, "stderr-*")
	if err != nil {
		return nil, fmt.Errorf("world: %w", err)
	}
	defer stderr.Close()
	g.errFile, g.cmd.Stderr = stderr.Name(), stderr
	stdout, err := g.cmd.StdoutPipe()
	if err == nil {
		err = g.cmd.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("world: start %s: %w", o.Binary, err)
	}
	go func() {
		g.read(stdout, o.Quiet)
		g.cmd.Wait()
		close(g.done)
	}()
	if err := g.waitReady(ctx); err != nil {
		g.kill()
		return nil, fmt.Errorf("world: %s did not become ready: %w; stderr: %s", g.name, err, g.Stderr())
	}
	w.with(func() { w.guards = append(w.guards, g) })
	w.Logf(SourceWorld, "%s started (pid %d, mode %s)", g.name, g.PID(), env["GUARD_MODE"])
	return g, nil
}

func (g *Guard) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := WaitFor(ctx, "GET / to answer", func() bool {
		resp, err := (&http.Client{Timeout: time.Second}).Get(g.url + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil || g.exited()
	})
	if g.exited() {
		return fmt.Errorf("exited with status %d", g.ExitCode())
	}
	return err
}

// read keeps the handler's JSON log records and puts the notable ones in
// the timeline.
func (g *Guard) read(r io.Reader, quiet bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	prefix := ""
	if g.name != "guard" {
		prefix = "[" + g.name + "] "
	}
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			rec = Record{"msg": "unparsed output", "line": sc.Text()}
		}
		g.mu.Lock()
		g.records = append(g.records, rec)
		g.mu.Unlock()
		if line := describe(rec); line != "" && !quiet {
			g.w.Logf(SourceGuard, "%s%s", prefix, line)
		}
	}
}

// describe turns the records worth a timeline line into one. Approvals and
// notices are not among them: the ARM write and the webhook line show each.
func describe(r Record) string {
	switch msg := r.Msg(); {
	case msg == "approval failed":
		return "approval of " + Short(r.Str("connection")) + " failed: " + r.Str("error")
	case strings.HasPrefix(msg, "invocation failed"):
		return r.Str("function") + " failed: " + truncate(r.Str("error"))
	case msg == "listening":
		return "listening on " + r.Str("addr") + " (mode " + r.Str("mode") + ")"
	case msg == "stopped":
		return "stopped cleanly"
	case r.Str("level") == "ERROR" && !strings.HasPrefix(msg, "alert "):
		return "error: " + msg + " " + truncate(r.Str("error"))
	}
	return ""
}

func truncate(s string) string {
	if len(s) <= 160 {
		return s
	}
	return s[:160] + "…"
}

// Name returns the guard's label.
func (g *Guard) Name() string { return g.name }

// URL returns the base URL the guard listens on.
func (g *Guard) URL() string { return g.url }

// PID returns the process id.
func (g *Guard) PID() int { return g.cmd.Process.Pid }

// Records returns the log records so far.
func (g *Guard) Records() []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.records)
}

// Find returns the records with message msg.
func (g *Guard) Find(msg string) []Record {
	return slices.DeleteFunc(g.Records(), func(r Record) bool { return r.Msg() != msg })
}

// Stderr returns what the process wrote to stderr.
func (g *Guard) Stderr() string {
	b, _ := os.ReadFile(g.errFile)
	return string(b)
}

// Done is closed when the process has exited.
func (g *Guard) Done() <-chan struct{} { return g.done }

// ExitCode returns the exit status, or -1 while running (or when killed by
// a signal).
func (g *Guard) ExitCode() int {
	if !g.exited() {
		return -1
	}
	return g.cmd.ProcessState.ExitCode()
}

func (g *Guard) exited() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process without waiting; Stop detaches and waits.
func (g *Guard) Signal(sig os.Signal) error { return g.cmd.Process.Signal(sig) }

// Stop detaches the guard from delivery, sends SIGTERM (as the platform does
// when it recycles an instance) and waits for the process to exit; it kills
// it when ctx ends first. It returns the exit status.
func (g *Guard) Stop(ctx context.Context) (int, error) {
	g.detach()
	_ = g.Signal(syscall.SIGTERM)
	code, err := g.Wait(ctx)
	if err != nil {
		g.kill()
		return -1, fmt.Errorf("world: %s did not stop after SIGTERM: %w", g.name, err)
	}
	g.w.Logf(SourceWorld, "%s exited with status %d", g.name, code)
	return code, nil
}

// Wait waits for the process to exit (after Signal) and detaches it.
func (g *Guard) Wait(ctx context.Context) (int, error) {
	select {
	case <-g.done:
		g.detach()
		return g.ExitCode(), nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

func (g *Guard) detach() {
	g.w.with(func() {
		g.w.guards = slices.DeleteFunc(slices.Clone(g.w.guards), func(x *Guard) bool { return x == g })
	})
}

func (g *Guard) kill() {
	g.detach()
	_ = g.cmd.Process.Kill()
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
	}
}
