package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// Provisioning states of a private endpoint connection (Key Vault's
// PrivateEndpointConnectionProvisioningState; a connection may also have none).
const (
	ProvisioningSucceeded    = "Succeeded"
	ProvisioningCreating     = "Creating"
	ProvisioningUpdating     = "Updating"
	ProvisioningDeleting     = "Deleting"
	ProvisioningFailed       = "Failed"
	ProvisioningDisconnected = "Disconnected"
)

// Outcome says how an Approve that returned no error ended.
type Outcome string

const (
	// Approved: our PUT was accepted and the connection reads Approved, with
	// our description, provisioned (Succeeded or no provisioning state).
	Approved Outcome = "approved"
	// AlreadyApproved: the connection was Approved when read; nothing written.
	AlreadyApproved Outcome = "already-approved"
	// ChangedMeanwhile: ARM refused the PUT with 412 (the connection changed
	// between our read and our write, e.g. someone rejected it). Nothing was
	// approved, nothing failed; the next reconcile decides again.
	ChangedMeanwhile Outcome = "changed-meanwhile"
	// StillProvisioning: our PUT was accepted, but within Options.PollFor the
	// connection did not finish provisioning or could not be re-read.
	StillProvisioning Outcome = "still-provisioning"
	// NotOurs: our PUT was accepted, but the re-read shows another status or
	// description, or the connection going away: someone changed it after us.
	NotOurs Outcome = "not-ours"
)

// Approval is the outcome of Approve: Changed is true when ARM accepted our
// PUT; Connection is the connection as last read.
type Approval struct {
	Changed    bool
	Outcome    Outcome
	Connection Connection
}

// Approve approves the pending connection name on the vault, writing
// description into its connection state.
//
// It reads the connection: already Approved → AlreadyApproved, no write;
// neither Pending nor Approved → *NotPendingError; missing (404, or ARM's 204
// with no body) → an error wrapping ErrConnectionNotFound. Otherwise it PUTs
// status Approved right away, with the etag it read both in the body and as
// an If-Match header, so that a change made in between (a person's Reject)
// makes ARM answer 412 → ChangedMeanwhile instead of overriding it. After an
// accepted PUT it re-reads with a growing pause for at most Options.PollFor
// until the provisioning state is final and reports whether the connection is
// Approved by us (Approved, NotOurs, StillProvisioning); provisioning Failed is
// an error, returned with Changed true.
func (c *Client) Approve(ctx context.Context, v resource.ID, name, description string) (Approval, error) {
	op := "approve " + name
	f, err := c.factory(v.SubscriptionID)
	if err != nil {
		return Approval{}, fmt.Errorf("%s: %w", op, err)
	}
	pecs := f.NewPrivateEndpointConnectionsClient()
	read := func() (Connection, error) {
		var resp *http.Response
		got, err := pecs.Get(runtime.WithCaptureResponse(ctx, &resp), v.ResourceGroup, v.Name, name, nil)
		if statusOf(err) == http.StatusNotFound || (err == nil && resp != nil && resp.StatusCode == http.StatusNoContent) {
			return Connection{}, fmt.Errorf("%s on %s: %w", op, v.Name, ErrConnectionNotFound)
		}
		if err != nil {
			return Connection{}, fail(op, ActionConnectionsRead, err)
		}
		return connectionFrom(&got.PrivateEndpointConnection), nil
	}
	cur, err := read()
	if err != nil {
		return Approval{}, err
	}
	switch cur.Status {
	case StatusApproved:
		return Approval{Outcome: AlreadyApproved, Connection: cur}, nil
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
	putCtx := ctx
	if cur.Etag != "" {
		// armkeyvault's Put has no If-Match option: the header travels on the
		// context. The body etag alone is not promised to be checked.
		body.Etag = to.Ptr(cur.Etag)
		putCtx = runtime.WithHTTPHeader(ctx, http.Header{"If-Match": {cur.Etag}})
	}
	put, err := pecs.Put(putCtx, v.ResourceGroup, v.Name, name, body, nil)
	switch {
	case statusOf(err) == http.StatusPreconditionFailed:
		// Even when the connection reads Approved now, the approval is not
		// this call's: another guard instance may have written the same
		// description. Claiming it would announce one approval twice.
		c.log.InfoContext(ctx, "connection changed between read and approval; not approved", "vault", v.String(), "connection", name)
		return Approval{Outcome: ChangedMeanwhile, Connection: cur}, nil
	case err != nil:
		return Approval{Connection: cur}, fail(op, ActionConnectionsWrite, err)
	}
	cur = connectionFrom(&put.PrivateEndpointConnection)
	c.log.DebugContext(ctx, "approval sent", "vault", v.String(), "connection", name, "provisioningState", cur.ProvisioningState)
	done := func(o Outcome) (Approval, error) { return Approval{Changed: true, Outcome: o, Connection: cur}, nil }
	for pause, waited := c.poll, time.Duration(0); ; pause = min(2*pause, 8*c.poll) {
		switch cur.ProvisioningState {
		case ProvisioningFailed:
			return Approval{Changed: true, Connection: cur}, fmt.Errorf("%s: provisioning failed after approval", op)
		case ProvisioningDeleting, ProvisioningDisconnected:
			return done(NotOurs)
		case ProvisioningSucceeded, "":
			if cur.Status == StatusApproved && cur.Description == description {
				return done(Approved)
			}
			return done(NotOurs)
		}
		// Creating, Updating or a state this client does not know: wait,
		// within bounds.
		if waited+pause > c.pollFor || c.sleep(ctx, pause) != nil {
			return done(StillProvisioning)
		}
		waited += pause
		next, err := read()
		if errors.Is(err, ErrConnectionNotFound) {
			return done(NotOurs)
		}
		if err != nil {
			c.log.DebugContext(ctx, "re-read after approval failed", "connection", name, "error", err.Error())
			return done(StillProvisioning)
		}
		cur = next
	}
}
