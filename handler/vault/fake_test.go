package vault_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault/fake"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

var fakeVault = resource.ID{SubscriptionID: "00000000-0000-0000-0000-000000000001", ResourceGroup: "rg", Name: "kv"}

// recorder notes the If-Match header of every PUT on its way to the fake.
type recorder struct {
	next    policy.Transporter
	ifMatch []string
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut {
		r.ifMatch = append(r.ifMatch, req.Header.Get("If-Match"))
	}
	return r.next.Do(req)
}

type state struct{ status, desc, prov string }

func pec(name, etag string, s state) armkeyvault.PrivateEndpointConnection {
	p := &armkeyvault.PrivateEndpointConnectionProperties{
		PrivateLinkServiceConnectionState: &armkeyvault.PrivateLinkServiceConnectionState{
			Status:      to.Ptr(armkeyvault.PrivateEndpointServiceConnectionStatus(s.status)),
			Description: to.Ptr(s.desc),
		},
	}
	if s.prov != "" {
		p.ProvisioningState = to.Ptr(armkeyvault.PrivateEndpointConnectionProvisioningState(s.prov))
	}
	return armkeyvault.PrivateEndpointConnection{ID: to.Ptr(fakeVault.String() + "/privateEndpointConnections/" + name), Name: to.Ptr(name), Etag: to.Ptr(etag), Properties: p}
}

