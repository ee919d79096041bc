package reconcile_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

const (
	project = "65a1b2c3d4e5f60718293a4b"
	keyName = "atlas-ear"
	peConn  = "atlas-pe-eastus2-65a1b2c3d4e5f60718293a4b.1c2d3e4f-aaaa-bbbb-cccc-0123456789ab"
)

var kv = resource.ID{SubscriptionID: "8f3c2a1e-4b7d-4e9a-9c1f-2d6b5a7e0c34", ResourceGroup: "rg-atlas-ear", Name: "kv-atlas-ear"}

// blobConn is the Azurite instance shared by the package's tests (each test
// uses its own container).
var blobConn string

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	in, err := azurite.StartProcess(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "reconcile tests need Azurite (run `make test`, which installs it):", err)
		os.Exit(1)
	}
	blobConn = in.ConnectionString
	code := m.Run()
	in.Close()
	os.Exit(code)
}

// rig is one Atlas project with EAR on one vault, the Atlas and ARM
// simulators over TLS (package simtest), real Azurite storage, a webhook
// receiver and a log buffer — and the real clients wired as the app wires
// them.
type rig struct {
	*simtest.Sims
	t       testing.TB
	atlas   *atlassim.Sim
	arm     *armsim.Server
	store   state.Store
	hook    *notifytest.WebhookRecorder
	hookURL string
	azure   reconcile.AzureFor
	ac      *atlas.Client
	keyVer  string
	endpt   string

	mu  sync.Mutex
	log bytes.Buffer
}

func newRig(t testing.TB) *rig {
	t.Helper()
	s := simtest.New(t, simtest.Options{})
	r := &rig{Sims: s, t: t, atlas: s.Atlas, arm: s.ARM, hook: notifytest.NewWebhookRecorder()}
	r.keyVer, r.endpt = r.addProject(project, kv, peConn)
	vc, err := s.VaultClient(policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond})
	must(t, err)
	r.azure = func(string) (reconcile.Azure, error) { return vc, nil }
	if r.ac, err = s.AtlasClient(atlas.Options{MaxRetryWait: 50 * time.Millisecond, MaxAttempts: 2}); err != nil {
		t.Fatal(err)
	}
	r.store, err = state.NewBlob(t.Context(), state.BlobOptions{ConnectionString: blobConn, Container: "t" + simtest.RandHex(8)})
	must(t, err)
	srv := httptest.NewServer(r.hook)
	t.Cleanup(srv.Close)
	r.hookURL = srv.URL + "/hook"
	return r
}

// addProject adds an Atlas project with EAR on its own vault v, one
// cluster, and one endpoint waiting for its Pending connection conn. It
// returns the key version and the endpoint id.
func (r *rig) addProject(id string, v resource.ID, conn string) (keyVer, endpoint string) {
	r.t.Helper()
	keyVer, err := r.AddProject(simtest.Project{ID: id, Vault: v, Tags: map[string]string{"env": "prod"}, Key: keyName, Clusters: []string{"orders"}})
	if err == nil {
		endpoint, err = r.AddEndpoint(id, v, "US_EAST_2", conn, atlas.StatusPendingAcceptance, vault.StatusPending)
	}
	must(r.t, err)
	return keyVer, endpoint
}

type options struct {
	mode     plan.Mode
	store    state.Store
	instance string
	projects []string        // default: the rig's project
	atlas    reconcile.Atlas // default: the rig's Atlas client
	timeout  time.Duration
	now      func() time.Time // default time.Now
}

// guard builds a Reconciler over the rig, as the app wires it.
func (r *rig) guard(o options) *reconcile.Reconciler {
	r.t.Helper()
	if o.projects == nil {
		o.projects = []string{project}
	}
	wh, err := notify.NewWebhook(notify.WebhookOptions{URL: r.hookURL, Format: notify.FormatGeneric})
	must(r.t, err)
	g, err := reconcile.New(reconcile.Options{
		Projects: o.projects, Atlas: cmp.Or(o.atlas, reconcile.Atlas(r.ac)), Azure: r.azure, Store: cmp.Or(o.store, r.store), Timeout: o.timeout,
		Log: notify.NewLog(logging.New(lockedWriter{r}, slog.LevelInfo)), Sinks: []reconcile.Sink{wh},
		Policy: plan.Policy{Mode: cmp.Or(o.mode, plan.ModeEnforce), RenotifyAfter: time.Hour}, Instance: o.instance, Now: o.now,
		Logger: logging.New(lockedWriter{r}, slog.LevelInfo),
	})
	must(r.t, err)
	return g
}

type lockedWriter struct{ r *rig }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.log.Write(p)
}

func (r *rig) logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// project reconciles the rig's project with g and fails the test on error.
func (r *rig) project(g *reconcile.Reconciler) reconcile.Report {
	r.t.Helper()
	rep, err := g.Project(context.Background(), project, nil)
	must(r.t, err)
	return rep
}

// puts counts the approval PUTs ARM received.
func (r *rig) puts() int { return r.arm.Count(armsim.RouteConnectionPut) }

// noticeCount counts webhook notices by kind and action.
func (r *rig) noticeCount(kind alert.Kind, action alert.Action) int {
	n := 0
	for _, x := range r.hook.Notices() {
		if x.Alert.Kind == kind && x.Action == action {
			n++
		}
	}
	return n
}

// doc reads the project document of p (the rig's project when "").
func (r *rig) doc(p string) reconcile.Doc {
	r.t.Helper()
	var d reconcile.Doc
	data, _, err := r.store.Get(context.Background(), reconcile.ProjectKey(cmp.Or(p, project)))
	if err == nil {
		err = json.Unmarshal(data, &d)
	}
	if err != nil {
		r.t.Fatalf("document of %s: %v", cmp.Or(p, project), err)
	}
	return d
}
