package vault_test

import (
	"os"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

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
