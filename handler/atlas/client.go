// Package atlas is a small client of the MongoDB Atlas Administration API v2,
// limited to what the guard reads: a project's encryption-at-rest
// configuration, its Azure EAR private endpoints, its clusters and its alert
// configurations.
//
// It authenticates with a service account (OAuth 2.0 client credentials,
// preferred) or an API key (HTTP Digest), retries transient failures itself
// (429 after Retry-After, 5xx and network errors with exponential backoff and
// jitter, a bounded number of attempts, never past the context deadline) and
// turns every other failure into a typed *Error. Every HTTP round trip,
// including digest challenges and token fetches, is counted in the
// meter.Calls carried by the request context.
package atlas

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/mongodb-forks/digest"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// DefaultBaseURL is the Atlas Administration API host.
const DefaultBaseURL = "https://cloud.mongodb.com"

const (
	acceptEAR      = "application/vnd.atlas.2023-01-01+json"
	acceptClusters = "application/vnd.atlas.2024-08-05+json"
	baseBackoff    = 250 * time.Millisecond
	maxBody        = 32 << 20 // a 2xx body: 500 cluster descriptions are a few MiB
)

// Options configures a Client. Set either ClientID and ClientSecret (service
// account) or PublicKey and PrivateKey (API key, HTTP Digest); when both are
// complete the service account is used.
type Options struct {
	BaseURL                string // https only; "" means DefaultBaseURL
	ClientID, ClientSecret string
	PublicKey, PrivateKey  string
	// HTTPClient supplies the transport and the per-exchange Timeout (its
	// redirect policy and jar are ignored: redirects are never followed).
	// nil means http.DefaultTransport's clone with TLS 1.2+ and a 60s timeout.
	HTTPClient   *http.Client
	MaxAttempts  int           // per request, token fetch and digest challenge included; <= 0 means 4
	MaxRetryWait time.Duration // caps one wait, Retry-After included; <= 0 means 30s
	Logger       *slog.Logger  // retry notices (no secrets); nil discards them
	Now          func() time.Time
	Sleep        func(ctx context.Context, d time.Duration) error // nil means backoff.Sleep
}

// Client reads from the Atlas Administration API. It is safe for concurrent
// use; it holds no state besides the cached service-account token.
type Client struct {
	base        *url.URL
	hc          *http.Client
	maxAttempts int
	maxWait     time.Duration
	log         *slog.Logger
	tokens      *tokenCache // nil for API keys
	now         func() time.Time
	sleep       func(ctx context.Context, d time.Duration) error
}

// New validates o and returns a Client. It fails when the base URL isn't
// https, or no complete credential pair is given. Errors never hold secrets.
func New(o Options) (*Client, error) {
	base, err := url.Parse(cmp.Or(o.BaseURL, DefaultBaseURL))
	switch {
	case err != nil:
		return nil, errors.New("atlas: base URL is not a valid URL")
	case base.Scheme != "https" || base.Host == "":
		return nil, fmt.Errorf("atlas: base URL must be an https URL with a host, got %q", base.Redacted())
	case base.User != nil || base.RawQuery != "" || base.Fragment != "":
		return nil, fmt.Errorf("atlas: base URL must not carry user info, query or fragment, got %q", base.Redacted())
	}
	base.Path, base.RawPath = strings.TrimRight(base.Path, "/"), ""

	haveSA := o.ClientID != "" || o.ClientSecret != ""
	haveKey := o.PublicKey != "" || o.PrivateKey != ""
	switch {
	case haveSA && (o.ClientID == "" || o.ClientSecret == ""):
		return nil, errors.New("atlas: service account needs both a client id and a client secret")
	case !haveSA && haveKey && (o.PublicKey == "" || o.PrivateKey == ""):
		return nil, errors.New("atlas: API key needs both a public and a private key")
	case !haveSA && !haveKey:
		return nil, errors.New("atlas: no credentials: set a service account (client id and secret) or an API key (public and private key)")
	}

	next, timeout := http.RoundTripper(nil), 60*time.Second
	if o.HTTPClient != nil {
		next, timeout = o.HTTPClient.Transport, o.HTTPClient.Timeout
	}
	if next == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		t.ResponseHeaderTimeout, t.MaxIdleConnsPerHost = 30*time.Second, 8
		next = t
	}
	c := &Client{
		base:        base,
		maxAttempts: cmp.Or(max(o.MaxAttempts, 0), 4),
		maxWait:     cmp.Or(max(o.MaxRetryWait, 0), 30*time.Second),
		log:         cmp.Or(o.Logger, slog.New(slog.DiscardHandler)),
		now:         o.Now,
		sleep:       o.Sleep,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = backoff.Sleep
	}
	counted := &countingTransport{next: next, userAgent: "atlas-akv-guard/" + moduleVersion()}
	var auth http.RoundTripper = digest.NewTransportWithHTTPRoundTripper(o.PublicKey, o.PrivateKey, counted)
	if haveSA {
		fetch := &http.Client{Transport: counted, Timeout: timeout, CheckRedirect: noRedirects}
		c.tokens = newTokenCache(o.ClientID, o.ClientSecret, base.JoinPath("api", "oauth", "token").String(), fetch, c.now)
		auth = &bearerTransport{next: counted, tokens: c.tokens}
	}
	c.hc = &http.Client{Transport: auth, Timeout: timeout, CheckRedirect: noRedirects}
	return c, nil
}