// TestApproveDecisions drives Approve against armkeyvault's fake server:
// what it reads first, how ARM answers the PUT, and what the re-reads serve.
func TestApproveDecisions(t *testing.T) {
	const ours = "approved by atlas-akv-guard for project p1"
	var (
		pending  = state{vault.StatusPending, "", vault.ProvisioningSucceeded}
		updating = state{vault.StatusApproved, ours, vault.ProvisioningUpdating}
		done     = state{vault.StatusApproved, ours, vault.ProvisioningSucceeded}
		rejected = state{vault.StatusRejected, "refused by a person", vault.ProvisioningSucceeded}
		notFound = func(err error) bool { return errors.Is(err, vault.ErrConnectionNotFound) && !transient.Is(err) }
		refused  = func(status string) func(error) bool {
			return func(err error) bool {
				var np *vault.NotPendingError
				return errors.As(err, &np) && np.Status == status && np.Name == "pe-1"
			}
		}
	)
	tests := []struct {
		name    string
		first   int   // status of the first GET: 200 (serving read), 204 or 404
		read    state // the connection the first GET serves
		put     int   // 412 refuses the PUT; else it is accepted
		after   []state
		want    vault.Outcome
		changed bool
		wantErr func(error) bool
		puts    int
		slept   []time.Duration // Options.PollInterval 1s, PollFor 5s
	}{
		{name: "settles after polling", read: pending, after: []state{updating, updating, done}, want: vault.Approved, changed: true, puts: 1, slept: []time.Duration{time.Second, 2 * time.Second}},
		{name: "creating then succeeded", read: pending, after: []state{{vault.StatusApproved, ours, vault.ProvisioningCreating}, done}, want: vault.Approved, changed: true, puts: 1, slept: []time.Duration{time.Second}},
		{name: "no provisioning state: nothing to wait for", read: pending, after: []state{{vault.StatusApproved, ours, ""}}, want: vault.Approved, changed: true, puts: 1},
		{name: "still updating: bounded wait", read: pending, after: []state{updating}, want: vault.StillProvisioning, changed: true, puts: 1, slept: []time.Duration{time.Second, 2 * time.Second}},
		{name: "provisioning failed", read: pending, after: []state{updating, {vault.StatusApproved, ours, vault.ProvisioningFailed}}, changed: true, puts: 1, slept: []time.Duration{time.Second},
			wantErr: func(err error) bool { return err != nil && !transient.Is(err) }},
		{name: "rejected right after our PUT", read: pending, after: []state{updating, rejected}, want: vault.NotOurs, changed: true, puts: 1, slept: []time.Duration{time.Second}},
		{name: "being deleted", read: pending, after: []state{{vault.StatusApproved, ours, vault.ProvisioningDeleting}}, want: vault.NotOurs, changed: true, puts: 1},
		{name: "approved with another description", read: pending, after: []state{{vault.StatusApproved, "someone else", vault.ProvisioningSucceeded}}, want: vault.NotOurs, changed: true, puts: 1},
		{name: "412: changed between read and write", read: pending, put: 412, want: vault.ChangedMeanwhile, puts: 1},
		{name: "already approved", read: done, want: vault.AlreadyApproved},
		{name: "rejected is refused", read: rejected, wantErr: refused(vault.StatusRejected)},
		{name: "disconnected is refused", read: state{vault.StatusDisconnected, "", ""}, wantErr: refused(vault.StatusDisconnected)},
		{name: "204: no such connection", first: 204, wantErr: notFound},
		{name: "404: no such connection", first: 404, wantErr: notFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			puts, gets := 0, 0
			var putBody armkeyvault.PrivateEndpointConnection
			srv := &fake.ServerFactory{PrivateEndpointConnectionsServer: fake.PrivateEndpointConnectionsServer{
				Get: func(_ context.Context, rg, v, name string, _ *armkeyvault.PrivateEndpointConnectionsClientGetOptions) (resp azfake.Responder[armkeyvault.PrivateEndpointConnectionsClientGetResponse], errResp azfake.ErrorResponder) {
					mu.Lock()
					defer mu.Unlock()
					switch {
					case puts == 0 && tt.first == 404:
						errResp.SetResponseError(http.StatusNotFound, "PrivateEndpointConnectionNotFound")
					case puts == 0 && tt.first == 204:
						resp.SetResponse(http.StatusNoContent, armkeyvault.PrivateEndpointConnectionsClientGetResponse{}, nil)
					case puts == 0:
						resp.SetResponse(http.StatusOK, armkeyvault.PrivateEndpointConnectionsClientGetResponse{PrivateEndpointConnection: pec(name, `"e1"`, tt.read)}, nil)
					default:
						gets++
						resp.SetResponse(http.StatusOK, armkeyvault.PrivateEndpointConnectionsClientGetResponse{PrivateEndpointConnection: pec(name, `"e2"`, tt.after[min(gets, len(tt.after)-1)])}, nil)
					}
					return
				},
				Put: func(_ context.Context, _, _, name string, body armkeyvault.PrivateEndpointConnection, _ *armkeyvault.PrivateEndpointConnectionsClientPutOptions) (resp azfake.Responder[armkeyvault.PrivateEndpointConnectionsClientPutResponse], errResp azfake.ErrorResponder) {
					mu.Lock()
					defer mu.Unlock()
					puts++
					putBody = body
					if tt.put == 412 {
						errResp.SetResponseError(http.StatusPreconditionFailed, "PreconditionFailed")
						return
					}
					resp.SetResponse(http.StatusOK, armkeyvault.PrivateEndpointConnectionsClientPutResponse{PrivateEndpointConnection: pec(name, `"e2"`, tt.after[0])}, nil)
					return
				},
			}}
			rec := &recorder{next: fake.NewServerFactoryTransport(srv)}
			var slept []time.Duration
			c, err := vault.New(vault.Options{Credential: &azfake.TokenCredential{}, Transport: rec, PollInterval: time.Second, PollFor: 5 * time.Second,
				Sleep: func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return ctx.Err() }})
			must(t, err)
			calls := &meter.Calls{}
			got, err := c.Approve(meter.WithCalls(t.Context(), calls), fakeVault, "pe-1", ours)
			if (tt.wantErr == nil && err != nil) || (tt.wantErr != nil && !tt.wantErr(err)) {
				t.Fatalf("Approve error = %v (%T)", err, err)
			}
			if got.Outcome != tt.want || got.Changed != tt.changed {
				t.Errorf("Approve = %s, Changed %v; want %s, %v", got.Outcome, got.Changed, tt.want, tt.changed)
			}
			if puts != tt.puts || !slices.Equal(slept, tt.slept) {
				t.Errorf("PUTs %d, waits %v; want %d PUT(s), waits %v", puts, slept, tt.puts, tt.slept)
			}
			if tt.puts == 0 {
				return
			}
			st := putBody.Properties.PrivateLinkServiceConnectionState
			if *st.Status != armkeyvault.PrivateEndpointServiceConnectionStatusApproved || *st.Description != ours {
				t.Errorf("PUT state = %s / %q", *st.Status, *st.Description)
			}
			if putBody.Etag == nil || *putBody.Etag != `"e1"` || len(rec.ifMatch) != 1 || rec.ifMatch[0] != `"e1"` {
				t.Errorf("PUT etag %v, If-Match %q; want the etag read in both", putBody.Etag, rec.ifMatch)
			}
			// 1 GET + 1 PUT + the re-reads, all counted as ARM round trips.
			if n, want := calls.ARM(), int64(2+gets); n != want {
				t.Errorf("ARM calls = %d, want %d", n, want)
			}
		})
	}
}

