package state_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
)

const secretKey = "c3VwZXItc2VjcmV0LWFjY291bnQta2V5LTEyMzQ1Ng=="

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseAzureWebJobsStorage(t *testing.T) {
	prodCS := "DefaultEndpointsProtocol=https;AccountName=guardstate;AccountKey=" + secretKey + ";EndpointSuffix=core.windows.net"
	tests := []struct {
		name    string
		env     map[string]string
		want    string // String() of the result
		wantErr string // substring of the error
	}{
		{name: "development storage", env: map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true"},
			want: "blob 127.0.0.1:10000/devstoreaccount1, container atlas-akv-guard, connection string"},
		{name: "connection string", env: map[string]string{"AzureWebJobsStorage": prodCS, "GUARD_STATE_CONTAINER": "guard-state"},
			want: "blob account guardstate, container guard-state, connection string"},
		{name: "sas connection string", env: map[string]string{"AzureWebJobsStorage": "BlobEndpoint=https://guardstate.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig=" + secretKey},
			want: "blob guardstate.blob.core.windows.net, container atlas-akv-guard, connection string"},
		{name: "blob service uri, system identity", env: map[string]string{
			"AzureWebJobsStorage__blobServiceUri": "https://guardstate.blob.core.windows.net", "AzureWebJobsStorage__credential": "managedidentity"},
			want: "blob guardstate.blob.core.windows.net, container atlas-akv-guard, system-assigned managed identity"},
		{name: "account name, user identity", env: map[string]string{
			"AzureWebJobsStorage__accountName": "guardstate", "AzureWebJobsStorage__credential": "ManagedIdentity",
			"AzureWebJobsStorage__clientId": "11111111-2222-3333-4444-555555555555"},
			want: "blob guardstate.blob.core.windows.net, container atlas-akv-guard, managed identity 11111111-2222-3333-4444-555555555555"},
		{name: "identity without credential setting", env: map[string]string{"AzureWebJobsStorage__accountName": "guardstate"},
			want: "blob guardstate.blob.core.windows.net, container atlas-akv-guard, default Azure credential"},
		{name: "nothing", env: map[string]string{}, wantErr: "AzureWebJobsStorage: not set"},
		{name: "garbage connection string", env: map[string]string{"AzureWebJobsStorage": "AccountKey=" + secretKey}, wantErr: "AzureWebJobsStorage: not a usable storage connection string"},
		{name: "http endpoint not loopback", env: map[string]string{"AzureWebJobsStorage": "AccountName=a;AccountKey=" + secretKey + ";BlobEndpoint=http://example.com/a"}, wantErr: "BlobEndpoint: must be https"},
		{name: "http service uri", env: map[string]string{"AzureWebJobsStorage__blobServiceUri": "http://guardstate.blob.core.windows.net"}, wantErr: "AzureWebJobsStorage__blobServiceUri: must be https"},
		{name: "bad account name", env: map[string]string{"AzureWebJobsStorage__accountName": "Guard_State"}, wantErr: "AzureWebJobsStorage__accountName"},
		{name: "bad credential", env: map[string]string{"AzureWebJobsStorage__accountName": "guardstate", "AzureWebJobsStorage__credential": "secret"}, wantErr: "AzureWebJobsStorage__credential: unsupported"},
		{name: "bad container", env: map[string]string{"AzureWebJobsStorage": "UseDevelopmentStorage=true", "GUARD_STATE_CONTAINER": "Guard--State"}, wantErr: "GUARD_STATE_CONTAINER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := state.ParseAzureWebJobsStorage(envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secretKey) {
					t.Fatalf("error leaks the secret: %v", err)
				}
				return
			}
			if got := o.String(); err != nil || got != tt.want {
				t.Fatalf("String() = %q (%v)\nwant       %q", got, err, tt.want)
			}
			if strings.HasPrefix(tt.env["AzureWebJobsStorage"], "DefaultEndpoints") && o.ConnectionString != prodCS {
				t.Errorf("connection string not kept")
			}
			for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
				if s := fmt.Sprintf(f, o); strings.Contains(s, secretKey) || strings.Contains(s, "AccountKey") {
					t.Errorf("%s leaks the key: %s", f, s)
				}
			}
		})
	}
}
