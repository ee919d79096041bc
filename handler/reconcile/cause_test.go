package reconcile

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// A failed read names its service and a short root cause without the URL
// or its query.
func TestSourceErrorServiceAndCause(t *testing.T) {
	dns := &url.Error{Op: "Get", URL: "https://cloud.mongodb.com/api?secret=x", Err: &net.DNSError{Name: "cloud.mongodb.com", Err: "no such host"}}
	for _, tc := range []struct {
		src          plan.Source
		err          error
		service, cse string
	}{
		{plan.SourceClusters, fmt.Errorf("clusters: %w", dns), "atlas", "cannot reach Atlas: DNS lookup of cloud.mongodb.com failed"},
		{plan.SourceEncryptionAtRest, &atlas.Error{Op: "EncryptionAtRest", StatusCode: 401}, "atlas", "Atlas answered 401 Unauthorized"},
		{plan.SourceVault, &vault.ForbiddenError{Action: "Microsoft.KeyVault/vaults/read"}, "arm", "ARM answered 403: missing Microsoft.KeyVault/vaults/read"},
		{plan.SourceConnections, &azcore.ResponseError{StatusCode: 503}, "arm", "ARM answered 503 Service Unavailable"},
		{plan.SourceKey, context.DeadlineExceeded, "arm", "cannot reach ARM: timed out"},
		{SourceState, &url.Error{Op: "Put", URL: "https://a.blob.core.windows.net/c?sig=x", Err: &net.OpError{Op: "dial"}}, "storage", "cannot reach storage: network error"},
	} {
		se := sourceError(tc.src, tc.err)
		if se.Service != tc.service || se.Cause != tc.cse {
			t.Errorf("%s: service %q, cause %q; want %q, %q", tc.src, se.Service, se.Cause, tc.service, tc.cse)
		}
	}
}
