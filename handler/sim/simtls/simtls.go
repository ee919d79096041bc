// Package simtls gives the simulators a private certificate authority and a
// server certificate for the loopback addresses, so clients under test verify
// TLS for real: in-process through Client/Transport, in another process through
// SSL_CERT_FILE pointing at the file WriteCA writes. (The clients' own tests
// prove both: every call to a simulator verifies its certificate, and a client
// without the authority fails.)
package simtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Authority is a throw-away CA with one leaf certificate valid for
// 127.0.0.1, ::1 and localhost.
type Authority struct {
	caPEM []byte
	pool  *x509.CertPool
	leaf  tls.Certificate
}

// New creates a CA and a leaf certificate valid from an hour ago for a day.
func New() (*Authority, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("simtls: ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "atlas-akv-guard simulator CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("simtls: ca cert: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("simtls: parse ca: %w", err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("simtls: leaf key: %w", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("simtls: leaf cert: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &Authority{
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pool:  pool,
		leaf:  tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey},
	}, nil
}

// Transport returns an HTTP transport that trusts only this authority.
func (a *Authority) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: a.pool, MinVersion: tls.VersionTLS12}
	return t
}

// Client returns an HTTP client that trusts only this authority.
func (a *Authority) Client() *http.Client {
	return &http.Client{Transport: a.Transport(), Timeout: 30 * time.Second}
}

// WriteCA writes the CA certificate to path (for SSL_CERT_FILE in a child
// process).
func (a *Authority) WriteCA(path string) error {
	return os.WriteFile(path, a.caPEM, 0o600)
}

// Listen starts a TLS listener on a free loopback port.
func (a *Authority) Listen() (net.Listener, error) {
	return tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{a.leaf}, MinVersion: tls.VersionTLS12})
}

// Serve serves h on ln in a goroutine, with header and idle timeouts and the
// server's own error log discarded. The returned stop closes the listener and
// every connection at once (requests in flight fail: it is a simulator) and
// waits until the server stopped; it may be called more than once.
func Serve(ln net.Listener, h http.Handler) (stop func()) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	var once sync.Once
	return func() {
		once.Do(func() { _ = srv.Close() })
		<-done
	}
}
