package simtls_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
)

func TestTrustedOnlyThroughTheAuthority(t *testing.T) {
	ca, err := simtls.New()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ca.Listen()
	if err != nil {
		t.Fatal(err)
	}
	stop := simtls.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	t.Cleanup(stop)
	url := "https://" + ln.Addr().String() + "/"

	resp, err := ca.Client().Get(url)
	if err != nil {
		t.Fatalf("trusted client: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("body = %q", body)
	}

	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}
	if _, err := plain.Get(url); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted client: want a certificate error, got %v", err)
	}

	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := ca.WriteCA(path); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(got), "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("CA file is not PEM: %q", got[:20])
	}
}
