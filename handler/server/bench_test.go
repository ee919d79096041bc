package server_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/server"
)

// BenchmarkRoundTrip measures one host-style POST through a real loopback
// listener: the guard's router with a classified event (dispatcher that
// returns at once), an unrelated event, and a bare net/http handler answering
// the same fixed body — the floor beside the figure.
//
//	go test -run '^$' -bench RoundTrip -benchmem ./handler/server
func BenchmarkRoundTrip(b *testing.B) {
	related := hostBody(b, fixture(b, "arm-pec-write-rejected.json"))
	unrelated := hostBody(b, fixture(b, "arm-storage-write-unrelated.json"))
	fixed := []byte(`{"Outputs":{},"Logs":[],"ReturnValue":null}`)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(fixed)
	})
	guard := server.New(server.Options{Dispatcher: &recorder{}, Logger: logging.Discard()})
	for _, bc := range []struct {
		name string
		h    http.Handler
		body []byte
	}{
		{"bare", bare, related},
		{"guard-unrelated", guard, unrelated},
		{"guard-classified", guard, related},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: bc.h}
			go srv.Serve(ln)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			url := "http://" + ln.Addr().String() + "/PrivateLinkEvents"
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := client.Post(url, "application/json", bytes.NewReader(bc.body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
