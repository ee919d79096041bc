// Package app is the composition root: it reads the configuration once,
// builds the clients, the reconciler and the server, and runs the command the
// arguments name. main only calls Run.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	checkcmd "github.com/atlas-akv-guard/atlas-akv-guard/handler/check"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/config"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/graph"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/server"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/status"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Exit codes (check also answers 1: problems found).
const (
	ExitOK    = 0
	ExitError = 2 // bad usage, bad configuration, or the command could not run
)

// Run runs the command in args (without the program name) and returns the
// exit code. The server stops cleanly when ctx is cancelled (SIGTERM).
func Run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer, version string) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	} else if env("FUNCTIONS_CUSTOMHANDLER_PORT") == "" {
		fmt.Fprint(stderr, usage)
		return ExitError
	}
	code, err := ExitOK, error(nil)
	switch cmd {
	case "serve":
		code, err = serve(ctx, args, env, stdout)
	case "check":
		code, err = check(ctx, args, env, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "atlas-akv-guard", version)
	case "help", "-h", "--help":
		err = flag.ErrHelp
	default:
		err = fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return ExitOK
	case err != nil:
		fmt.Fprintln(stderr, strings.TrimSuffix(err.Error(), "\n"))
		return ExitError
	}
	return code
}

const usage = `usage: handler <command> [flags]

commands:
  serve     the Azure Functions custom handler (the default when FUNCTIONS_CUSTOMHANDLER_PORT is set)
            -addr host:port   listen here instead of 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT
  check     one observe-only reconcile of every project against the real Atlas and Azure, as a report
            -json             machine-readable output
            -settings FILE    read settings from a local.settings.json (the environment wins)
  version   print the version
  help      print this text (so do -h and --help, after a command too)

exit status:
  0  healthy (check), stopped cleanly (serve), or done
  1  check: problems found (a warning or critical alert)
  2  could not run: bad usage, bad configuration, or no project could be checked
`

// parse parses a command's flags; it returns flag.ErrHelp for -h and --help.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%s: %w\n%s", fs.Name(), err, usage)
	}
	return err
}

func serve(ctx context.Context, args []string, env func(string) string, stdout io.Writer) (int, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "", "listen address (default 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT)")
	if err := parse(fs, args); err != nil {
		return ExitError, err
	}
	cfg, err := config.Load(env)
	switch {
	case err != nil:
		return ExitError, err
	case *addr == "" && cfg.Port == 0:
		return ExitError, errors.New("config: FUNCTIONS_CUSTOMHANDLER_PORT: missing (the Functions host sets it; or pass -addr)")
	case !cfg.StorageConfigured():
		return ExitError, errors.New("config: AzureWebJobsStorage: missing (a connection string, UseDevelopmentStorage=true, or AzureWebJobsStorage__blobServiceUri)")
	case *addr == "":
		*addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port))
	}
	log := logging.New(stdout, cfg.LogLevel)
	// Listen first: the host polls GET / until it answers.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return ExitError, err
	}
	store := &lazyStore{opts: cfg.Storage}
	r, _, err := wire(cfg, env, store, log)
	if err != nil {
		ln.Close()
		return ExitError, err
	}
	log.Info("listening", "addr", ln.Addr().String(), "mode", string(cfg.Mode), "projects", len(cfg.ProjectIDs),
		"storage", cfg.Storage.String())
	h := server.New(server.Options{
		Dispatcher: r, Status: status.New(status.Options{Store: store, Projects: cfg.ProjectIDs, Log: log}), Quarantine: store, Logger: log,
	})
	if err := server.Serve(ctx, ln, h, 20*time.Second, log); err != nil {
		log.Error("server stopped", "error", err.Error())
		return ExitError, nil
	}
	log.Info("stopped")
	return ExitOK, nil
}

