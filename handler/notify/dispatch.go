package notify

import (
	"context"
	"fmt"
	"sync"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// Dispatcher sends notices to several sinks at once and reports failures per
// sink name.
type Dispatcher struct {
	sinks []Sink
}

// NewDispatcher returns a Dispatcher over sinks; names must be unique.
func NewDispatcher(sinks ...Sink) (*Dispatcher, error) {
	seen := map[string]bool{}
	for _, s := range sinks {
		if seen[s.Name()] {
			return nil, fmt.Errorf("notify: two sinks named %q", s.Name())
		}
		seen[s.Name()] = true
	}
	return &Dispatcher{sinks: sinks}, nil
}

// Names returns the sink names in order.
func (d *Dispatcher) Names() []string {
	names := make([]string, len(d.sinks))
	for i, s := range d.sinks {
		names[i] = s.Name()
	}
	return names
}

// Send sends the same notices to every sink concurrently and returns the
// failures by sink name; nil when every sink succeeded. Use Undelivered on
// each error to find what to keep pending.
func (d *Dispatcher) Send(ctx context.Context, notices []alert.Notice) map[string]error {
	batches := make(map[string][]alert.Notice, len(d.sinks))
	for _, s := range d.sinks {
		batches[s.Name()] = notices
	}
	return d.Deliver(ctx, batches)
}

// Deliver sends each sink its own notices (keyed by sink name: what is
// pending for it) concurrently and returns the failures by sink name; nil
// when all succeeded. Names without a sink fail with an error (the sink was
// removed from the configuration); sinks with no notices are not called.
func (d *Dispatcher) Deliver(ctx context.Context, batches map[string][]alert.Notice) map[string]error {
	var (
		mu   sync.Mutex
		errs map[string]error
		wg   sync.WaitGroup
	)
	fail := func(name string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if errs == nil {
			errs = map[string]error{}
		}
		errs[name] = err
	}
	known := map[string]bool{}
	for _, s := range d.sinks {
		known[s.Name()] = true
		notices := batches[s.Name()]
		if len(notices) == 0 {
			continue
		}
		wg.Go(func() {
			if err := s.Send(ctx, notices); err != nil {
				fail(s.Name(), err)
			}
		})
	}
	for name, notices := range batches {
		if !known[name] && len(notices) > 0 {
			fail(name, &SendError{Sink: name, Permanent: true, msg: "no such sink configured"})
		}
	}
	wg.Wait()
	return errs
}

// Fanout sends notices to all sinks concurrently; see Dispatcher.Send.
func Fanout(ctx context.Context, notices []alert.Notice, sinks ...Sink) map[string]error {
	return (&Dispatcher{sinks: sinks}).Send(ctx, notices)
}
