// Command sandbox runs the demo's simulated world (Atlas, ARM and managed
// identity over TLS, Azurite, a webhook receiver, Event Grid delivery and the
// Reconcile timer) with the real handler until Ctrl-C or SIGTERM, so that you
// can open the Status page, run `handler check` against it and change the
// world yourself (see usage). `make sandbox` builds and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

const usage = `usage:
  sandbox [-handler bin/handler-local] [-period 1m] [-dir .cache/sandbox]
      run the simulated world and the handler until Ctrl-C
  sandbox [-dir .cache/sandbox] <change>
      change the running world:
        reject [connection]   reject Atlas's connection (default: the first one)
        disable-key           disable the key Atlas uses (Azure sends no event: the timer finds it)
        add-region REGION     Atlas adds a private endpoint in REGION (e.g. AUSTRALIA_EAST)
        foreign               a stranger asks for a private endpoint connection to the vault
        restore               re-enable the key and delete the strangers' connections

exit status: 0 stopped cleanly or the change was made, 1 the change was refused,
2 the sandbox could not run or bad usage
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	bin := fs.String("handler", "bin/handler-local", "the handler built for this machine")
	period := fs.Duration("period", time.Minute, "timer period = one world minute (Atlas's delays scale with it)")
	dir := fs.String("dir", filepath.Join(".cache", "sandbox"), "where the sandbox writes its env file and control address")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		return change(*dir, fs.Args(), stdout, stderr)
	}
	if *period < 100*time.Millisecond {
		fmt.Fprintln(stderr, "sandbox: -period must be at least 100ms")
		return 2
	}
	if err := serve(ctx, *bin, *period, *dir, stdout); err != nil {
		fmt.Fprintln(stderr, "sandbox:", err)
		return 2
	}
	return 0
}

// serve runs the sandbox until ctx ends.
func serve(ctx context.Context, bin string, period time.Duration, dir string, out io.Writer) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("handler binary %s not found (make build-local)", bin)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fmt.Fprintln(out, "sandbox: starting Azurite, the simulators and the handler…")
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	az, err := azurite.StartProcess(startCtx)
	if err != nil {
		return err
	}
	defer az.Close()
	w, err := world.New(world.Options{
		Minute: period, StorageConnectionString: az.ConnectionString,
		Timeline: func(e world.Entry) { fmt.Fprintln(out, "  "+e.String()) },
	})
	if err != nil {
		return err
	}
	defer w.Close()
	g, err := w.StartGuard(startCtx, world.GuardOptions{Binary: bin})
	if err != nil {
		return err
	}
	p := w.Project(0)
	w.EnablePrivateNetworking(p)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer simtls.Serve(ln, controls(w, p))()

	envFile, ctlFile := filepath.Join(dir, "sandbox.env"), filepath.Join(dir, "control")
	defer os.Remove(envFile)
	defer os.Remove(ctlFile)
	if err := writeEnv(envFile, w.Env(0, "")); err != nil {
		return err
	}
	if err := os.WriteFile(ctlFile, []byte("http://"+ln.Addr().String()+"\n"), 0o600); err != nil {
		return err
	}
	status := g.URL() + "/api/Status"
	fmt.Fprintf(out, `
sandbox: running — Ctrl-C stops everything. Timer every %s (= one world minute).
  Status page    %s            (a browser gets HTML; JSON: %s?format=json)
  handler check  (. %s && bin/handler-local check)
  webhook        each notice the guard sends prints below as one "webhook" line
  processes      handler pid %d, Azurite pid %d (both stopped on exit)
  change the world from another terminal:
    bin/sandbox reject [connection]   bin/sandbox disable-key   bin/sandbox add-region AUSTRALIA_EAST
    bin/sandbox foreign               bin/sandbox restore
`, period, status, status, envFile, g.PID(), az.PID())
	select {
	case <-ctx.Done():
	case <-g.Done():
		return fmt.Errorf("the handler exited with status %d: %s", g.ExitCode(), g.Stderr())
	}
	fmt.Fprintln(out, "sandbox: stopping…")
	return nil
}

// writeEnv writes env (without the host's port) as a file a POSIX shell can
// source: what `handler check` needs to reach the sandbox.
func writeEnv(path string, env map[string]string) error {
	delete(env, "FUNCTIONS_CUSTOMHANDLER_PORT")
	var b strings.Builder
	b.WriteString("# atlas-akv-guard sandbox: source this, then run `bin/handler-local check`\n")
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(env[k], "'", `'\''`))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// controls serves POST /<change>?arg=… for the change subcommands.
func controls(w *world.World, p *world.Project) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(rw, "POST only", http.StatusMethodNotAllowed)
			return
		}
		msg, err := apply(w, p, strings.TrimPrefix(r.URL.Path, "/"), r.URL.Query().Get("arg"))
		if err != nil {
			http.Error(rw, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintln(rw, msg)
	})
}

// apply makes one change to the world.
func apply(w *world.World, p *world.Project, what, arg string) (string, error) {
	switch what {
	case "reject":
		if arg == "" {
			for _, n := range w.AtlasConnections(p) {
				if w.ConnectionStatus(p, n) == vault.StatusApproved {
					arg = n
					break
				}
			}
		}
		if arg == "" {
			return "", errors.New("no approved Atlas connection to reject; name one")
		}
		if w.ConnectionStatus(p, arg) == "" {
			return "", fmt.Errorf("no connection %q on %s", arg, p.Vault.Name)
		}
		return "rejected " + arg, w.RejectConnection(p, arg, world.Ada)
	case "disable-key":
		return "disabled the key; the guard alerts at its next timer run", w.SetKeyEnabled(p, false)
	case "add-region":
		if arg == "" {
			return "", errors.New("add-region needs a region, e.g. AUSTRALIA_EAST")
		}
		return "Atlas asks for " + w.AddRegion(p, strings.ToUpper(arg)), nil
	case "foreign":
		name := "mallory-pe." + simtest.RandHex(8)
		return "a stranger asks for " + name, w.AddForeignConnection(p, name)
	case "restore":
		var errs []error
		if !w.KeyEnabled(p) {
			errs = append(errs, w.SetKeyEnabled(p, true))
		}
		atlasConns := w.AtlasConnections(p)
		for _, c := range w.ARM().Connections(p.Vault) {
			if !slices.Contains(atlasConns, c.Name) {
				errs = append(errs, w.RemoveConnection(p, c.Name, world.Ada))
			}
		}
		return "restored", errors.Join(errs...)
	}
	return "", fmt.Errorf("unknown change %q", what)
}

// change asks the running sandbox to make one change.
func change(dir string, args []string, stdout, stderr io.Writer) int {
	known := map[string]int{"reject": 1, "disable-key": 0, "add-region": 1, "foreign": 0, "restore": 0}
	maxArgs, ok := known[args[0]]
	if !ok || len(args)-1 > maxArgs {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctl, err := os.ReadFile(filepath.Join(dir, "control"))
	if err != nil {
		fmt.Fprintf(stderr, "sandbox: no sandbox is running (%v); start one with `make sandbox`\n", err)
		return 2
	}
	u := strings.TrimSpace(string(ctl)) + "/" + args[0]
	if len(args) > 1 {
		u += "?arg=" + url.QueryEscape(args[1])
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Post(u, "text/plain", nil)
	if err != nil {
		fmt.Fprintf(stderr, "sandbox: the sandbox does not answer (%v)\n", err)
		return 2
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprint(stderr, "sandbox: ", string(body))
		return 1
	}
	fmt.Fprint(stdout, string(body))
	return 0
}
