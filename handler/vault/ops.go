package vault

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// Provisioning states of a private endpoint connection that Approve waits on.
const (
	ProvisioningSucceeded = "Succeeded"
	ProvisioningFailed    = "Failed"
)

// Approval is the outcome of Approve.
type Approval struct {
	// Changed is true when Approve sent the PUT that approved the
	// connection, false when it was already approved.
	Changed bool
	// Connection is the connection as last read.
	Connection Connection
}

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

// Approve approves the pending connection name on the vault, writing
// description into its connection state, and waits until ARM reports the
// change provisioned.
//
// It re-reads the connection first: already Approved → no write, Changed false;
// neither Pending nor Approved → *NotPendingError; missing → an error wrapping
// ErrConnectionNotFound. Otherwise it PUTs status Approved with the etag it read
// and re-reads with a growing pause until provisioningState is Succeeded
// (Failed is an error), bounded by ctx. If ctx ends after the PUT was accepted,
// the error is returned together with Changed true.
func (c *Client) Approve(ctx context.Context, v resource.ID, name, description string) (Approval, error) {
	op := "approve " + name
	f, err := c.factory(v.SubscriptionID)
	if err != nil {
		return Approval{}, fmt.Errorf("%s: %w", op, err)
	}
	pecs := f.NewPrivateEndpointConnectionsClient()
	got, err := pecs.Get(ctx, v.ResourceGroup, v.Name, name, nil)
	if isNotFound(err) {
		return Approval{}, fmt.Errorf("%s on %s: %w", op, v.Name, ErrConnectionNotFound)
	}
	if err != nil {
		return Approval{}, fail(op, ActionConnectionsRead, err)
	}
	cur := connectionFrom(&got.PrivateEndpointConnection)
	switch cur.Status {
	case StatusApproved:
		return Approval{Connection: cur}, nil
	case StatusPending:
	default:
		return Approval{Connection: cur}, &NotPendingError{Name: name, Status: cur.Status}
	}

	body := armkeyvault.PrivateEndpointConnection{
		Properties: &armkeyvault.PrivateEndpointConnectionProperties{
			PrivateLinkServiceConnectionState: &armkeyvault.PrivateLinkServiceConnectionState{
				Status:      to.Ptr(armkeyvault.PrivateEndpointServiceConnectionStatusApproved),
				Description: to.Ptr(description),
			},
		},
	}
	// armkeyvault's Put has no If-Match option; the etag read goes in the body,
	// as the REST API models it, so a concurrent change is refused by ARM.
	if got.Etag != nil && *got.Etag != "" {
		body.Etag = got.Etag
	}
	put, err := pecs.Put(ctx, v.ResourceGroup, v.Name, name, body, nil)
	if err != nil {
		return Approval{Connection: cur}, fail(op, ActionConnectionsWrite, err)
	}
	cur = connectionFrom(&put.PrivateEndpointConnection)
	c.log.DebugContext(ctx, "approval sent", "vault", v.String(), "connection", name, "provisioningState", cur.ProvisioningState)

	pause := c.poll
	for cur.ProvisioningState != ProvisioningSucceeded {
		if cur.ProvisioningState == ProvisioningFailed {
			return Approval{Changed: true, Connection: cur}, fmt.Errorf("%s: provisioning failed after approval", op)
		}
		if err := backoff.Sleep(ctx, pause); err != nil {
			return Approval{Changed: true, Connection: cur}, fmt.Errorf("%s: approved, waiting for provisioning (last %q): %w", op, cur.ProvisioningState, err)
		}
		pause = min(2*pause, 8*c.poll)
		got, err := pecs.Get(ctx, v.ResourceGroup, v.Name, name, nil)
		if err != nil {
			return Approval{Changed: true, Connection: cur}, fail(op, ActionConnectionsRead, err)
		}
		cur = connectionFrom(&got.PrivateEndpointConnection)
	}
	if cur.Status != StatusApproved {
		return Approval{Changed: true, Connection: cur}, fmt.Errorf("%s: connection is %s after approval", op, cur.Status)
	}
	return Approval{Changed: true, Connection: cur}, nil
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
	if isNotFound(err) {
		return Key{Name: name, Version: version}, nil
	}
	if err != nil {
		return Key{}, fail(op, ActionKeysRead, err)
	}
	lv := keyState(&latest.Key)
	k := Key{Found: true, Name: name, Latest: lv.Version, LatestEnabled: lv.Enabled}
	if version == "" || strings.EqualFold(version, lv.Version) {
		k.Version, k.Enabled, k.NotBefore, k.Expires = lv.Version, lv.Enabled, lv.NotBefore, lv.Expires
		return k, nil
	}
	op = fmt.Sprintf("get key %s version %s", name, version)
	pinned, err := keys.GetVersion(ctx, v.ResourceGroup, v.Name, name, version, nil)
	if isNotFound(err) {
		k.Found, k.Version = false, version
		return k, nil
	}
	if err != nil {
		return Key{}, fail(op, ActionKeyVersionsRead, err)
	}
	pv := keyState(&pinned.Key)
	k.Version, k.Enabled, k.NotBefore, k.Expires = version, pv.Enabled, pv.NotBefore, pv.Expires
	return k, nil
}

// Vault reads the vault's tags, public network access and URI. A 404 gives
// Vault{Found: false} and a nil error.
func (c *Client) Vault(ctx context.Context, v resource.ID) (Vault, error) {
	op := "get vault " + v.Name
	f, err := c.factory(v.SubscriptionID)
	if err != nil {
		return Vault{}, fmt.Errorf("%s: %w", op, err)
	}
	got, err := f.NewVaultsClient().Get(ctx, v.ResourceGroup, v.Name, nil)
	if isNotFound(err) {
		return Vault{}, nil
	}
	if err != nil {
		return Vault{}, fail(op, ActionVaultRead, err)
	}
	out := Vault{Found: true}
	if len(got.Tags) > 0 {
		out.Tags = make(map[string]string, len(got.Tags))
		for k, val := range got.Tags {
			if val != nil {
				out.Tags[k] = *val
			} else {
				out.Tags[k] = ""
			}
		}
	}
	if p := got.Properties; p != nil {
		out.PublicNetworkAccess = deref(p.PublicNetworkAccess)
		out.URI = deref(p.VaultURI)
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
		if pr.ProvisioningState != nil {
			c.ProvisioningState = string(*pr.ProvisioningState)
		}
		if s := pr.PrivateLinkServiceConnectionState; s != nil {
			if s.Status != nil {
				c.Status = string(*s.Status)
			}
			c.Description = deref(s.Description)
			if s.ActionsRequired != nil {
				c.ActionsRequired = string(*s.ActionsRequired)
			}
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
	if u := deref(p.KeyURIWithVersion); u != "" {
		if pu, err := url.Parse(u); err == nil {
			out.Version = path.Base(strings.TrimRight(pu.Path, "/"))
		}
	}
	if a := p.Attributes; a != nil {
		if a.Enabled != nil {
			out.Enabled = *a.Enabled
		}
		out.NotBefore = unixTime(a.NotBefore)
		out.Expires = unixTime(a.Expires)
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
