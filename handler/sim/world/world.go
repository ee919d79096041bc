// Package world composes the simulators into a small world that behaves like
// MongoDB Atlas and Azure around a customer's Key Vault, on a compressed
// clock, and drives the real handler binary through the Azure Functions host
// contract:
//
//   - Atlas creates its EAR private endpoints with Pending connections on the
//     vault; marks an endpoint PENDING_RECREATION when its connection is
//     rejected or removed and later replaces it (new endpoint, new Pending
//     connection); turns it ACTIVE a while after approval; and every 15 world
//     minutes checks the key (disabled, expired or access revoked → invalid,
//     EAR clusters paused; fixed → valid, resumed).
//   - Azure publishes the Event Grid events it would (ARM write/delete
//     success with the caller's claims; Key Vault key events), delivers them
//     as the Functions host does (POST /PrivateLinkEvents or /KeyVaultEvents,
//     the event as a JSON string) and fires the timer (POST /Reconcile) every
//     world minute.
//   - Alert receivers: a webhook (HTTP) and an Event Grid topic (TLS, key).
//
// Guards are separate processes (StartGuard) configured only through their
// environment; everything that happens goes to a timeline. World durations
// are compressed (Options.Minute is one world minute in real time); the guard
// itself runs on real time.
package world

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
)

// World time constants: Atlas's delays and the timer period.
const (
	initiateFor   = time.Minute      // a new endpoint stays INITIATING
	activateAfter = 2 * time.Minute  // approved → ACTIVE
	validityEvery = 15 * time.Minute // Atlas's validity check
	timerEvery    = time.Minute      // the Reconcile timer
)

// Options configure a World. Zero values take the defaults noted.
type Options struct {
	Projects int      // Atlas projects, each with its own vault; 0 means 1
	Regions  []string // each project's EAR endpoint regions; empty means US_EAST_2 and EUROPE_WEST
	// Minute is the real duration of one world minute; 0 means 200ms.
	Minute time.Duration
	// RecreateAfter is how long (world time) a PENDING_RECREATION endpoint
	// waits before Atlas replaces it; 0 means 5m.
	RecreateAfter time.Duration
	// StorageConnectionString is the guards' AzureWebJobsStorage (Azurite);
	// each world uses its own fresh state container in it.
	StorageConnectionString string
	// Timeline, when set, receives each timeline entry as it happens.
	Timeline func(Entry)
}

// Project is one Atlas project with its vault, key and clusters.
type Project struct {
	ID       string
	Vault    resource.ID
	KeyName  string
	Clusters []string // EAR clusters: Atlas pauses them when the key is invalid
	Plain    string   // a cluster without EAR

	// Under World.mu.
	keyVersion string
	keyEnabled bool
	keyExpires time.Time
	revoked    bool
	valid      bool
	pausedAt   time.Time
}

// World is the simulated Atlas + Azure. Create it with New, stop it with Close.
type World struct {
	opts      Options
	scale     float64 // world time per real time
	start     time.Time
	dir       string
	container string
	sims      *simtest.Sims
	webhook   *notifytest.WebhookRecorder
	topic     *notifytest.TopicRecorder
	hookURL   string
	topicURL  string
	stops     []func()
	projects  []*Project

	mu          sync.Mutex
	endpoints   map[string]*endpoint // Atlas endpoint id → what Atlas remembers
	approvals   []armsim.Change
	timeline    []Entry
	events      bool
	timerOn     bool
	guards      []*Guard
	validChecks int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New starts a world: simulators, alert receivers, Atlas's control plane and
// the timer; events and the timer are on. Private endpoints do not exist yet:
// see EnablePrivateNetworking.
func New(o Options) (w *World, err error) {
	o.Projects = max(o.Projects, 1)
	if len(o.Regions) == 0 {
		o.Regions = []string{"US_EAST_2", "EUROPE_WEST"}
	}
	o.Minute = cmp.Or(o.Minute, 200*time.Millisecond)
	o.RecreateAfter = cmp.Or(o.RecreateAfter, 5*time.Minute)
	w = &World{opts: o, scale: float64(time.Minute) / float64(o.Minute), start: time.Now(), container: "guard-" + simtest.RandHex(8),
		endpoints: map[string]*endpoint{}, events: true, timerOn: true, topic: notifytest.NewTopicRecorder(simtest.RandHex(16), "")}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			w.Close()
			err = fmt.Errorf("world: %w", err)
		}
	}()
	if w.dir, err = os.MkdirTemp("", "world-*"); err != nil {
		return nil, err
	}
	// Approvals settle at once: polling provisioningState is covered by
	// package vault, and a second of polling is minutes of world time here.
	if w.sims, err = simtest.Start(simtest.Options{ARM: armsim.Config{SettleReads: -1}}); err != nil {
		return nil, err
	}
	if err = w.sims.CA.WriteCA(filepath.Join(w.dir, "ca.pem")); err != nil {
		return nil, err
	}
	w.sims.ARM.OnChange(w.onChange)
	w.webhook = &notifytest.WebhookRecorder{OnNotice: w.noteNotice}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w.hookURL = "http://" + ln.Addr().String() + "/hook"
	w.stops = append(w.stops, simtls.Serve(ln, w.webhook))
	if ln, err = w.sims.CA.Listen(); err != nil {
		return nil, err
	}
	w.topicURL = "https://" + ln.Addr().String() + "/api/events"
	w.stops = append(w.stops, simtls.Serve(ln, w.topic))
	for i := range o.Projects {
		if err = w.addProject(i); err != nil {
			return nil, err
		}
	}
	w.wg.Go(w.atlasLoop)
	w.wg.Go(w.timerLoop)
	w.Logf(SourceWorld, "world started: %d project(s), %d region(s), 1 world minute = %s", o.Projects, len(o.Regions), o.Minute)
	return w, nil
}

