package vault_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault/fake"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

var fakeVault = resource.ID{SubscriptionID: "00000000-0000-0000-0000-000000000001", ResourceGroup: "rg", Name: "kv"}

func fakeClient(t *testing.T, srv *fake.ServerFactory) *vault.Client {
	t.Helper()
	c, err := vault.New(vault.Options{
		Credential:   &azfake.TokenCredential{},
		Transport:    fake.NewServerFactoryTransport(srv),
		Retry:        policy.RetryOptions{RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond},
		PollInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pec(name, status, prov, etag string) armkeyvault.PrivateEndpointConnection {
	return armkeyvault.PrivateEndpointConnection{
		ID:   to.Ptr(fakeVault.String() + "/privateEndpointConnections/" + name),
		Name: to.Ptr(name),
		Etag: to.Ptr(etag),
		Properties: &armkeyvault.PrivateEndpointConnectionProperties{
			PrivateEndpoint: &armkeyvault.PrivateEndpoint{ID: to.Ptr("/subscriptions/atlas/resourceGroups/x/providers/Microsoft.Network/privateEndpoints/pe")},
			PrivateLinkServiceConnectionState: &armkeyvault.PrivateLinkServiceConnectionState{
				Status: to.Ptr(armkeyvault.PrivateEndpointServiceConnectionStatus(status)),
			},
			ProvisioningState: to.Ptr(armkeyvault.PrivateEndpointConnectionProvisioningState(prov)),
		},
	}
}

// TestApproveLogic drives Approve against armkeyvault's fake server: the
// decisions (no PUT when approved, refusal when not pending, PUT with the etag
// and then polling until Succeeded) are checked on the wire the SDK builds.
func TestApproveLogic(t *testing.T) {
	tests := []struct {
		name        string
		status      string
		afterPut    []string // provisioning states served by the GETs after the PUT
		wantChanged bool
		wantPuts    int
		wantErr     func(error) bool
	}{
		{name: "pending then settles", status: vault.StatusPending, afterPut: []string{"Updating", "Updating", "Succeeded"}, wantChanged: true, wantPuts: 1},
		{name: "already approved", status: vault.StatusApproved, wantPuts: 0},
		{name: "rejected is refused", status: vault.StatusRejected, wantPuts: 0, wantErr: func(err error) bool {
			var np *vault.NotPendingError
			return errors.As(err, &np) && np.Status == vault.StatusRejected && np.Name == "pe-1"
		}},
		{name: "disconnected is refused", status: vault.StatusDisconnected, wantPuts: 0, wantErr: func(err error) bool {
			var np *vault.NotPendingError
			return errors.As(err, &np) && np.Status == vault.StatusDisconnected
		}},
		{name: "provisioning fails", status: vault.StatusPending, afterPut: []string{"Updating", "Failed"}, wantChanged: true, wantPuts: 1, wantErr: func(err error) bool {
			return err != nil && !vault.IsTransient(err)
		}},
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
					if rg != "rg" || v != "kv" || name != "pe-1" {
						t.Errorf("Get(%s, %s, %s)", rg, v, name)
					}
					c := pec(name, tt.status, "Succeeded", `"e1"`)
					if puts > 0 {
						prov := "Succeeded" // a PUT the case does not expect still settles
						if len(tt.afterPut) > 0 {
							prov = tt.afterPut[min(gets, len(tt.afterPut)-1)]
						}
						c = pec(name, vault.StatusApproved, prov, `"e2"`)
						gets++
					}
					resp.SetResponse(http.StatusOK, armkeyvault.PrivateEndpointConnectionsClientGetResponse{PrivateEndpointConnection: c}, nil)
					return
				},
				Put: func(_ context.Context, _, _, name string, body armkeyvault.PrivateEndpointConnection, _ *armkeyvault.PrivateEndpointConnectionsClientPutOptions) (resp azfake.Responder[armkeyvault.PrivateEndpointConnectionsClientPutResponse], errResp azfake.ErrorResponder) {
					mu.Lock()
					defer mu.Unlock()
					puts++
					putBody = body
					resp.SetResponse(http.StatusOK, armkeyvault.PrivateEndpointConnectionsClientPutResponse{PrivateEndpointConnection: pec(name, vault.StatusApproved, "Updating", `"e2"`)}, nil)
					return
				},
			}}
			calls := &meter.Calls{}
			ctx := meter.WithCalls(t.Context(), calls)
			got, err := fakeClient(t, srv).Approve(ctx, fakeVault, "pe-1", "approved by atlas-akv-guard for project p1")
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Fatalf("Approve error = %v (%T)", err, err)
				}
			} else if err != nil {
				t.Fatalf("Approve: %v", err)
			}
			if got.Changed != tt.wantChanged {
				t.Errorf("Changed = %v, want %v", got.Changed, tt.wantChanged)
			}
			if puts != tt.wantPuts {
				t.Errorf("PUTs = %d, want %d", puts, tt.wantPuts)
			}
			if tt.wantPuts == 0 {
				return
			}
			st := putBody.Properties.PrivateLinkServiceConnectionState
			if *st.Status != armkeyvault.PrivateEndpointServiceConnectionStatusApproved || *st.Description != "approved by atlas-akv-guard for project p1" {
				t.Errorf("PUT state = %s / %q", *st.Status, *st.Description)
			}
			if putBody.Etag == nil || *putBody.Etag != `"e1"` {
				t.Errorf("PUT etag = %v, want the etag read", putBody.Etag)
			}
			if tt.wantErr == nil {
				if gets != len(tt.afterPut) {
					t.Errorf("polled %d times, want %d", gets, len(tt.afterPut))
				}
				if got.Connection.ProvisioningState != "Succeeded" || got.Connection.Status != vault.StatusApproved {
					t.Errorf("final connection %+v", got.Connection)
				}
				// 1 GET + 1 PUT + the polls, all counted as ARM round trips.
				if n := calls.ARM(); n != int64(2+len(tt.afterPut)) {
					t.Errorf("ARM calls = %d, want %d", n, 2+len(tt.afterPut))
				}
			}
		})
	}
}