func TestCloudFor(t *testing.T) {
	publicRM := cloud.AzurePublic.Services[cloud.ResourceManager]
	chinaRM := cloud.AzureChina.Services[cloud.ResourceManager]
	tests := []struct {
		env, override string
		endpoint      string
		audience      string
		wantErr       string
	}{
		{"", "", publicRM.Endpoint, publicRM.Audience, ""},
		{"AZURE", "", publicRM.Endpoint, publicRM.Audience, ""},
		{"azure_china", "", chinaRM.Endpoint, chinaRM.Audience, ""},
		{"AZURE", "https://127.0.0.1:8443/", "https://127.0.0.1:8443", publicRM.Audience, ""},
		{"AZURE_CHINA", "https://arm.example.cn", "https://arm.example.cn", chinaRM.Audience, ""},
		{"AZURE_GERMANY", "", "", "", "azureEnvironment"},
		{"AZURE_US_GOV", "", "", "", "azureEnvironment"},
		{"AZURE", "http://127.0.0.1:8080", "", "", "GUARD_ARM_ENDPOINT"},
		{"AZURE", "https://", "", "", "GUARD_ARM_ENDPOINT"},
		{"AZURE", "https://user:pw@arm.example", "", "", "GUARD_ARM_ENDPOINT"},
	}
	for _, tt := range tests {
		got, err := vault.CloudFor(tt.env, tt.override)
		rm := got.Services[cloud.ResourceManager]
		if (err == nil) != (tt.wantErr == "") || (err != nil && (!strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "pw"))) ||
			rm.Endpoint != tt.endpoint || rm.Audience != tt.audience {
			t.Errorf("CloudFor(%q, %q) = %+v, %v; want %s %s, an error naming %q (without the password)", tt.env, tt.override, rm, err, tt.endpoint, tt.audience, tt.wantErr)
		}
	}
	// The override never touches azcore's globals.
	if cloud.AzurePublic.Services[cloud.ResourceManager] != publicRM {
		t.Errorf("cloud.AzurePublic modified: %+v", cloud.AzurePublic.Services[cloud.ResourceManager])
	}
}

func TestCredentialChoice(t *testing.T) {
	t.Setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/msi/token")
	t.Setenv("IDENTITY_HEADER", "secret-header")
	envOf := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		env     map[string]string
		wantMI  bool
		wantErr string
	}{
		{"app service, system-assigned", map[string]string{"IDENTITY_ENDPOINT": os.Getenv("IDENTITY_ENDPOINT"), "IDENTITY_HEADER": "secret-header"}, true, ""},
		{"app service, user-assigned", map[string]string{"IDENTITY_ENDPOINT": os.Getenv("IDENTITY_ENDPOINT"), "IDENTITY_HEADER": "secret-header", "AZURE_CLIENT_ID": "uami"}, true, ""},
		{"no header", map[string]string{"IDENTITY_ENDPOINT": os.Getenv("IDENTITY_ENDPOINT")}, false, "IDENTITY_HEADER"},
		{"not a URL", map[string]string{"IDENTITY_ENDPOINT": "localhost:41741", "IDENTITY_HEADER": "secret-header"}, false, "IDENTITY_ENDPOINT"},
		{"differs from the process", map[string]string{"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token", "IDENTITY_HEADER": "secret-header"}, false, "process environment"},
		{"developer login", map[string]string{}, false, ""},
	}
	for _, tt := range tests {
		cred, err := vault.Credential(envOf(tt.env), nil)
		_, isMI := cred.(*azidentity.ManagedIdentityCredential)
		_, isDefault := cred.(*azidentity.DefaultAzureCredential)
		if (err == nil) != (tt.wantErr == "") || (err != nil && (!strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "secret-header"))) ||
			(err == nil && (isMI != tt.wantMI || isDefault == tt.wantMI)) {
			t.Errorf("%s: credential %T, %v; want managed identity %v or an error naming %q (without IDENTITY_HEADER)", tt.name, cred, err, tt.wantMI, tt.wantErr)
		}
	}
}
