package perf

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/server"
)

//go:embed testdata/*.json
var testdata embed.FS

// fixtureVault is the vault the classified fixture's event names.
const fixtureVault = "/subscriptions/8f3c2a1e-4b7d-4e9a-9c1f-2d6b5a7e0c34/resourceGroups/rg-atlas-ear-prod/providers/Microsoft.KeyVault/vaults/kv-atlas-ear-prod"

// ClassifiedBody is a host invocation of PrivateLinkEvents carrying, as the
// host sends it (a JSON string), an ARM event about a vault's private
// endpoint connection (ConnectionChanged). A non-zero v replaces the vault.
func ClassifiedBody(v resource.ID) []byte {
	b, err := testdata.ReadFile("testdata/host-arm-pec-write-string-wrapped.json")
	if err != nil {
		panic(err)
	}
	if !v.IsZero() {
		b = bytes.ReplaceAll(b, []byte(fixtureVault), []byte(v.String()))
	}
	return b
}

// UnrelatedBody is a host invocation of PrivateLinkEvents carrying an ARM
// event the guard ignores (a storage account write).
func UnrelatedBody() []byte {
	b, err := testdata.ReadFile("testdata/host-arm-storage-write-unrelated-string-wrapped.json")
	if err != nil {
		panic(err)
	}
	return b
}

// FixedReply is what the bare floor answers: the guard's empty reply.
var FixedReply = []byte(`{"Outputs":{},"Logs":[],"ReturnValue":null}`)

// Bare is the floor: a net/http handler that reads the body and answers the
// fixed reply, doing nothing else.
var Bare http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Write(FixedReply)
})

// Nop is a dispatcher that does no I/O: it answers every invocation at once.
type Nop struct{ events, timers atomic.Int64 }

// Events counts the call.
func (n *Nop) Events(context.Context, string, []event.Trigger) (server.Outcome, error) {
	n.events.Add(1)
	return server.Outcome{}, nil
}

// Timer counts the call.
func (n *Nop) Timer(context.Context, event.Timer) (server.Outcome, error) {
	n.timers.Add(1)
	return server.Outcome{}, nil
}

// Count returns how many invocations reached the dispatcher.
func (n *Nop) Count() int64 { return n.events.Load() + n.timers.Load() }

// Guard returns the guard's real router with dispatcher d and a logger at
// the production level (info) writing to io.Discard, so the cost of
// formatting log records is included.
func Guard(d server.Dispatcher) http.Handler {
	return server.New(server.Options{Dispatcher: d, Logger: logging.New(io.Discard, nil)})
}

// Listen serves h with server.Serve (the guard's http.Server settings) on a
// loopback port and returns its URL and a stop function.
func Listen(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		server.Serve(ctx, ln, h, time.Second, logging.Discard())
	}()
	return "http://" + ln.Addr().String(), func() { cancel(); <-done }, nil
}

// Variant is one handler measured by Overhead.
type Variant struct {
	Name    string
	Handler http.Handler
	Body    []byte
	Path    string
}

// Latencies are the round-trip times of one variant, in request order.
type Latencies struct {
	Name string
	All  []time.Duration
}

// Overhead posts n requests per variant, one at a time over a keep-alive
// connection, interleaving the variants in rounds of batch requests so that
// noise from other work on the machine hits all of them alike. It returns
// the latencies per variant in the order given.
func Overhead(variants []Variant, n, batch int) ([]Latencies, error) {
	type target struct {
		url  string
		body []byte
		stop func()
	}
	targets := make([]target, len(variants))
	out := make([]Latencies, len(variants))
	for i, v := range variants {
		url, stop, err := Listen(v.Handler)
		if err != nil {
			return nil, err
		}
		defer stop()
		path := v.Path
		if path == "" {
			path = "/" + server.PrivateLinkEvents
		}
		targets[i] = target{url: url + path, body: v.Body, stop: stop}
		out[i] = Latencies{Name: v.Name, All: make([]time.Duration, 0, n)}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	defer client.CloseIdleConnections()
	// Warm up connections and code paths.
	for i := range targets {
		for range 200 {
			if _, err := post(client, targets[i].url, targets[i].body); err != nil {
				return nil, err
			}
		}
	}
	for done := 0; done < n; done += batch {
		for i := range targets {
			for range min(batch, n-done) {
				d, err := post(client, targets[i].url, targets[i].body)
				if err != nil {
					return nil, err
				}
				out[i].All = append(out[i].All, d)
			}
		}
	}
	return out, nil
}

func post(c *http.Client, url string, body []byte) (time.Duration, error) {
	start := time.Now()
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST %s: status %d", url, resp.StatusCode)
	}
	return d, nil
}

// BurstResult is what Burst measured.
type BurstResult struct {
	Requests, Errors int
	Elapsed          time.Duration
	Latencies        []time.Duration
	// FirstError describes the first failure, if any.
	FirstError string
}

// Burst sends bodies (cycling) to url with the given number of concurrent
// senders until n requests are done or limit passes; every non-200 answer
// or transport error counts as an error.
func Burst(url string, bodies [][]byte, n, senders int, limit time.Duration) BurstResult {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders, DisableCompression: true}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var (
		next     atomic.Int64
		mu       sync.Mutex
		res      BurstResult
		wg       sync.WaitGroup
		deadline = time.Now().Add(limit)
	)
	lat := make([]time.Duration, n)
	start := time.Now()
	for range senders {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || time.Now().After(deadline) {
					return
				}
				d, err := post(client, url, bodies[i%len(bodies)])
				lat[i] = d
				if err != nil {
					mu.Lock()
					res.Errors++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Requests = min(int(next.Load()), n)
	for _, d := range lat[:res.Requests] {
		if d > 0 {
			res.Latencies = append(res.Latencies, d)
		}
	}
	return res
}

// ProcStatus reads VmRSS and VmHWM (bytes) of process pid ("self" for this
// one) from /proc.
func ProcStatus(pid string) (rss, hwm uint64, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS in /proc/" + pid + "/status")
	}
	return rss, hwm, nil
}