// Close stops every guard still running, the loops, the deliveries and the
// simulators, and removes the world's temporary files.
func (w *World) Close() {
	w.mu.Lock()
	guards := slices.Clone(w.guards)
	w.mu.Unlock()
	for _, g := range guards {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		g.Stop(ctx)
		cancel()
	}
	w.mu.Lock()
	w.cancel() // under mu: Emit adds no delivery after this
	w.mu.Unlock()
	w.wg.Wait()
	for _, stop := range w.stops {
		stop()
	}
	if w.sims != nil {
		w.sims.Close()
	}
	os.RemoveAll(w.dir)
}

func (w *World) addProject(i int) error {
	p := &Project{ID: simtest.RandHex(12), KeyName: "atlas-ear-key", Clusters: []string{"orders", "payments"}, Plain: "analytics",
		Vault:      resource.ID{SubscriptionID: guid(), ResourceGroup: "rg-atlas-ear", Name: fmt.Sprintf("kv-atlas-ear-%d-%s", i+1, simtest.RandHex(3))},
		keyEnabled: true, valid: true, keyExpires: time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)}
	var err error
	p.keyVersion, err = w.sims.AddProject(simtest.Project{ID: p.ID, Vault: p.Vault, Tags: map[string]string{"purpose": "atlas-ear"},
		Key: p.KeyName, Clusters: p.Clusters, Regions: w.opts.Regions})
	w.sims.Atlas.AddCluster(p.ID, p.Plain, "NONE", w.opts.Regions[0])
	w.projects = append(w.projects, p)
	return err
}

// Projects returns the world's projects.
func (w *World) Projects() []*Project { return w.projects }

// Project returns project i (0-based).
func (w *World) Project(i int) *Project { return w.projects[i] }

// Atlas returns the Atlas simulator (faults, regions, stats).
func (w *World) Atlas() *atlassim.Sim { return w.sims.Atlas }

// ARM returns the ARM simulator (faults, identity outage, counts).
func (w *World) ARM() *armsim.Server { return w.sims.ARM }

// Webhook returns the alert webhook receiver.
func (w *World) Webhook() *notifytest.WebhookRecorder { return w.webhook }

// Topic returns the alert Event Grid topic receiver.
func (w *World) Topic() *notifytest.TopicRecorder { return w.topic }

// Container returns the guards' state container.
func (w *World) Container() string { return w.container }

// Real converts a world duration to real time.
func (w *World) Real(d time.Duration) time.Duration { return time.Duration(float64(d) / w.scale) }

// Elapsed returns the real time since the world started.
func (w *World) Elapsed() time.Duration { return time.Since(w.start) }

// now returns the world time.
func (w *World) now() time.Time { return w.start.Add(time.Duration(float64(w.Elapsed()) * w.scale)) }

// Approvals returns the ARM API writes that set a connection Approved.
func (w *World) Approvals() []armsim.Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]armsim.Change(nil), w.approvals...)
}

// KeyEnabled reports whether the key version Atlas uses is enabled.
func (w *World) KeyEnabled(p *Project) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.keyEnabled
}

// Paused returns the names of p's paused clusters.
func (w *World) Paused(p *Project) []string {
	var out []string
	for _, c := range w.sims.Atlas.Clusters(p.ID) {
		if c.Paused {
			out = append(out, c.Name)
		}
	}
	return out
}

