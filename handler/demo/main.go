// Command demo plays atlas-akv-guard's story against the simulated world
// (package world), no cloud account needed: Azurite, the Atlas and ARM
// simulators, managed identity and alert receivers, and the real handler
// binary as a separate process configured only through its environment. It
// prints a timeline and whether every expectation held.
//
//	go run ./handler/demo -handler bin/handler-local   # what `make demo` runs
//
// Exit status 0 when every expectation held, 1 otherwise, 2 when the demo
// could not run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

func main() {
	bin := flag.String("handler", "bin/handler-local", "the handler binary built for this machine")
	minute := flag.Duration("minute", 200*time.Millisecond, "real duration of one world minute")
	quiet := flag.Bool("quiet", false, "print only the scenes, expectations and the verdict")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, *bin, *minute, *quiet, os.Stdout))
}

type demo struct {
	ctx       context.Context
	out       io.Writer
	w         *world.World
	p         *world.Project
	g         *world.Guard
	bin       string
	held, all int
}

func run(ctx context.Context, bin string, minute time.Duration, quiet bool, out io.Writer) int {
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintf(out, "demo: handler binary %s not found (build it: go build -o %s ./handler)\n", bin, bin)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	fmt.Fprintln(out, "demo: starting Azurite (storage emulator)…")
	az, err := azurite.StartProcess(ctx)
	if err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 2
	}
	defer az.Close()
	var mu sync.Mutex
	w, err := world.New(world.Options{Minute: minute, StorageConnectionString: az.ConnectionString, Timeline: func(e world.Entry) {
		if !quiet {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(out, "  "+e.String())
		}
	}})
	if err != nil {
		fmt.Fprintln(out, "demo:", err)
		return 2
	}
	defer w.Close()
	d := &demo{ctx: ctx, out: out, w: w, p: w.Project(0), bin: bin}
	fmt.Fprintf(out, "demo: world ready: Atlas project %s, vault %s, clusters %s (+ %s without EAR)\n",
		d.p.ID, d.p.Vault.Name, strings.Join(d.p.Clusters, ", "), d.p.Plain)
	fmt.Fprintf(out, "demo: timeline columns: real seconds since start, world time (1 world minute = %s), source, what happened\n", minute)
	start := time.Now()
	if err := d.story(); err != nil {
		fmt.Fprintln(out, "demo: stopped early:", err)
	}
	fmt.Fprintf(out, "demo: %d/%d expectations held (%.1fs)\n", d.held, d.all, time.Since(start).Seconds())
	if d.held != d.all || d.all == 0 {
		return 1
	}
	fmt.Fprintln(out, "\nnext: `make sandbox` keeps this world running for you to explore (README \"Sandbox\");\n"+
		"against your real Atlas and Azure, `handler check` is the first step (README \"Deploying to Azure\").")
	return 0
}

// expect records and prints one expectation.
func (d *demo) expect(what string, ok bool, detail string) {
	d.all++
	mark := "[ok]  "
	if ok {
		d.held++
	} else {
		mark = "[FAIL]"
	}
	if detail != "" {
		what += " — " + detail
	}
	fmt.Fprintf(d.out, "  %s %s\n", mark, what)
}

func (d *demo) scene(title string) { fmt.Fprintf(d.out, "\n== %s\n", title) }

// within returns a context for a wait of so many world minutes.
func (d *demo) within(worldMinutes int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(d.ctx, d.w.Real(time.Duration(worldMinutes)*time.Minute)+5*time.Second)
}

func (d *demo) waitFor(worldMinutes int, what string, cond func() bool) error {
	ctx, cancel := d.within(worldMinutes)
	defer cancel()
	return d.w.WaitFor(ctx, what, cond)
}

// notice waits up to so many world minutes for n notices of kind with
// action for the project.
func (d *demo) notice(worldMinutes int, kind alert.Kind, action alert.Action, n int) ([]alert.Notice, error) {
	ctx, cancel := d.within(worldMinutes)
	defer cancel()
	return d.w.WaitNotice(ctx, d.p, kind, action, n)
}

// ticks waits until the guard finished three more reconciles.
func (d *demo) ticks() {
	base := len(d.g.Find("reconciled"))
	d.waitFor(5, "three reconciles", func() bool { return len(d.g.Find("reconciled")) >= base+3 })
}

