// Package world composes the simulators into one small world that behaves
// like MongoDB Atlas and Azure around a customer's Key Vault, on a compressed
// clock, and drives the real handler binary through the Azure Functions host
// contract:
//
//   - Atlas (atlassim) creates its EAR private endpoints and their Pending
//     connections on the vault; marks an endpoint PENDING_RECREATION when its
//     connection is rejected or removed and, after a delay, replaces it with a
//     new endpoint and a new Pending connection; turns an endpoint ACTIVE a
//     while after its connection was approved; and runs its validity check
//     every ValidityEvery (key disabled, expired, missing or access revoked →
//     valid=false and every EAR cluster paused; fixed → valid and resumed).
//   - Azure (armsim + the managed identity endpoint) publishes the Event Grid
//     events Azure would publish for what happens (ARM write/delete success on
//     the vault's connections and role assignments, with claims naming the
//     caller; Key Vault key and access policy events) and delivers them to the
//     handler as the Functions host does (POST /PrivateLinkEvents or
//     /KeyVaultEvents with the event as a JSON string), and fires the timer
//     (POST /Reconcile) on the compressed schedule.
//   - Alert receivers: a webhook (plain HTTP on loopback) and an Event Grid
//     topic (TLS, key auth) that record what the guard sends.
//
// The handler runs as a separate process (StartGuard), configured only through
// its environment. Everything that happens is written to a Timeline.
//
// World durations (RecreateAfter, ValidityEvery, …) are world time; Minute is
// how long one world minute lasts in real time. The guard itself runs on real
// time: its thresholds (key expiry, stuck endpoints) are real durations.
package world

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Options configure a World. Zero durations take the defaults noted.
type Options struct {
	// Projects is how many Atlas projects (each with its own vault) exist;
	// 0 means 1.
	Projects int
	// Regions are the Atlas regions of each project's EAR private endpoints;
	// empty means US_EAST_2 and EUROPE_WEST.
	Regions []string
	// Minute is the real duration of one world minute; 0 means 200ms.
	Minute time.Duration
	// InitiateFor is how long a new endpoint stays INITIATING (world time;
	// 0 means 1m).
	InitiateFor time.Duration
	// ActivateAfter is how long after its connection was approved an
	// endpoint turns ACTIVE (world time; 0 means 2m).
	ActivateAfter time.Duration
	// RecreateAfter is how long a PENDING_RECREATION endpoint waits before
	// Atlas replaces it (world time; 0 means 5m).
	RecreateAfter time.Duration
	// ValidityEvery is the period of Atlas's validity check (world time; 0
	// means 15m).
	ValidityEvery time.Duration
	// TimerEvery is the period of the Reconcile timer (world time; 0 means 1m).
	TimerEvery time.Duration
	// StorageConnectionString is the AzureWebJobsStorage of the guards
	// (Azurite); required to start a guard.
	StorageConnectionString string
	// Container is the guards' state container; empty means a fresh random
	// one, so worlds sharing one Azurite never see each other's state.
	Container string
	// TokenLifetime of managed identity tokens; 0 means one hour.
	TokenLifetime time.Duration
	// Timeline, when set, receives each timeline entry as it happens.
	Timeline func(Entry)
}

// Project is one Atlas project with its vault, key and clusters.
type Project struct {
	ID       string
	Vault    resource.ID
	KeyName  string
	Clusters []string // EAR clusters (encryptionAtRestProvider AZURE)
	Plain    string   // a cluster without EAR: Atlas never pauses it

	// Mutable, under World.mu.
	keyVersion    string
	keyEnabled    bool
	keyDeleted    bool
	keyExpires    *time.Time
	accessRevoked bool
	valid         bool
	pausedAt      time.Time // real time Atlas last paused the clusters
}

// endpointState is what the world remembers about an Atlas endpoint.
type endpointState struct {
	project    *Project
	created    time.Time // world time
	approvedAt time.Time // world time the world first saw its connection Approved
	recreateAt time.Time // world time Atlas replaces it (PENDING_RECREATION)
	hadConn    bool      // its connection has been created on the vault
}

