package atlas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// countingTransport is the lowest layer: it counts every round trip in the
// request context's meter (API calls, digest challenges, token fetches) and
// sets the User-Agent on requests that lack it (the token fetch).
type countingTransport struct {
	next      http.RoundTripper
	userAgent string
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	meter.FromContext(r.Context()).AddAtlas(1)
	if r.Header.Get("User-Agent") != t.userAgent {
		r = r.Clone(r.Context())
		r.Header.Set("User-Agent", t.userAgent)
	}
	return t.next.RoundTrip(r)
}

// tokenCache holds one service-account access token and fetches a new one
// with the OAuth 2.0 client-credentials grant when it is missing, close to
// expiry, or was rejected. Fetches use the caller's context, so they are
// counted and cancelled with the call that needed them; concurrent callers
// wait for one fetch (or for their own context to end).
type tokenCache struct {
	conf  *clientcredentials.Config
	fetch *http.Client
	now   func() time.Time

	sem       chan struct{} // holds the right to read/replace the fields below
	token     string
	refreshAt time.Time
}

func newTokenCache(id, secret, tokenURL string, fetch *http.Client, now func() time.Time) *tokenCache {
	conf := &clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInHeader}
	return &tokenCache{conf: conf, fetch: fetch, now: now, sem: make(chan struct{}, 1)}
}

// get returns a token valid for a while yet, fetching one when none is
// cached or the cached one is rejected (the server refused it); fresh
// reports whether this call fetched it.
func (c *tokenCache) get(ctx context.Context, rejected string) (token string, fresh bool, err error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return "", false, ctx.Err()
	}
	defer func() { <-c.sem }()
	if c.token != "" && c.token != rejected && c.now().Before(c.refreshAt) {
		return c.token, false, nil
	}
	tok, err := c.conf.Token(context.WithValue(ctx, oauth2.HTTPClient, c.fetch))
	if err != nil {
		return "", false, tokenError(err, c.now())
	}
	lifetime := 5 * time.Minute // when the server gives no expires_in
	if !tok.Expiry.IsZero() {
		lifetime = tok.Expiry.Sub(c.now())
	}
	// Refresh a minute early (a quarter early for short-lived tokens), so a
	// token never expires between the check and the server reading it.
	c.token, c.refreshAt = tok.AccessToken, c.now().Add(lifetime-min(time.Minute, lifetime/4))
	return c.token, true, nil
}

// tokenError turns a token-endpoint failure into an *Error without the
// response body oauth2 would print; network errors are returned wrapped.
func tokenError(err error, now time.Time) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		e := errorFromBody("token", re.Response.StatusCode, re.Response.Header, re.Body, now)
		if re.ErrorCode != "" {
			e.ErrorCode = alert.ScrubN(re.ErrorCode, 64)
			e.Detail = alert.ScrubN(re.ErrorDescription, maxDetail)
		}
		return e
	}
	if err := classify(err); transient.Is(err) {
		return fmt.Errorf("token: %w", err)
	}
	// oauth2's own parse errors ("cannot parse json", missing access_token)
	// carry no secrets but aren't typed: make them a permanent *Error.
	return &Error{Op: "token", StatusCode: http.StatusOK, Reason: "unusable token response", Detail: alert.ScrubN(err.Error(), maxDetail)}
}

// bearerTransport adds the service-account token. When the API answers 401
// to a cached token (revoked, or expired early), it fetches a new token and
// tries once more.
type bearerTransport struct {
	next   http.RoundTripper
	tokens *tokenCache
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	tok, fresh, err := t.tokens.get(ctx, "")
	if err != nil {
		return nil, err
	}
	resp, err := t.send(r, tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || fresh || (r.Body != nil && r.GetBody == nil) {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	if tok, _, err = t.tokens.get(ctx, tok); err != nil {
		return nil, err
	}
	return t.send(r, tok)
}

func (t *bearerTransport) send(r *http.Request, token string) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	if r.GetBody != nil {
		body, err := r.GetBody()
		if err != nil {
			return nil, err
		}
		r2.Body = body
	}
	r2.Header.Set("Authorization", "Bearer "+token)
	return t.next.RoundTrip(r2)
}
