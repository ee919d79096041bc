// Package vault is the guard's Azure side: it reads Key Vault private endpoint
// connections, vaults and key versions through the ARM management plane
// (armkeyvault), approves the connections the plan names, and builds the
// credential (App Service managed identity, or a developer's login). Every ARM
// round trip is counted in the meter carried by the context.
package vault

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
)

// Options configure a Client.
type Options struct {
	Credential azcore.TokenCredential // required (see Credential)
	Cloud      cloud.Configuration    // ARM endpoint and audience (see CloudFor); zero means Azure public
	Transport  policy.Transporter     // nil means azcore's default
	// Retry configures retries of ARM requests; each zero field takes a
	// default: MaxRetries 3, RetryDelay 1s, MaxRetryDelay 30s, TryTimeout 30s,
	// retry on 408, 429, 500, 502, 503, 504 and network errors. azcore honours
	// a 429's Retry-After (and gives up if it exceeds MaxRetryDelay).
	Retry policy.RetryOptions
	// PollInterval is the first wait between the re-reads after an approval
	// PUT (doubling up to 8 times the first; zero means 500ms); PollFor bounds
	// their total (zero means 5s), then Approve answers StillProvisioning.
	PollInterval, PollFor time.Duration
	Sleep                 func(ctx context.Context, d time.Duration) error // nil means backoff.Sleep
	Logger                *slog.Logger                                     // approvals' debug lines; nil discards them
}

// Client reads and approves Key Vault private endpoint connections, and reads
// vaults and key versions, through the ARM management plane. It is safe for
// concurrent use and serves vaults in any number of subscriptions.
type Client struct {
	cred    azcore.TokenCredential
	armOpts arm.ClientOptions
	poll    time.Duration
	pollFor time.Duration
	sleep   func(context.Context, time.Duration) error
	log     *slog.Logger

	mu   sync.Mutex
	subs map[string]*armkeyvault.ClientFactory
}

// New returns a Client. It fails only when Options.Credential is nil or the
// cloud configuration has no ResourceManager endpoint.
func New(o Options) (*Client, error) {
	if o.Credential == nil {
		return nil, errors.New("vault: Options.Credential is required")
	}
	if len(o.Cloud.Services) == 0 {
		o.Cloud = cloud.AzurePublic
	}
	rm, ok := o.Cloud.Services[cloud.ResourceManager]
	if !ok || rm.Endpoint == "" || rm.Audience == "" {
		return nil, errors.New("vault: cloud configuration has no ResourceManager endpoint and audience")
	}
	if o.Sleep == nil {
		o.Sleep = backoff.Sleep
	}
	r := o.Retry
	r.MaxRetries = cmp.Or(r.MaxRetries, 3)
	r.RetryDelay = cmp.Or(r.RetryDelay, time.Second)
	r.MaxRetryDelay = cmp.Or(r.MaxRetryDelay, 30*time.Second)
	r.TryTimeout = cmp.Or(r.TryTimeout, 30*time.Second)
	if r.StatusCodes == nil {
		r.StatusCodes = []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	}
	return &Client{
		cred: o.Credential,
		armOpts: arm.ClientOptions{
			ClientOptions: azcore.ClientOptions{
				Cloud:            o.Cloud,
				Transport:        o.Transport,
				Retry:            r,
				PerRetryPolicies: []policy.Policy{meterPolicy{}},
				Telemetry:        policy.TelemetryOptions{ApplicationID: "atlas-akv-guard"},
			},
			// The guard must never register resource providers: that needs
			// rights it is not given and is not its business.
			DisableRPRegistration: true,
		},
		poll:    cmp.Or(max(o.PollInterval, 0), 500*time.Millisecond),
		pollFor: cmp.Or(max(o.PollFor, 0), 5*time.Second),
		sleep:   o.Sleep,
		log:     cmp.Or(o.Logger, slog.New(slog.DiscardHandler)),
		subs:    make(map[string]*armkeyvault.ClientFactory),
	}, nil
}

// meterPolicy counts every ARM round trip, retries included, in the counter
// carried by the request's context. It runs per retry, after authentication, so
// token fetches (which go through the credential's own pipeline) never count.
type meterPolicy struct{}

func (meterPolicy) Do(req *policy.Request) (*http.Response, error) {
	meter.FromContext(req.Raw().Context()).AddARM(1)
	return req.Next()
}

// factory returns the (cached) armkeyvault client factory of a subscription,
// keyed exactly: a folded key could hand one subscription's factory to a
// look-alike ID.
func (c *Client) factory(subscriptionID string) (*armkeyvault.ClientFactory, error) {
	if subscriptionID == "" {
		return nil, errors.New("vault ID has no subscription")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.subs[subscriptionID]; ok {
		return f, nil
	}
	opts := c.armOpts
	f, err := armkeyvault.NewClientFactory(subscriptionID, c.cred, &opts)
	if err == nil {
		c.subs[subscriptionID] = f
	}
	return f, err
}

// CloudFor maps Atlas's azureKeyVault.azureEnvironment to an Azure cloud:
// "AZURE" or empty → Azure public cloud, "AZURE_CHINA" → Azure China; anything
// else is an error. A non-empty armEndpointOverride (GUARD_ARM_ENDPOINT) must
// be an https URL; it replaces the ResourceManager endpoint while the token
// audience of the base cloud stays. The returned configuration is a copy: the
// azcore globals are never modified.
func CloudFor(azureEnvironment, armEndpointOverride string) (cloud.Configuration, error) {
	var base cloud.Configuration
	switch strings.ToUpper(strings.TrimSpace(azureEnvironment)) {
	case "", "AZURE":
		base = cloud.AzurePublic
	case "AZURE_CHINA":
		base = cloud.AzureChina
	default:
		return cloud.Configuration{}, fmt.Errorf("azureEnvironment %q is not supported (want AZURE or AZURE_CHINA)", azureEnvironment)
	}
	conf := cloud.Configuration{ActiveDirectoryAuthorityHost: base.ActiveDirectoryAuthorityHost, Services: maps.Clone(base.Services)}
	if armEndpointOverride = strings.TrimSpace(armEndpointOverride); armEndpointOverride != "" {
		u, err := url.Parse(armEndpointOverride)
		if err != nil {
			// The value may hold credentials: don't repeat it.
			return cloud.Configuration{}, errors.New("GUARD_ARM_ENDPOINT is not a valid URL: want https://host[:port]")
		}
		if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return cloud.Configuration{}, fmt.Errorf("GUARD_ARM_ENDPOINT %q: want an https URL without user info, query or fragment, such as https://management.azure.com", u.Redacted())
		}
		rm := conf.Services[cloud.ResourceManager]
		rm.Endpoint = strings.TrimRight(armEndpointOverride, "/")
		conf.Services[cloud.ResourceManager] = rm
	}
	return conf, nil
}