// World is the simulated Atlas + Azure. Create it with New, stop it with Close.
type World struct {
	opts     Options
	scale    float64 // world time per real time
	start    time.Time
	dir      string
	caFile   string
	sims     *simtest.Sims
	atlas    *atlassim.Sim
	arm      *armsim.Server
	hookURL  string
	topicURL string
	topicKey string
	webhook  *notifytest.WebhookRecorder
	topic    *notifytest.TopicRecorder
	servers  []*http.Server
	client   *http.Client

	tenantID string
	projects []*Project

	mu          sync.Mutex
	endpoints   map[string]*endpointState // Atlas endpoint id → state
	changes     []armsim.Change
	timeline    []Entry
	events      bool
	timerOn     bool
	guards      []*Guard
	validChecks int

	queue  chan queued
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds and starts a world: simulators, alert receivers, the Atlas
// control plane loop, the event delivery queue and the timer (events and the
// timer are on). Private endpoints do not exist yet: see
// EnablePrivateNetworking.
func New(o Options) (*World, error) {
	if o.Projects <= 0 {
		o.Projects = 1
	}
	if len(o.Regions) == 0 {
		o.Regions = []string{"US_EAST_2", "EUROPE_WEST"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Minute, 200*time.Millisecond)
	def(&o.InitiateFor, time.Minute)
	def(&o.ActivateAfter, 2*time.Minute)
	def(&o.RecreateAfter, 5*time.Minute)
	def(&o.ValidityEvery, 15*time.Minute)
	def(&o.TimerEvery, time.Minute)
	if o.Container == "" {
		o.Container = "guard-" + randHex(8)
	}
	w := &World{
		opts:      o,
		scale:     float64(time.Minute) / float64(o.Minute),
		start:     time.Now(),
		endpoints: map[string]*endpointState{},
		events:    true,
		timerOn:   true,
		queue:     make(chan queued, 1024),
		tenantID:  guid(),
		topicKey:  randHex(16),
	}
	ok := false
	defer func() {
		if !ok {
			w.Close()
		}
	}()
	var err error
	if w.dir, err = os.MkdirTemp("", "world-*"); err != nil {
		return nil, fmt.Errorf("world: %w", err)
	}
	// Approvals settle at once: the guard's polling of provisioningState is
	// covered by package vault's tests, and on the compressed clock a
	// second of polling would be minutes of world time.
	if w.sims, err = simtest.Start(simtest.Options{ARM: armsim.Config{TokenLifetime: o.TokenLifetime, SettleReads: -1}}); err != nil {
		return nil, fmt.Errorf("world: %w", err)
	}
	w.atlas, w.arm = w.sims.Atlas, w.sims.ARM
	w.caFile = filepath.Join(w.dir, "ca.pem")
	if err := w.sims.CA.WriteCA(w.caFile); err != nil {
		return nil, fmt.Errorf("world: %w", err)
	}
	w.client = &http.Client{Transport: w.sims.CA.Transport(), Timeout: 2 * time.Minute}
	w.arm.OnChange(w.onChange)

	w.webhook = notifytest.NewWebhookRecorder()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("world: webhook: %w", err)
	}
	w.hookURL = "http://" + ln.Addr().String() + "/hook"
	w.serve(ln, w.recordWebhook(w.webhook))
	w.topic = notifytest.NewTopicRecorder(w.topicKey, "")
	tln, err := w.sims.CA.Listen()
	if err != nil {
		return nil, fmt.Errorf("world: topic: %w", err)
	}
	w.topicURL = "https://" + tln.Addr().String() + "/api/events"
	w.serve(tln, w.topic)

	for i := range o.Projects {
		if err := w.addProject(i); err != nil {
			return nil, fmt.Errorf("world: %w", err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Go(func() { w.atlasLoop(ctx) })
	w.wg.Go(func() { w.deliveryLoop(ctx) })
	w.wg.Go(func() { w.timerLoop(ctx) })
	ok = true
	w.Logf(SourceWorld, "world started: %d project(s), %d region(s), 1 world minute = %s", o.Projects, len(o.Regions), o.Minute)
	return w, nil
}

func (w *World) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	w.servers = append(w.servers, srv)
	go func() { _ = srv.Serve(ln) }()
}

// Close stops every guard still running, the loops and the simulators, and
// removes the world's temporary files.
func (w *World) Close() {
	w.mu.Lock()
	guards := append([]*Guard(nil), w.guards...)
	w.mu.Unlock()
	for _, g := range guards {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		g.Stop(ctx)
		cancel()
	}
	if w.cancel != nil {
		w.cancel()
		w.wg.Wait()
	}
	for _, s := range w.servers {
		s.Close()
	}
	if w.sims != nil {
		w.sims.Close()
	}
	if w.dir != "" {
		os.RemoveAll(w.dir)
	}
}

func (w *World) addProject(i int) error {
	p := &Project{
		ID:         randHex(12),
		Vault:      resource.ID{SubscriptionID: guid(), ResourceGroup: "rg-atlas-ear", Name: fmt.Sprintf("kv-atlas-ear-%d-%s", i+1, randHex(3))},
		KeyName:    "atlas-ear-key",
		keyEnabled: true,
		valid:      true,
	}
	exp := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	p.keyExpires = &exp
	p.Clusters = []string{"orders", "payments"}
	var err error
	p.keyVersion, err = w.sims.AddProject(simtest.Project{ID: p.ID, Vault: p.Vault, Tags: map[string]string{"purpose": "atlas-ear"},
		Key: p.KeyName, TenantID: w.tenantID, Clusters: p.Clusters, Regions: w.opts.Regions})
	if err != nil {
		return err
	}
	p.Plain = "analytics"
	w.atlas.AddCluster(p.ID, p.Plain, "NONE", w.opts.Regions[0])
	w.projects = append(w.projects, p)
	return nil
}

// Projects returns the world's projects.
func (w *World) Projects() []*Project { return w.projects }

// Project returns project i (0-based).
func (w *World) Project(i int) *Project { return w.projects[i] }

// ProjectIDs returns the ids of every project.
func (w *World) ProjectIDs() []string {
	out := make([]string, len(w.projects))
	for i, p := range w.projects {
		out[i] = p.ID
	}
	return out
}

// Atlas returns the Atlas simulator (faults, rate limits, stats).
func (w *World) Atlas() *atlassim.Sim { return w.atlas }

// ARM returns the ARM simulator (faults, Deny, identity outage, counts).
func (w *World) ARM() *armsim.Server { return w.arm }

// Webhook returns the alert webhook receiver.
func (w *World) Webhook() *notifytest.WebhookRecorder { return w.webhook }

// Topic returns the alert Event Grid topic receiver.
func (w *World) Topic() *notifytest.TopicRecorder { return w.topic }

// Container returns the guards' state container.
func (w *World) Container() string { return w.opts.Container }

// Now returns the world time: the real start time plus the compressed
// elapsed time.
func (w *World) Now() time.Time {
	return w.start.Add(time.Duration(float64(time.Since(w.start)) * w.scale))
}

// Real converts a world duration to real time.
func (w *World) Real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / w.scale)
}

// Elapsed returns the real time since the world started.
func (w *World) Elapsed() time.Duration { return time.Since(w.start) }

// Changes returns the writes made through the ARM API so far (approvals).
func (w *World) Changes() []armsim.Change {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]armsim.Change(nil), w.changes...)
}