func (d *demo) startGuard(mode string) (err error) {
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	d.g, err = d.w.StartGuard(ctx, world.GuardOptions{Binary: d.bin, Mode: mode})
	return err
}

func (d *demo) stopGuard() {
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	code, err := d.g.Stop(ctx)
	d.expect("the handler stops cleanly on SIGTERM", err == nil && code == 0, fmt.Sprintf("exit status %d", code))
}

// reject rejects Atlas's connection name and waits until Atlas's
// replacement is on the vault with status; it returns the replacement.
func (d *demo) reject(name, status string) (fresh string, err error) {
	old := d.w.AtlasConnections(d.p)
	if err := d.w.RejectConnection(d.p, name, world.Ada); err != nil {
		return "", err
	}
	err = d.waitFor(20, "Atlas's replacement connection "+status, func() bool {
		for _, n := range d.w.AtlasConnections(d.p) {
			if !slices.Contains(old, n) {
				fresh = n
			}
		}
		return fresh != "" && d.w.ConnectionStatus(d.p, fresh) == status
	})
	return fresh, err
}

func (d *demo) story() error {
	w, p := d.w, d.p
	if err := d.startGuard("enforce"); err != nil {
		return err
	}

	d.scene("1. Atlas sets up private networking: its endpoints ask for access to the vault")
	names := w.EnablePrivateNetworking(p)
	err := d.waitFor(10, "Atlas's endpoints ACTIVE", func() bool { return len(w.AtlasConnections(p, "ACTIVE")) == len(names) })
	approved := 0
	for _, n := range names {
		if w.ConnectionStatus(p, n) == vault.StatusApproved {
			approved++
		}
	}
	d.expect("the guard approves exactly Atlas's connections", approved == len(names) && len(w.Approvals()) == len(names),
		fmt.Sprintf("%d/%d approved, %d ARM approvals", approved, len(names), len(w.Approvals())))
	d.expect("Atlas's endpoints turn ACTIVE", err == nil, "")
	_, err = d.notice(5, alert.Approved, alert.AuditEvent, len(names))
	got := len(w.Notices(p, alert.Approved, ""))
	d.expect("the webhook receives one 'approved' notice per connection", err == nil && got == len(names), fmt.Sprintf("%d notices", got))

	const region = "CANADA_CENTRAL"
	d.scene("1b. Cluster " + p.Clusters[0] + " adds Azure region " + region + ", where Atlas has no private endpoint")
	w.Atlas().AddRegion(p.ID, p.Clusters[0], "AZURE", region)
	step := ""
	if ns, err := d.notice(5, alert.RegionUncovered, alert.Raised, 1); err == nil && len(ns[0].Alert.Runbook) > 0 {
		step = ns[0].Alert.Runbook[0]
	}
	d.expect("the webhook receives region-uncovered with the call that fixes it", strings.Contains(step, `"regionName":"`+region+`"`), step)
	name := w.AddRegion(p, region)
	err = d.waitFor(10, "the new connection approved", func() bool { return w.ConnectionStatus(p, name) == vault.StatusApproved })
	d.expect("the guard approves the new region's connection", err == nil, "")
	_, err = d.notice(5, alert.RegionUncovered, alert.Resolved, 1)
	d.expect("region-uncovered is resolved", err == nil, "")

	d.scene("2. A stranger asks for a private endpoint to the vault")
	foreign := "mallory-pe.7f1e2d3c-4b5a-4697-8888-9a0b1c2d3e4f"
	if err := w.AddForeignConnection(p, foreign); err != nil {
		return err
	}
	_, err = d.notice(5, alert.ForeignConnection, alert.Raised, 1)
	d.expect("the webhook receives a foreign-connection warning", err == nil, "")
	before := len(w.Approvals())
	d.ticks()
	d.expect("the foreign connection is left Pending", w.ConnectionStatus(p, foreign) == vault.StatusPending && len(w.Approvals()) == before,
		"status "+w.ConnectionStatus(p, foreign))

	d.scene("3. Someone rejects Atlas's connection; Atlas recreates its endpoint (events only, timer off)")
	w.SetTimer(false)
	d.rejectAndRecover(names[0], "event")
	w.SetTimer(true)
	d.scene("4. The same again with Event Grid delivery off (timer only)")
	w.SetEvents(false)
	d.rejectAndRecover(names[1], "timer")
	w.SetEvents(true)

	d.scene("5. The key is disabled (Azure has no event for it): alert before Atlas's validity check")
	ctx, cancel := d.within(20)
	err = w.WaitValidityCheck(ctx)
	cancel()
	if err != nil {
		return err
	}
	if err := w.SetKeyEnabled(p, false); err != nil {
		return err
	}
	crit, errAlert := d.notice(20, alert.KeyDisabled, alert.Raised, 1)
	d.expect("the webhook receives a critical key-disabled alert", errAlert == nil && crit[0].Alert.Severity == alert.Critical, "")
	err = d.waitFor(20, "clusters paused", func() bool { return len(w.Paused(p)) == len(p.Clusters) })
	d.expect("Atlas's validity check then shuts the EAR clusters down", err == nil && !slices.Contains(w.Paused(p), p.Plain),
		"paused: "+strings.Join(w.Paused(p), ", "))
	if errAlert == nil && err == nil {
		lead := w.PausedAt(p).Sub(crit[0].At)
		d.expect("the alert came before the shutdown", lead > 0,
			fmt.Sprintf("%.1fs real = %d world minutes ahead", lead.Seconds(), int(lead/w.Real(time.Minute))))
	}
	_, err = d.notice(5, alert.ClustersPaused, alert.Raised, 1)
	d.expect("the webhook receives a clusters-paused alert", err == nil, "")
	if err := w.SetKeyEnabled(p, true); err != nil {
		return err
	}
	_, err = d.notice(5, alert.KeyDisabled, alert.Resolved, 1)
	d.expect("key-disabled is resolved once the key is enabled", err == nil, "")
	err = d.waitFor(20, "clusters resumed", func() bool { return len(w.Paused(p)) == 0 })
	_, err2 := d.notice(5, alert.ClustersPaused, alert.Resolved, 1)
	d.expect("Atlas resumes the clusters and clusters-paused is resolved", err == nil && err2 == nil, "")

	d.scene("6. Observe mode: the guard is restarted with GUARD_MODE=observe and approves nothing")
	d.stopGuard()
	if err := d.startGuard("observe"); err != nil {
		return err
	}
	before = len(w.Approvals())
	current := w.AtlasConnections(p, "ACTIVE")
	if len(current) == 0 {
		return fmt.Errorf("no ACTIVE endpoint left to reject")
	}
	fresh, err := d.reject(current[0], vault.StatusPending)
	if err != nil {
		return err
	}
	_, err = d.notice(10, alert.WouldApprove, alert.Raised, 1)
	d.expect("the webhook says which connection the guard would approve", err == nil, "")
	d.ticks()
	d.expect("observe mode approves nothing", len(w.Approvals()) == before && w.ConnectionStatus(p, fresh) == vault.StatusPending,
		fmt.Sprintf("%s is %s", world.Short(fresh), w.ConnectionStatus(p, fresh)))
	d.stopGuard()
	return nil
}

// rejectAndRecover rejects Atlas's connection name and expects Atlas to
// recreate its endpoint and the guard to approve the new connection.
func (d *demo) rejectAndRecover(name, path string) {
	w, p := d.w, d.p
	before := len(w.Approvals())
	fresh, err := d.reject(name, vault.StatusApproved)
	d.expect("the recreated connection is approved ("+path+" path)", err == nil && len(w.Approvals()) == before+1, world.Short(fresh))
	if path == "event" {
		who := ""
		if ns, err := d.notice(5, alert.ConnectionChanged, alert.Raised, 1); err == nil {
			who = ns[len(ns)-1].Alert.Actor
		}
		d.expect("the webhook names who rejected the connection", strings.Contains(who, world.Ada.UPN), "actor "+who)
	}
	err = d.waitFor(20, "the new endpoint ACTIVE", func() bool { return slices.Contains(w.AtlasConnections(p, "ACTIVE"), fresh) })
	d.expect("Atlas's new endpoint turns ACTIVE", err == nil, "")
}
