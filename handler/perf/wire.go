package perf

import (
	"net"
	"slices"
	"sync"
	"time"
)

// Wire is a loopback TCP relay in front of one external endpoint (Atlas,
// ARM, the identity endpoint, storage, an alert sink) that timestamps the
// traffic through it without terminating TLS. Per connection, a span opens
// when the client sends after the endpoint last answered (or first sends)
// and ends at the last byte the endpoint sent before the client's next
// request. Over HTTP/1.1 (the simulators and Azurite offer no h2) a span is
// one exchange, TLS handshake included: the time the client was waiting on
// that endpoint. Busy merges the spans of several wires.
type Wire struct {
	Name   string
	target string
	ln     net.Listener

	mu    sync.Mutex
	spans []*span
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

type span struct{ start, end time.Time } // end is zero while unanswered

// StartWire listens on a free loopback port and relays every connection to
// target (host:port).
func StartWire(name, target string) (*Wire, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &Wire{Name: name, target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	w.wg.Go(w.accept)
	return w, nil
}

// Addr returns the relay's host:port.
func (w *Wire) Addr() string { return w.ln.Addr().String() }

// Close stops accepting, closes every relayed connection and waits for the
// relay goroutines.
func (w *Wire) Close() {
	w.ln.Close()
	w.mu.Lock()
	for c := range w.conns {
		c.Close()
	}
	w.conns = nil
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *Wire) accept() {
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		w.wg.Go(func() { w.relay(c) })
	}
}

func (w *Wire) track(c net.Conn, on bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !on {
		delete(w.conns, c)
		return true
	}
	if w.conns == nil {
		return false // closed
	}
	w.conns[c] = struct{}{}
	return true
}

func (w *Wire) relay(client net.Conn) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", w.target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	if !w.track(client, true) || !w.track(server, true) {
		return
	}
	defer w.track(client, false)
	defer w.track(server, false)
	var (
		cur      *span
		answered = true
	)
	fromClient := func() {
		now := time.Now()
		w.mu.Lock()
		if answered {
			cur = &span{start: now}
			w.spans = append(w.spans, cur)
			answered = false
		}
		w.mu.Unlock()
	}
	fromServer := func() {
		now := time.Now()
		w.mu.Lock()
		if cur != nil {
			cur.end = now
			answered = true
		}
		w.mu.Unlock()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pump(server, client, fromClient, false)
		server.Close()
	}()
	pump(client, server, fromServer, true)
	client.Close()
	<-done
	// A span still open when the connection closed was no exchange (a TLS
	// close_notify on an idle connection): it ends with the connection.
	now := time.Now()
	w.mu.Lock()
	if cur != nil && !answered {
		cur.end = now
	}
	w.mu.Unlock()
}

// pump copies src to dst, calling seen for every chunk: before forwarding
// it when before is false (the moment a request leaves the client), after
// forwarding it otherwise (the moment the client can read the answer).
func pump(dst, src net.Conn, seen func(), after bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !after {
				seen()
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if after {
				seen()
			}
		}
		if err != nil {
			return // EOF or closed: the caller closes both ends
		}
	}
}

// intervals returns the wire's spans that began in [a, b], clipped to b;
// an unanswered span lasts until b. Exchanges begun before a are left out:
// they were not caused by what happened at a, and leaving them out can only
// make the time not spent waiting larger, never smaller.
func (w *Wire) intervals(a, b time.Time) [][2]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out [][2]time.Time
	for _, s := range w.spans {
		start, end := s.start, s.end
		if start.Before(a) {
			continue
		}
		if end.IsZero() {
			end = b
		}
		if end.After(b) {
			end = b
		}
		if end.After(start) {
			out = append(out, [2]time.Time{start, end})
		}
	}
	return out
}

// Busy returns how much of [a, b] at least one exchange begun in [a, b] was
// outstanding on any of the wires.
func Busy(a, b time.Time, wires ...*Wire) time.Duration {
	var all [][2]time.Time
	for _, w := range wires {
		all = append(all, w.intervals(a, b)...)
	}
	slices.SortFunc(all, func(x, y [2]time.Time) int { return x[0].Compare(y[0]) })
	var total time.Duration
	var cs, ce time.Time
	for _, iv := range all {
		if ce.IsZero() || iv[0].After(ce) {
			total += ce.Sub(cs)
			cs, ce = iv[0], iv[1]
			continue
		}
		if iv[1].After(ce) {
			ce = iv[1]
		}
	}
	return total + ce.Sub(cs)
}