// Approvals returns the ARM API writes that set a connection Approved.
func (w *World) Approvals() []armsim.Change {
	var out []armsim.Change
	for _, c := range w.Changes() {
		if c.After.Status == vault.StatusApproved {
			out = append(out, c)
		}
	}
	return out
}

// ValidityChecks returns how many validity checks Atlas ran.
func (w *World) ValidityChecks() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.validChecks
}

// Valid reports what Atlas's last validity check said about project p.
func (w *World) Valid(p *Project) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.valid
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
	for _, c := range w.atlas.Clusters(p.ID) {
		if c.Paused {
			out = append(out, c.Name)
		}
	}
	return out
}

// PausedAt returns when (real time) Atlas last shut down p's clusters; zero
// if never.
func (w *World) PausedAt(p *Project) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return p.pausedAt
}

// Notices returns the notices the webhook received for project p (all
// projects when p is nil) of kind, with action (any action when empty).
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
func (w *World) WaitNotice(ctx context.Context, p *Project, kind alert.Kind, action alert.Action, n int) ([]alert.Notice, error) {
	var got []alert.Notice
	err := w.WaitFor(ctx, fmt.Sprintf("%d %s %s notice(s) at the webhook", n, kind, action), func() bool {
		got = w.Notices(p, kind, action)
		return len(got) >= n
	})
	return got, err
}