// noRedirects stops at the first redirect: credentials must never follow one.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// get performs GET base+path?query with the given Accept header, retrying
// transient failures, and decodes the 2xx JSON body into out.
func (c *Client) get(ctx context.Context, op, path string, query url.Values, accept string, out any) error {
	u := *c.base
	u.Path, u.RawQuery = c.base.Path+path, query.Encode()
	var lastAnswer error // the last *Error, to report when the context ends mid-request
	for attempt := 1; ; attempt++ {
		err := c.once(ctx, op, u.String(), accept, out)
		if err == nil {
			return nil
		}
		ae, answered := errors.AsType[*Error](err)
		switch {
		case ctx.Err() != nil && !answered && lastAnswer != nil:
			return fmt.Errorf("%w (after %d attempts; last answer: %w)", err, attempt, lastAnswer)
		case ctx.Err() != nil || !transient.Is(err):
			return err
		case answered:
			lastAnswer = err
		}
		if attempt >= c.maxAttempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		// The server's Retry-After when it gave one, else exponential with jitter.
		wait := backoff.Jitter(min(baseBackoff<<min(attempt-1, 16), c.maxWait))
		if answered && ae.RetryAfter > 0 {
			wait = min(ae.RetryAfter, c.maxWait)
		}
		if dl, ok := ctx.Deadline(); ok && dl.Sub(c.now()) < wait {
			return fmt.Errorf("%w (not retrying: waiting %s would pass the deadline)", err, wait.Round(time.Millisecond))
		}
		c.log.LogAttrs(ctx, slog.LevelInfo, "atlas call failed, retrying",
			slog.String("op", op), slog.Int("attempt", attempt), slog.Duration("wait", wait),
			slog.String("error", err.Error()))
		if serr := c.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (stopped retrying: %w)", err, serr)
		}
	}
}

// once makes one attempt (which may be several round trips: token fetch,
// digest challenge).
func (c *Client) once(ctx context.Context, op, target, accept string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("atlas: %s: %w", op, err)
	}
	req.Header.Set("Accept", accept)
	resp, err := c.hc.Do(req)
	if ae, ok := errors.AsType[*Error](err); ok {
		// Token endpoint failure, reported by the bearer transport.
		e := *ae
		e.Op = op + " " + ae.Op
		return classify(&e)
	} else if err != nil {
		return classify(fmt.Errorf("atlas: %s: %w", op, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A read error leaves a partial body; the status alone says enough.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return classify(errorFromBody(op, resp.StatusCode, resp.Header, body, c.now()))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		return classify(fmt.Errorf("atlas: %s: reading %d response: %w", op, resp.StatusCode, err))
	case len(body) > maxBody:
		return &Error{Op: op, StatusCode: resp.StatusCode, Reason: "response too large", Detail: fmt.Sprintf("body exceeds %d bytes", maxBody)}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return &Error{Op: op, StatusCode: resp.StatusCode, Reason: "malformed JSON response", Detail: alert.ScrubN(err.Error(), maxDetail)}
	}
	return nil
}
