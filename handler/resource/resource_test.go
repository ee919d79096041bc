package resource_test

import (
	"strings"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

func TestParseID(t *testing.T) {
	want := resource.ID{SubscriptionID: "sub-1", ResourceGroup: "rg-1", Name: "kv-1"}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"vault", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.KeyVault/vaults/kv-1", true},
		{"no leading slash", "subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.KeyVault/vaults/kv-1/", true},
		{"lower-case keywords", "/subscriptions/sub-1/resourcegroups/rg-1/providers/microsoft.keyvault/VAULTS/kv-1", true},
		{"connection", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.KeyVault/vaults/kv-1/privateEndpointConnections/pe-1", true},
		{"role assignment on vault", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.KeyVault/vaults/kv-1/providers/Microsoft.Authorization/roleAssignments/r", true},
		{"resource group scope", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Authorization/roleAssignments/r", false},
		{"other provider", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Network/privateEndpoints/kv-1", false},
		{"managed HSM", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.KeyVault/managedHSMs/kv-1", false},
		{"empty subscription", "/subscriptions//resourceGroups/rg-1/providers/Microsoft.KeyVault/vaults/kv-1", false},
		{"no vault name", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.KeyVault/vaults/", false},
		{"reordered", "/resourceGroups/rg-1/subscriptions/sub-1/providers/Microsoft.KeyVault/vaults/kv-1", false},
		{"nested under another resource", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Web/sites/s/providers/Microsoft.KeyVault/vaults/kv-1", false},
		{"kelvin sign look-alike", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.\u212AeyVault/vaults/kv-1", false},
		{"space in name", "/subscriptions/sub-1/resourceGroups/rg 1/providers/Microsoft.KeyVault/vaults/kv-1", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resource.ParseID(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if tt.ok && !got.Equal(want) {
				t.Fatalf("ParseID(%q) = %+v, want %+v", tt.in, got, want)
			}
		})
	}
}

func TestParseKeyIdentifier(t *testing.T) {
	tests := []struct {
		in                  string
		vault, key, version string
		ok                  bool
	}{
		{"https://kv-1.vault.azure.net/keys/ear-key/0123456789abcdef0123456789abcdef", "kv-1", "ear-key", "0123456789abcdef0123456789abcdef", true},
		{"https://kv-1.vault.azure.cn/keys/ear-key", "kv-1", "ear-key", "", true},
		{"https://kv-1.vault.azure.net:443/keys/ear-key/v2/", "kv-1", "ear-key", "v2", true},
		{"http://kv-1.vault.azure.net/keys/ear-key/v2", "", "", "", false},
		{"https://kv-1.vault.azure.net/secrets/ear-key/v2", "", "", "", false},
		{"https://kv-1.vault.azure.net/keys//v2", "", "", "", false},
		{"https://kv-1.vault.azure.net/keys/ear-key/v2?api-version=7.4", "", "", "", false},
		{"https://user@kv-1.vault.azure.net/keys/ear-key/v2", "", "", "", false},
		{"https://kv-1.vault.azure.net/keys/ear key/v2", "", "", "", false},
		{"https://kv-1.vault.azure.net/keys/ear-key/v2/extra", "", "", "", false},
		{"https://.vault.azure.net/keys/ear-key", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			v, k, ver, err := resource.ParseKeyIdentifier(tt.in)
			if tt.ok != (err == nil) {
				t.Fatalf("error = %v, want ok=%v", err, tt.ok)
			}
			if v != tt.vault || k != tt.key || ver != tt.version {
				t.Fatalf("= %q %q %q, want %q %q %q", v, k, ver, tt.vault, tt.key, tt.version)
			}
		})
	}
}

// FuzzParseID checks that whatever ParseID accepts is a well-formed vault ID
// that survives a round trip through String.
func FuzzParseID(f *testing.F) {
	f.Add("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v")
	f.Add("/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v/privateEndpointConnections/c")
	f.Fuzz(func(t *testing.T, in string) {
		id, err := resource.ParseID(in)
		if err != nil {
			if id != (resource.ID{}) {
				t.Fatalf("ParseID(%q) returned %+v with error %v", in, id, err)
			}
			return
		}
		for _, part := range []string{id.SubscriptionID, id.ResourceGroup, id.Name} {
			if part == "" || strings.ContainsAny(part, "/ ?#") {
				t.Fatalf("ParseID(%q) = %+v: bad component %q", in, id, part)
			}
		}
		again, err := resource.ParseID(id.String())
		if err != nil || again != id {
			t.Fatalf("ParseID(%q) = %+v, but ParseID(String()) = %+v, %v", in, id, again, err)
		}
		if !strings.Contains(strings.ToLower(in), strings.ToLower(id.Name)) {
			t.Fatalf("ParseID(%q) invented name %q", in, id.Name)
		}
	})
}

// FuzzParseKeyIdentifier checks that accepted identifiers have valid names
// and that a rebuilt identifier parses to the same parts.
func FuzzParseKeyIdentifier(f *testing.F) {
	f.Add("https://kv.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef")
	f.Add("https://kv.vault.azure.net/keys/k")
	f.Fuzz(func(t *testing.T, in string) {
		v, k, ver, err := resource.ParseKeyIdentifier(in)
		if err != nil {
			if v != "" || k != "" || ver != "" {
				t.Fatalf("ParseKeyIdentifier(%q) returned parts with error %v", in, err)
			}
			return
		}
		for _, part := range []string{v, k} {
			if part == "" || strings.ContainsAny(part, "/?#@.: ") {
				t.Fatalf("ParseKeyIdentifier(%q) = %q %q %q: bad name %q", in, v, k, ver, part)
			}
		}
		if strings.ContainsAny(ver, "/?#@.:-= ") {
			t.Fatalf("ParseKeyIdentifier(%q) = %q %q %q: bad version", in, v, k, ver)
		}
		rebuilt := "https://" + v + ".vault.azure.net/keys/" + k
		if ver != "" {
			rebuilt += "/" + ver
		}
		v2, k2, ver2, err := resource.ParseKeyIdentifier(rebuilt)
		if err != nil || v2 != v || k2 != k || ver2 != ver {
			t.Fatalf("ParseKeyIdentifier(%q) = %q %q %q; rebuilt %q gives %q %q %q %v", in, v, k, ver, rebuilt, v2, k2, ver2, err)
		}
	})
}

func TestEqualIsASCIIOnly(t *testing.T) {
	a := resource.ID{SubscriptionID: "s", ResourceGroup: "rg", Name: "kv-a"}
	b := resource.ID{SubscriptionID: "S", ResourceGroup: "RG", Name: "KV-A"}
	if !a.Equal(b) || a.Key() != b.Key() {
		t.Fatalf("IDs differing in ASCII case must be equal: %v %v", a, b)
	}
	kelvin := resource.ID{SubscriptionID: "s", ResourceGroup: "rg", Name: "\u212av-a"} // Kelvin sign, folds to 'k' in Unicode
	if a.Equal(kelvin) || a.Key() == kelvin.Key() {
		t.Fatalf("a Unicode look-alike must not equal %v", a)
	}
}

func TestParseEndpoint(t *testing.T) {
	for raw, want := range map[string]string{
		"https://x.example/p?sig=s": "", "http://127.0.0.1:1/x": "", "http://localhost/x": "", "http://[::1]:1/x": "",
		"http://x.example/p": "must be https", "ftp://x/p": "not an absolute", "/relative": "not an absolute",
	} {
		_, err := resource.ParseEndpoint(raw)
		if (want == "") != (err == nil) || err != nil && (!strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "x.example")) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
}