// TestKeyLogic checks the economy of Key: one call when the pinned version is
// the latest, GetVersion only otherwise, and 404s as Found=false.
func TestKeyLogic(t *testing.T) {
	const latest, old = "bbbb0000000000000000000000000002", "aaaa0000000000000000000000000001"
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := func(version string, enabled bool) armkeyvault.Key {
		return armkeyvault.Key{Properties: &armkeyvault.KeyProperties{
			KeyURIWithVersion: to.Ptr("https://kv.vault.azure.net/keys/k/" + version),
			Attributes:        &armkeyvault.KeyAttributes{Enabled: to.Ptr(enabled), Expires: to.Ptr(exp.Unix())},
		}}
	}
	tests := []struct {
		name      string
		pinned    string
		keyExists bool
		oldExists bool
		want      vault.Key
		wantCalls int64
	}{
		{"latest pinned", latest, true, true, vault.Key{Found: true, Name: "k", Version: latest, Enabled: true, Expires: &exp, Latest: latest, LatestEnabled: true}, 1},
		{"nothing pinned", "", true, true, vault.Key{Found: true, Name: "k", Version: latest, Enabled: true, Expires: &exp, Latest: latest, LatestEnabled: true}, 1},
		{"rotated", old, true, true, vault.Key{Found: true, Name: "k", Version: old, Enabled: false, Expires: &exp, Latest: latest, LatestEnabled: true}, 2},
		{"pinned version missing", old, true, false, vault.Key{Name: "k", Version: old, Latest: latest, LatestEnabled: true}, 2},
		{"key missing", old, false, false, vault.Key{Name: "k", Version: old}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &fake.ServerFactory{KeysServer: fake.KeysServer{
				Get: func(_ context.Context, _, _, name string, _ *armkeyvault.KeysClientGetOptions) (resp azfake.Responder[armkeyvault.KeysClientGetResponse], errResp azfake.ErrorResponder) {
					if !tt.keyExists {
						errResp.SetResponseError(http.StatusNotFound, "KeyNotFound")
						return
					}
					resp.SetResponse(http.StatusOK, armkeyvault.KeysClientGetResponse{Key: key(latest, true)}, nil)
					return
				},
				GetVersion: func(_ context.Context, _, _, name, version string, _ *armkeyvault.KeysClientGetVersionOptions) (resp azfake.Responder[armkeyvault.KeysClientGetVersionResponse], errResp azfake.ErrorResponder) {
					if version == latest || !tt.oldExists {
						errResp.SetResponseError(http.StatusNotFound, "KeyNotFound")
						return
					}
					resp.SetResponse(http.StatusOK, armkeyvault.KeysClientGetVersionResponse{Key: key(old, false)}, nil)
					return
				},
			}}
			calls := &meter.Calls{}
			got, err := fakeClient(t, srv).Key(meter.WithCalls(t.Context(), calls), fakeVault, "k", tt.pinned)
			if err != nil {
				t.Fatal(err)
			}
			if !keysEqual(got, tt.want) {
				t.Errorf("Key = %+v, want %+v", got, tt.want)
			}
			if calls.ARM() != tt.wantCalls {
				t.Errorf("ARM calls = %d, want %d", calls.ARM(), tt.wantCalls)
			}
		})
	}
}

func keysEqual(a, b vault.Key) bool {
	te := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.Found == b.Found && a.Name == b.Name && a.Version == b.Version && a.Enabled == b.Enabled &&
		a.Latest == b.Latest && a.LatestEnabled == b.LatestEnabled && te(a.Expires, b.Expires) && te(a.NotBefore, b.NotBefore)
}
