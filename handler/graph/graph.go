// Package graph reads from Microsoft Graph when the secrets of the Azure
// application that Atlas authenticates with expire. It needs the Graph
// application permission Application.Read.All on the guard's identity.
package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

const (
	// DefaultBaseURL is Microsoft Graph in Azure's public cloud.
	DefaultBaseURL = "https://graph.microsoft.com"
	// Permission is what a 403 means the guard's identity lacks.
	Permission = "Microsoft Graph application permission Application.Read.All (admin consent; see infra/README.md)"
	// CacheFor is how long an answer (or a failure) is reused: at most one
	// Graph call per application per CacheFor.
	CacheFor = time.Hour
)

// Options configure a Reader. BaseURL defaults to DefaultBaseURL, HTTP to
// http.DefaultClient and Now to time.Now.
type Options struct {
	BaseURL    string
	Credential azcore.TokenCredential
	HTTP       *http.Client
	Now        func() time.Time
}

// Reader answers SecretExpiry from a per-application cache.
type Reader struct {
	o     Options
	mu    sync.Mutex
	cache map[string]*entry
}

type entry struct {
	mu      sync.Mutex // held during the one Graph call for this application
	at      time.Time
	expires time.Time
	err     error
}

// ForbiddenError is Graph's 403: the guard's identity lacks Permission.
type ForbiddenError struct{ Message string }

func (e *ForbiddenError) Error() string {
	return "microsoft graph: 403 forbidden (needs " + Permission + "): " + e.Message
}

// New returns a Reader.
func New(o Options) *Reader {
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	if o.HTTP == nil {
		o.HTTP = http.DefaultClient
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Reader{o: o, cache: map[string]*entry{}}
}

var appIDPattern = regexp.MustCompile(`^[0-9A-Fa-f-]{1,64}$`)

// SecretExpiry returns the latest endDateTime among the passwordCredentials
// of the application whose appId is appID (zero when it has none). The
// answer, or the failure, is reused for CacheFor; a cancelled call is not
// kept. A 403 is a *ForbiddenError. No error is transient: the next hour's
// call is the retry.
func (r *Reader) SecretExpiry(ctx context.Context, appID string) (time.Time, error) {
	if !appIDPattern.MatchString(appID) {
		return time.Time{}, fmt.Errorf("microsoft graph: %q is not an application id", appID)
	}
	r.mu.Lock()
	e := r.cache[appID]
	if e == nil {
		e = &entry{}
		r.cache[appID] = e
	}
	r.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if now := r.o.Now(); e.at.IsZero() || now.Sub(e.at) >= CacheFor {
		exp, err := r.read(ctx, appID)
		if ctx.Err() != nil {
			return time.Time{}, err
		}
		e.at, e.expires, e.err = now, exp, err
	}
	return e.expires, e.err
}

func (r *Reader) read(ctx context.Context, appID string) (time.Time, error) {
	tok, err := r.o.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{r.o.BaseURL + "/.default"}})
	if err != nil {
		return time.Time{}, fmt.Errorf("microsoft graph token: %w", err)
	}
	u := r.o.BaseURL + "/v1.0/applications(appId='" + appID + "')?$select=appId,passwordCredentials"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("Accept", "application/json")
	resp, err := r.o.HTTP.Do(req)
	if err != nil {
		return time.Time{}, fmt.Errorf("microsoft graph: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return time.Time{}, fmt.Errorf("microsoft graph: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var ge struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(body, &ge)
		msg := ge.Error.Code + ": " + ge.Error.Message
		if resp.StatusCode == http.StatusForbidden {
			return time.Time{}, &ForbiddenError{Message: msg}
		}
		return time.Time{}, fmt.Errorf("microsoft graph: application %s: %d %s", appID, resp.StatusCode, msg)
	}
	var app struct {
		PasswordCredentials []struct {
			EndDateTime *time.Time `json:"endDateTime"`
		} `json:"passwordCredentials"`
	}
	if err := json.Unmarshal(body, &app); err != nil {
		return time.Time{}, errors.New("microsoft graph: undecodable application: " + err.Error())
	}
	var latest time.Time
	for _, p := range app.PasswordCredentials {
		if p.EndDateTime != nil && p.EndDateTime.After(latest) {
			latest = *p.EndDateTime
		}
	}
	return latest, nil
}