// AtlasConnections returns the connection names of p's Atlas endpoints
// with the given statuses (every status when none is given).
func (w *World) AtlasConnections(p *Project, statuses ...string) []string {
	var out []string
	for _, e := range w.atlas.Endpoints(p.ID) {
		if len(statuses) == 0 || contains(statuses, e.Status) {
			out = append(out, e.PrivateEndpointConnectionName)
		}
	}
	return out
}

// ConnectionStatus returns the status of a connection on p's vault ("" when
// it does not exist).
func (w *World) ConnectionStatus(p *Project, name string) string {
	c, ok := w.arm.Connection(p.Vault, name)
	if !ok {
		return ""
	}
	return c.Status
}

// WaitFor polls cond every few milliseconds until it holds or ctx ends.
func WaitFor(ctx context.Context, what string, cond func() bool) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// WaitFor is WaitFor with the world's timeline noting a timeout.
func (w *World) WaitFor(ctx context.Context, what string, cond func() bool) error {
	err := WaitFor(ctx, what, cond)
	if err != nil {
		w.Logf(SourceWorld, "gave up %s", err)
	}
	return err
}

// ---- timeline -----------------------------------------------------------

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
	return fmt.Sprintf("%7.2fs  %-5s  %-7s  %s", e.Elapsed.Seconds(), worldClock(e.World), e.Source, e.Text)
}

func worldClock(d time.Duration) string {
	m := int(d / time.Minute)
	return fmt.Sprintf("+%dm", m)
}

// Logf adds an entry to the timeline.
func (w *World) Logf(source, format string, args ...any) {
	el := time.Since(w.start)
	e := Entry{Elapsed: el, World: time.Duration(float64(el) * w.scale), Source: source, Text: fmt.Sprintf(format, args...)}
	w.mu.Lock()
	w.timeline = append(w.timeline, e)
	w.mu.Unlock()
	if w.opts.Timeline != nil {
		w.opts.Timeline(e)
	}
}

// Timeline returns the entries so far.
func (w *World) Timeline() []Entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Entry(nil), w.timeline...)
}

// WriteTimeline writes the timeline, one entry per line.
func (w *World) WriteTimeline(out io.Writer) {
	for _, e := range w.Timeline() {
		fmt.Fprintln(out, e)
	}
}

// recordWebhook notes each notice the webhook receives in the timeline.
func (w *World) recordWebhook(rec *notifytest.WebhookRecorder) http.Handler {
	var mu sync.Mutex
	seen := 0
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rec.ServeHTTP(rw, r)
		mu.Lock()
		defer mu.Unlock()
		ns := rec.Notices()
		for _, n := range ns[seen:] {
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
		seen = len(ns)
	})
}

// ---- helpers ------------------------------------------------------------

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func guid() string {
	x := randHex(16)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Short abbreviates long connection names for the timeline:
// atlas-pe-useast2-0123456789abcdef01234567.3b4f… → atlas-pe-useast2-012345….3b4f
func Short(s string) string {
	if len(s) <= 32 {
		return s
	}
	return s[:20] + "…" + s[len(s)-6:]
}

var errNoGuard = errors.New("world: no guard is running")