// wire builds the Atlas and Azure clients, the sinks and the reconciler from
// cfg, and returns the reconciler and the Azure credential. It makes no
// network call.
func wire(cfg config.Config, env func(string) string, store state.Store, log *slog.Logger) (*reconcile.Reconciler, azcore.TokenCredential, error) {
	ac, err := atlas.New(atlas.Options{BaseURL: cfg.Atlas.BaseURL, ClientID: cfg.Atlas.ClientID, ClientSecret: cfg.Atlas.ClientSecret.Reveal(),
		PublicKey: cfg.Atlas.PublicKey, PrivateKey: cfg.Atlas.PrivateKey.Reveal(), Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("atlas client: %w", err)
	}
	// Few, quick retries for tokens: when the identity endpoint is down the
	// guard says so (guard blind) within seconds instead of half a minute.
	cred, err := vault.Credential(env, &azcore.ClientOptions{Retry: policy.RetryOptions{
		MaxRetries: 2, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 2 * time.Second, TryTimeout: 10 * time.Second,
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("azure credential: %w", err)
	}
	sinks, err := Sinks(cfg, cred)
	if err != nil {
		return nil, nil, err
	}
	r, err := reconcile.New(reconcile.Options{
		Projects: cfg.ProjectIDs, Atlas: ac, Azure: azureClients(cred, cfg.ARMEndpoint, log), Store: store,
		Log: notify.NewLog(log), Sinks: sinks, Policy: cfg.Policy, Concurrency: cfg.Concurrency, Timeout: cfg.ReconcileTimeout, Logger: log,
		AppSecrets: appSecrets(cfg.AppSecret, graph.New(graph.Options{Credential: cred, HTTP: &http.Client{Timeout: 30 * time.Second}})),
	})
	return r, cred, err
}

// appSecrets answers when the Atlas application's secret expires: the
// setting's date for that client id, else Microsoft Graph when enabled, else
// the setting's date for every project; nil when nothing is configured.
func appSecrets(a config.AppSecret, g *graph.Reader) reconcile.AppSecrets {
	if len(a.Expiry) == 0 && !a.FromGraph {
		return nil
	}
	if !a.FromGraph {
		g = nil
	}
	return func(ctx context.Context, clientID string) (*plan.AppSecret, error) {
		from := "setting GUARD_AZURE_APP_SECRET_EXPIRY"
		t, ok := a.Expiry[clientID]
		if !ok && g != nil {
			var err error
			if t, err = g.SecretExpiry(ctx, clientID); err != nil {
				return nil, err
			}
			ok, from = !t.IsZero(), plan.AppSecretFromGraph
		} else if !ok {
			t, ok = a.Expiry[""]
		}
		if !ok {
			return nil, nil
		}
		return &plan.AppSecret{ClientID: clientID, Expires: t, From: from}, nil
	}
}

// Sinks builds the optional external alert sinks.
func Sinks(cfg config.Config, cred azcore.TokenCredential) ([]reconcile.Sink, error) {
	var sinks []reconcile.Sink
	if cfg.WebhookURL != "" {
		wh, err := notify.NewWebhook(notify.WebhookOptions{URL: cfg.WebhookURL.Reveal(), Format: cfg.WebhookFormat})
		if err != nil {
			return nil, fmt.Errorf("config: GUARD_ALERT_WEBHOOK_URL: %w", err)
		}
		sinks = append(sinks, notify.Retry(wh, notify.RetryOptions{}))
	}
	if cfg.TopicEndpoint != "" {
		eg, err := notify.NewEventGrid(notify.EventGridOptions{Endpoint: cfg.TopicEndpoint, Key: cfg.TopicKey.Reveal(), Credential: cred})
		if err != nil {
			return nil, fmt.Errorf("config: GUARD_ALERT_TOPIC_ENDPOINT: %w", err)
		}
		sinks = append(sinks, notify.Retry(eg, notify.RetryOptions{}))
	}
	return sinks, nil
}

// azureClients returns a factory of ARM clients, one per Azure environment,
// built on first use.
func azureClients(cred azcore.TokenCredential, armEndpoint string, log *slog.Logger) reconcile.AzureFor {
	var mu sync.Mutex
	clients := map[string]*vault.Client{}
	return func(environment string) (reconcile.Azure, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := clients[environment]; ok {
			return c, nil
		}
		c, err := armClient(cred, environment, armEndpoint, log)
		if err != nil {
			return nil, err
		}
		clients[environment] = c
		return c, nil
	}
}

func armClient(cred azcore.TokenCredential, environment, armEndpoint string, log *slog.Logger) (*vault.Client, error) {
	cloudCfg, err := vault.CloudFor(environment, armEndpoint)
	if err != nil {
		return nil, err
	}
	return vault.New(vault.Options{Credential: cred, Cloud: cloudCfg, Logger: log})
}

// lazyStore opens the blob store on first use, so that the handler is ready
// at once and survives storage that is down at start.
type lazyStore struct {
	opts state.BlobOptions
	mu   sync.Mutex
	blob *state.Blob
}

func (l *lazyStore) open(ctx context.Context) (*state.Blob, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.blob == nil {
		l.blob, err = state.NewBlob(ctx, l.opts)
	}
	return l.blob, err
}

func (l *lazyStore) Get(ctx context.Context, key string) ([]byte, string, error) {
	b, err := l.open(ctx)
	if err != nil {
		return nil, "", err
	}
	return b.Get(ctx, key)
}

func (l *lazyStore) Put(ctx context.Context, key string, data []byte, etag string, meta map[string]string) (string, error) {
	b, err := l.open(ctx)
	if err != nil {
		return "", err
	}
	return b.Put(ctx, key, data, etag, meta)
}

func (l *lazyStore) List(ctx context.Context, prefix string) ([]state.Item, error) {
	b, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	return b.List(ctx, prefix)
}

func check(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "machine-readable output")
	settings := fs.String("settings", "", "a local.settings.json to read settings from (the environment wins)")
	if err := parse(fs, args); err != nil {
		return ExitError, err
	}
	var err error
	if *settings != "" {
		if env, err = config.WithLocalSettings(*settings, env); err != nil {
			return ExitError, err
		}
	}
	cfg, err := config.Load(env)
	if err != nil {
		return ExitError, err
	}
	// A check never writes to Azure and keeps no state.
	cfg.Mode = plan.ModeObserve
	cfg.WebhookURL, cfg.TopicEndpoint, cfg.TopicKey = "", "", ""
	log := logging.New(stderr, slog.LevelError)
	store := state.NewMemory()
	r, cred, err := wire(cfg, env, store, log)
	if err != nil {
		return ExitError, err
	}
	// The prerequisites are read with the same identity (the operator's
	// login when run by hand), in the public cloud or GUARD_ARM_ENDPOINT.
	prereqs, err := armClient(cred, "AZURE", cfg.ARMEndpoint, log)
	if err != nil {
		return ExitError, err
	}
	return checkcmd.Run(ctx, checkcmd.Options{
		Reconciler: r, Store: store, Projects: cfg.ProjectIDs, JSON: *asJSON, Out: stdout, Prereqs: prereqs,
	}), nil
}
