package notifytest

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
)

// ServeTLS serves h over TLS on a free loopback port with a certificate of
// ca, until the test ends, and returns the base URL (https://127.0.0.1:PORT).
// Clients must trust ca (ca.Transport()).
func ServeTLS(t testing.TB, ca *simtls.Authority, h http.Handler) string {
	t.Helper()
	ln, err := ca.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("notifytest: serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "https://" + ln.Addr().String()
}
