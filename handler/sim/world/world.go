// Package world composes the simulators into a world that behaves like
// MongoDB Atlas and Azure around a customer's Key Vault, on a compressed clock
// (Options.Minute is one world minute in real time), and drives the real
// handler binary (StartGuard: a process configured only through its
// environment) through the Azure Functions host contract. Atlas creates its
// endpoints with Pending connections, recreates those whose connection was
// rejected or removed, turns approved ones ACTIVE, and every 15 world minutes
// checks the key (invalid → EAR clusters paused). Azure publishes the Event
// Grid events it would (ARM writes with the caller's claims, Key Vault key
// events), delivers them as the host does (the event as a JSON string) and
// fires the timer every world minute. A webhook and an Event Grid topic
// receive the alerts. Everything that happens goes to a timeline.
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
	Projects      int           // Atlas projects, each with its own vault; 0 means 1
	Regions       []string      // each project's EAR endpoint regions; empty means US_EAST_2 and EUROPE_WEST
	Minute        time.Duration // real duration of one world minute; 0 means 200ms
	RecreateAfter time.Duration // world time before Atlas replaces a PENDING_RECREATION endpoint; 0 means 5m
	// StorageConnectionString is the guards' AzureWebJobsStorage (Azurite);
	// each world uses a fresh state container in it.
	StorageConnectionString string
	Timeline                func(Entry) // when set, receives each timeline entry as it happens
}

// Project is one Atlas project with its vault, key and clusters.
type Project struct {
	ID       string
	Vault    resource.ID
	KeyName  string
	Clusters []string // EAR clusters: Atlas pauses them when the key is invalid
	Plain    string   // a cluster without EAR

	// Under World.mu.
	keyVersion                 string
	keyEnabled, revoked, valid bool
	keyExpires, pausedAt       time.Time
}

// World is the simulated Atlas + Azure. Create it with New, stop it with Close.
type World struct {
	opts                              Options
	scale                             float64 // world time per real time
	start                             time.Time
	dir, container, hookURL, topicURL string
	sims                              *simtest.Sims
	webhook                           *notifytest.WebhookRecorder
	topic                             *notifytest.TopicRecorder
	stops                             []func()
	projects                          []*Project
	ctx                               context.Context
	cancel                            context.CancelFunc
	wg                                sync.WaitGroup

	mu              sync.Mutex
	endpoints       map[string]*endpoint // Atlas endpoint id → what Atlas remembers
	approvals       []armsim.Change
	timeline        []Entry
	events, timerOn bool
	guards          []*Guard
	validChecks     int
}

// New starts a world: simulators, alert receivers, Atlas's control plane and
// the timer; events and the timer are on. Private endpoints do not exist yet:
// see EnablePrivateNetworking.
func New(o Options) (*World, error) {
	o.Projects = max(o.Projects, 1)
	if len(o.Regions) == 0 {
		o.Regions = []string{"US_EAST_2", "EUROPE_WEST"}
	}
	o.Minute = cmp.Or(o.Minute, 200*time.Millisecond)
	o.RecreateAfter = cmp.Or(o.RecreateAfter, 5*time.Minute)
	w := &World{opts: o, scale: float64(time.Minute) / float64(o.Minute), start: time.Now(), container: "guard-" + simtest.RandHex(8),
		endpoints: map[string]*endpoint{}, events: true, timerOn: true, topic: notifytest.NewTopicRecorder(simtest.RandHex(16), "")}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.webhook = &notifytest.WebhookRecorder{OnNotice: w.noteNotice}
	if err := w.setup(); err != nil {
		w.Close()
		return nil, fmt.Errorf("world: %w", err)
	}
	w.wg.Go(func() { w.every(o.Minute/10, w.atlasStep) })
	w.wg.Go(func() { w.every(w.Real(timerEvery), w.tick) })
	w.Logf(SourceWorld, "world started: %d project(s), %d region(s), 1 world minute = %s", o.Projects, len(o.Regions), o.Minute)
	return w, nil
}

func (w *World) setup() (err error) {
	if w.dir, err = os.MkdirTemp("", "world-*"); err != nil {
		return err
	}
	// Approvals settle at once: polling provisioningState is covered by
	// package vault, and a second of polling is minutes of world time here.
	if w.sims, err = simtest.Start(simtest.Options{ARM: armsim.Config{SettleReads: -1}}); err != nil {
		return err
	}
	w.sims.ARM.OnChange(w.onChange)
	for i := range w.opts.Projects {
		if err := w.addProject(i); err != nil {
			return err
		}
	}
	hook, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w.stops = append(w.stops, simtls.Serve(hook, w.webhook))
	topic, err := w.sims.CA.Listen()
	if err != nil {
		return err
	}
	w.stops = append(w.stops, simtls.Serve(topic, w.topic))
	w.hookURL, w.topicURL = "http://"+hook.Addr().String()+"/hook", "https://"+topic.Addr().String()+"/api/events"
	return w.sims.CA.WriteCA(filepath.Join(w.dir, "ca.pem"))
}

// Close stops every guard still running, the loops, the deliveries and the
// simulators, and removes the world's temporary files.
func (w *World) Close() {
	for _, g := range locked(w, func() []*Guard { return slices.Clone(w.guards) }) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		g.Stop(ctx)
		cancel()
	}
	w.with(w.cancel) // under mu: Emit adds no delivery after this
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

// with runs f with w.mu held.
func (w *World) with(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f()
}

// locked returns f() with w.mu held.
func locked[T any](w *World, f func() T) (v T) {
	w.with(func() { v = f() })
	return v
}

// Approvals returns the ARM API writes that set a connection Approved.
func (w *World) Approvals() []armsim.Change {
	return locked(w, func() []armsim.Change { return slices.Clone(w.approvals) })
}

// KeyEnabled reports whether the key version Atlas uses is enabled.
func (w *World) KeyEnabled(p *Project) bool { return locked(w, func() bool { return p.keyEnabled }) }

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
	return locked(w, func() time.Time { return p.pausedAt })
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
	w.with(func() { w.timeline = append(w.timeline, e) })
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
