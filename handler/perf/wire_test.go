package perf

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestWireBusy: two sequential exchanges through a Wire are busy for at
// least the endpoint's delay each and no longer than the window; a
// connection that sends and closes without an answer adds no busy time
// after it closed.
func TestWireBusy(t *testing.T) {
	const delay = 20 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		io.WriteString(rw, "ok")
	}))
	defer srv.Close()
	w, err := StartWire("test", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a := time.Now()
	for range 2 {
		resp, err := http.Get("http://" + w.Addr() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	c, err := net.Dial("tcp", w.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("x")) // never answered (not HTTP)
	time.Sleep(5 * time.Millisecond)
	c.Close()
	time.Sleep(5 * time.Millisecond)
	b := time.Now()
	time.Sleep(50 * time.Millisecond)
	busy := Busy(a, b, w)
	if busy < 2*delay || busy > b.Sub(a) {
		t.Errorf("busy %s over a %s window, want ≥ %s", busy, b.Sub(a), 2*delay)
	}
	if after := Busy(b, time.Now(), w); after != 0 {
		t.Errorf("busy %s after every exchange ended", after)
	}
}
