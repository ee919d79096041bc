package vault

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Credential returns the credential the guard authenticates to ARM with.
// When IDENTITY_ENDPOINT is set (App Service / Functions), it is the managed
// identity credential (App Service protocol: GET IDENTITY_ENDPOINT?resource=…
// &api-version=2019-08-01 with header X-IDENTITY-HEADER: $IDENTITY_HEADER),
// user-assigned when AZURE_CLIENT_ID is set; otherwise azidentity's
// DefaultAzureCredential (a developer's login). env reads the settings (nil
// means os.Getenv); since azidentity reads IDENTITY_* from the process
// environment, an env that differs from it is refused rather than letting
// azidentity fall back to IMDS. opts (may be nil) sets the token requests'
// transport and retries.
func Credential(env func(string) string, opts *azcore.ClientOptions) (azcore.TokenCredential, error) {
	if env == nil {
		env = os.Getenv
	}
	co := azcore.ClientOptions{}
	if opts != nil {
		co = *opts
	}
	clientID := strings.TrimSpace(env("AZURE_CLIENT_ID"))
	endpoint, header := env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")
	if endpoint == "" {
		cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: co})
		if err != nil {
			return nil, fmt.Errorf("default Azure credential: %w", err)
		}
		return cred, nil
	}
	if header == "" {
		return nil, errors.New("IDENTITY_ENDPOINT is set but IDENTITY_HEADER is empty")
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("IDENTITY_ENDPOINT %q is not an http(s) URL", endpoint)
	}
	if os.Getenv("IDENTITY_ENDPOINT") != endpoint || os.Getenv("IDENTITY_HEADER") != header {
		return nil, errors.New("IDENTITY_ENDPOINT/IDENTITY_HEADER must be set in the process environment (azidentity reads them from there)")
	}
	mo := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
	if clientID != "" {
		mo.ID = azidentity.ClientID(clientID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(mo)
	if err != nil {
		return nil, fmt.Errorf("managed identity credential: %w", err)
	}
	return cred, nil
}
