package world

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// GuardOptions configure a handler process.
type GuardOptions struct {
	// Binary is the path of the built handler.
	Binary string
	// Name labels the process in the timeline and results; empty means
	// "guard".
	Name string
	// Mode is GUARD_MODE; empty means enforce.
	Mode string
	// Env adds or overrides environment variables ("" removes one).
	Env map[string]string
	// Quiet keeps the guard's records out of the timeline.
	Quiet bool
}

// Guard is one running handler process.
type Guard struct {
	w    *World
	name string
	url  string
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	records []Record
	stderr  strings.Builder
	exit    int
}

// Record is one JSON log record of the handler.
type Record map[string]any

// Msg returns the record's message.
func (r Record) Msg() string { return r.Str("msg") }

// Str returns attribute key as a string ("" when absent).
func (r Record) Str(key string) string {
	switch v := r[key].(type) {
	case string:
		return v
	case nil:
		return ""
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// Env returns the environment a guard process gets: exactly the settings
// the handler reads, pointing at this world (TLS endpoints trusted through
// SSL_CERT_FILE, the managed identity endpoint, Azurite), nothing inherited.
func (w *World) Env(port int, mode string) map[string]string {
	if mode == "" {
		mode = "enforce"
	}
	return map[string]string{
		"FUNCTIONS_CUSTOMHANDLER_PORT": strconv.Itoa(port),
		"ATLAS_PROJECT_IDS":            strings.Join(w.ProjectIDs(), ","),
		"ATLAS_BASE_URL":               w.sims.AtlasURL,
		"ATLAS_CLIENT_ID":              w.sims.AtlasClientID,
		"ATLAS_CLIENT_SECRET":          w.sims.AtlasSecret,
		"GUARD_ARM_ENDPOINT":           w.sims.ARMURL,
		"IDENTITY_ENDPOINT":            w.sims.IdentityURL,
		"IDENTITY_HEADER":              w.arm.IdentityHeader(),
		"SSL_CERT_FILE":                w.caFile,
		"AzureWebJobsStorage":          w.opts.StorageConnectionString,
		"GUARD_STATE_CONTAINER":        w.opts.Container,
		"GUARD_MODE":                   mode,
		"GUARD_SCHEDULE":               "0 */1 * * * *",
		"GUARD_STUCK_AFTER":            "30m",
		"GUARD_RECONCILE_TIMEOUT":      "1m",
		"GUARD_ALERT_WEBHOOK_URL":      w.hookURL,
		"GUARD_ALERT_TOPIC_ENDPOINT":   w.topicURL,
		"GUARD_ALERT_TOPIC_KEY":        w.topicKey,
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
	if o.Name == "" {
		o.Name = "guard"
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	env := w.Env(port, o.Mode)
	for k, v := range o.Env {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cmd := exec.Command(o.Binary, "serve")
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	g := &Guard{w: w, name: o.Name, url: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, done: make(chan struct{}), exit: -1}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &lockedWriter{mu: &g.mu, b: &g.stderr}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("world: start %s: %w", o.Binary, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		g.read(stdout, o.Quiet)
	}()
	go func() {
		<-read
		err := cmd.Wait()
		g.mu.Lock()
		g.exit = cmd.ProcessState.ExitCode()
		g.mu.Unlock()
		if err != nil && g.exit < 0 {
			g.mu.Lock()
			fmt.Fprintf(&g.stderr, "\nwait: %v", err)
			g.mu.Unlock()
		}
		close(g.done)
	}()
	if err := g.waitReady(ctx); err != nil {
		g.kill()
		return nil, fmt.Errorf("world: %s did not become ready: %w; stderr: %s", o.Name, err, g.Stderr())
	}
	w.mu.Lock()
	w.guards = append(w.guards, g)
	w.mu.Unlock()
	w.Logf(SourceWorld, "%s started (pid %d, mode %s)", o.Name, cmd.Process.Pid, env["GUARD_MODE"])
	return g, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("world: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (g *Guard) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-g.done:
			return fmt.Errorf("exited with status %d", g.ExitCode())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// read parses the handler's JSON log lines.
func (g *Guard) read(r io.Reader, quiet bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			rec = Record{"msg": "unparsed output", "line": sc.Text()}
		}
		g.mu.Lock()
		g.records = append(g.records, rec)
		g.mu.Unlock()
		if !quiet {
			if line := describe(rec); line != "" {
				g.w.Logf(SourceGuard, "%s%s", g.prefix(), line)
			}
		}
	}
}

func (g *Guard) prefix() string {
	if g.name == "guard" {
		return ""
	}
	return "[" + g.name + "] "
}

// describe turns the records worth a timeline line into one. Approvals and
// notices are not among them: the ARM write and the webhook line show each
// once.
func describe(r Record) string {
	switch msg := r.Msg(); {
	case strings.HasPrefix(msg, "alert "):
		return ""
	case msg == "approval failed":
		return "approval of " + Short(r.Str("connection")) + " failed: " + r.Str("error")
	case msg == "invocation failed; the platform will retry", msg == "invocation failed":
		return r.Str("function") + " failed: " + truncate(r.Str("error"), 160)
	case msg == "listening":
		return "listening on " + r.Str("addr") + " (mode " + r.Str("mode") + ")"
	case msg == "stopped":
		return "stopped cleanly"
	case msg == "reconciled" && r.Str("approved") == "0" && r.Str("notices") == "0":
		return ""
	case r.Str("level") == "ERROR":
		return "error: " + msg + " " + truncate(r.Str("error"), 160)
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
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
	return append([]Record(nil), g.records...)
}

// Find returns the records whose message is msg and whose attributes
// include every key/value pair in kv (key, value, key, value, …).
func (g *Guard) Find(msg string, kv ...string) []Record {
	var out []Record
	for _, r := range g.Records() {
		if r.Msg() != msg {
			continue
		}
		ok := true
		for i := 0; i+1 < len(kv); i += 2 {
			if r.Str(kv[i]) != kv[i+1] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// Stderr returns what the process wrote to stderr.
func (g *Guard) Stderr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stderr.String()
}

// Done is closed when the process has exited.
func (g *Guard) Done() <-chan struct{} { return g.done }

// ExitCode returns the exit status, or -1 while running (or when killed by
// a signal).
func (g *Guard) ExitCode() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.exit
}

// Signal sends sig to the process without waiting; Stop detaches and waits.
func (g *Guard) Signal(sig os.Signal) error { return g.cmd.Process.Signal(sig) }

// Stop detaches the guard from delivery, sends SIGTERM (as the platform does
// when it recycles an instance) and waits for the process to exit; it kills
// it when ctx ends first. It returns the exit status.
func (g *Guard) Stop(ctx context.Context) (int, error) {
	g.detach()
	select {
	case <-g.done:
		return g.ExitCode(), nil
	default:
	}
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return -1, err
	}
	select {
	case <-g.done:
		code := g.ExitCode()
		g.w.Logf(SourceWorld, "%s exited with status %d", g.name, code)
		return code, nil
	case <-ctx.Done():
		g.kill()
		return -1, fmt.Errorf("world: %s did not stop after SIGTERM: %w", g.name, ctx.Err())
	}
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
	g.w.mu.Lock()
	defer g.w.mu.Unlock()
	for i, x := range g.w.guards {
		if x == g {
			g.w.guards = append(g.w.guards[:i], g.w.guards[i+1:]...)
			return
		}
	}
}

func (g *Guard) kill() {
	g.detach()
	_ = g.cmd.Process.Kill()
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}
