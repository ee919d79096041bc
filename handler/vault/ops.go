package vault

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// Connections lists every private endpoint connection of the vault (all pages).
// A missing vault is an error (wrapping ARM's 404).
func (c *Client) Connections(ctx context.Context, v resource.ID) ([]Connection, error) {
	op := "list connections of " + v.Name
	f, err := c.factory(v.SubscriptionID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	pager := f.NewPrivateEndpointConnectionsClient().NewListByResourcePager(v.ResourceGroup, v.Name, nil)
	var out []Connection
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fail(op, ActionConnectionsRead, err)
		}
		for _, pec := range page.Value {
			if pec != nil {
				out = append(out, connectionFrom(pec))
			}
		}
	}
	return out, nil
}

// Key reads the state of key name on the vault, for the version Atlas pins
// (empty: the latest). It costs one ARM call when the pinned version is the
// latest (or none is pinned) and two otherwise (KeysClient.Get, then
// GetVersion). Latest and LatestEnabled describe the key's current version.
// A 404 on the key or on the version gives Found false and a nil error; when
// only the version is missing, Latest and LatestEnabled are still filled.
func (c *Client) Key(ctx context.Context, v resource.ID, name, version string) (Key, error) {
	op := "get key " + name
	f, err := c.factory(v.SubscriptionID)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", op, err)
	}
	keys := f.NewKeysClient()
	latest, err := keys.Get(ctx, v.ResourceGroup, v.Name, name, nil)
	if statusOf(err) == http.StatusNotFound {
		return Key{Name: name, Version: version}, nil
	}
	if err != nil {
		return Key{}, fail(op, ActionKeysRead, err)
	}
	k := keyState(&latest.Key)
	k.Found, k.Name, k.Latest, k.LatestEnabled = true, name, k.Version, k.Enabled
	if version == "" || resource.EqualFold(version, k.Version) {
		return k, nil
	}
	pinned, err := keys.GetVersion(ctx, v.ResourceGroup, v.Name, name, version, nil)
	if statusOf(err) == http.StatusNotFound {
		return Key{Name: name, Version: version, Latest: k.Latest, LatestEnabled: k.LatestEnabled}, nil
	}
	if err != nil {
		return Key{}, fail(fmt.Sprintf("get key %s version %s", name, version), ActionKeyVersionsRead, err)
	}
	pv := keyState(&pinned.Key)
	k.Version, k.Enabled, k.NotBefore, k.Expires = version, pv.Enabled, pv.NotBefore, pv.Expires
	return k, nil
}

// Vault reads the vault's region, tags, public network access, URI and
// protection. A 404 gives Vault{Found: false} and a nil error.
func (c *Client) Vault(ctx context.Context, v resource.ID) (Vault, error) {
	op := "get vault " + v.Name
	f, err := c.factory(v.SubscriptionID)
	if err != nil {
		return Vault{}, fmt.Errorf("%s: %w", op, err)
	}
	got, err := f.NewVaultsClient().Get(ctx, v.ResourceGroup, v.Name, nil)
	if statusOf(err) == http.StatusNotFound {
		return Vault{}, nil
	}
	if err != nil {
		return Vault{}, fail(op, ActionVaultRead, err)
	}
	out := Vault{Found: true, Location: deref(got.Location), EnableSoftDelete: true}
	if len(got.Tags) > 0 {
		out.Tags = make(map[string]string, len(got.Tags))
		for k, val := range got.Tags {
			out.Tags[k] = deref(val)
		}
	}
	if p := got.Properties; p != nil {
		out.PublicNetworkAccess = deref(p.PublicNetworkAccess)
		out.URI = deref(p.VaultURI)
		out.EnablePurgeProtection = p.EnablePurgeProtection != nil && *p.EnablePurgeProtection
		out.EnableSoftDelete = p.EnableSoftDelete == nil || *p.EnableSoftDelete
	}
	return out, nil
}

func connectionFrom(p *armkeyvault.PrivateEndpointConnection) Connection {
	c := Connection{Name: deref(p.Name), ID: deref(p.ID), Etag: deref(p.Etag)}
	if c.Name == "" && c.ID != "" {
		c.Name = path.Base(c.ID)
	}
	if pr := p.Properties; pr != nil {
		if pr.PrivateEndpoint != nil {
			c.PrivateEndpointID = deref(pr.PrivateEndpoint.ID)
		}
		c.ProvisioningState = deref(pr.ProvisioningState)
		if s := pr.PrivateLinkServiceConnectionState; s != nil {
			c.Status, c.Description, c.ActionsRequired = deref(s.Status), deref(s.Description), deref(s.ActionsRequired)
		}
	}
	return c
}

// keyState reads the version (from keyUriWithVersion) and attributes of a key.
// A key without an enabled attribute is taken as enabled, as Key Vault does.
func keyState(k *armkeyvault.Key) Key {
	out := Key{Enabled: true}
	p := k.Properties
	if p == nil {
		return out
	}
	if u, err := url.Parse(deref(p.KeyURIWithVersion)); err == nil && u.Path != "" {
		out.Version = path.Base(strings.TrimRight(u.Path, "/"))
	}
	if a := p.Attributes; a != nil {
		if a.Enabled != nil {
			out.Enabled = *a.Enabled
		}
		out.NotBefore, out.Expires = unixTime(a.NotBefore), unixTime(a.Expires)
	}
	return out
}

func unixTime(s *int64) *time.Time {
	if s == nil {
		return nil
	}
	t := time.Unix(*s, 0).UTC()
	return &t
}

func deref[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}