// PausedAt returns when (real time) Atlas last paused p's clusters; zero if
// never.
func (w *World) PausedAt(p *Project) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.pausedAt
}

// Notices returns the notices the webhook received for p (every project when
// nil) of kind, with action (any when empty).
func (w *World) Notices(p *Project, kind alert.Kind, action alert.Action) []alert.Notice {
	var out []alert.Notice
	for _, n := range w.webhook.Notices() {
		if (p == nil || n.Alert.ProjectID == p.ID) && n.Alert.Kind == kind && (action == "" || n.Action == action) {
			out = append(out, n)
		}
	}
	return out
}

// WaitNotice waits until the webhook received at least n notices of kind
// with action for p and returns them.
func (w *World) WaitNotice(ctx context.Context, p *Project, kind alert.Kind, action alert.Action, n int) (got []alert.Notice, err error) {
	err = w.WaitFor(ctx, fmt.Sprintf("%d %s %s notice(s) at the webhook", n, kind, action), func() bool {
		got = w.Notices(p, kind, action)
		return len(got) >= n
	})
	return got, err
}

// AtlasConnections returns the connection names of p's Atlas endpoints with
// one of statuses (any status when none is given).
func (w *World) AtlasConnections(p *Project, statuses ...string) []string {
	var out []string
	for _, e := range w.sims.Atlas.Endpoints(p.ID) {
		if len(statuses) == 0 || slices.Contains(statuses, e.Status) {
			out = append(out, e.PrivateEndpointConnectionName)
		}
	}
	return out
}

// ConnectionStatus returns the status of connection name on p's vault, ""
// when it does not exist.
func (w *World) ConnectionStatus(p *Project, name string) string {
	c, _ := w.sims.ARM.Connection(p.Vault, name)
	return c.Status
}

// WaitFor polls cond every 10ms until it holds or ctx ends.
func WaitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// WaitFor is WaitFor noting a timeout in the timeline.
func (w *World) WaitFor(ctx context.Context, what string, cond func() bool) error {
	err := WaitFor(ctx, what, cond)
	if err != nil {
		w.Logf(SourceWorld, "gave up %s", err)
	}
	return err
}

// Timeline sources.
const (
	SourceWorld   = "world"   // the script's actions and the world itself
	SourceAtlas   = "atlas"   // Atlas's control plane
	SourceAzure   = "azure"   // ARM writes, Event Grid deliveries
	SourceGuard   = "guard"   // the handler's log records
	SourceWebhook = "webhook" // notices received by the webhook
)

// Entry is one line of the timeline.
type Entry struct {
	Elapsed time.Duration // real time since the world started
	World   time.Duration // world time since the world started
	Source  string
	Text    string
}

// String formats an entry as one timeline line.
func (e Entry) String() string {
	return fmt.Sprintf("%7.2fs  %-5s  %-7s  %s", e.Elapsed.Seconds(), fmt.Sprintf("+%dm", e.World/time.Minute), e.Source, e.Text)
}

// Logf adds an entry to the timeline.
func (w *World) Logf(source, format string, args ...any) {
	el := w.Elapsed()
	e := Entry{Elapsed: el, World: time.Duration(float64(el) * w.scale), Source: source, Text: fmt.Sprintf(format, args...)}
	w.mu.Lock()
	w.timeline = append(w.timeline, e)
	w.mu.Unlock()
	if w.opts.Timeline != nil {
		w.opts.Timeline(e)
	}
}

// WriteTimeline writes the timeline so far, one entry per line.
func (w *World) WriteTimeline(out io.Writer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.timeline {
		fmt.Fprintln(out, e)
	}
}

// noteNotice puts each notice the webhook receives in the timeline.
func (w *World) noteNotice(n alert.Notice) {
	a := n.Alert
	line := fmt.Sprintf("%s %s %s", strings.ToUpper(string(a.Severity)), a.Kind, n.Action)
	if a.Subject != "" {
		line += " " + Short(a.Subject)
	}
	if a.Actor != "" {
		line += " (by " + a.Actor + ")"
	}
	w.Logf(SourceWebhook, "%s", line)
}

func guid() string {
	x := simtest.RandHex(16)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Short abbreviates long connection names for the timeline:
// atlas-pe-useast2-0123456789abcdef01234567.3b4f… → atlas-pe-useast2-012345….3b4f
func Short(s string) string {
	if len(s) <= 32 {
		return s
	}
	return s[:20] + "…" + s[len(s)-6:]
}
