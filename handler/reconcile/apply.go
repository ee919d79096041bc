package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// applied is what approve did.
type applied struct {
	approved  []string           // connections this run approved
	audit     []alert.Notice     // their audit notices
	failed    []plan.SourceError // approvals that failed: facts for the next plan
	transient bool               // some approval may succeed if retried soon
}

// errClaimed: another run holds the approval's claim.
var errClaimed = errors.New("another reconcile is approving this connection")

// approve applies the plan's approvals (none in observe mode), each exactly
// once across processes: the run first claims the connection with a
// conditional write of the project's document (cur, updated in place), and
// only the claim's holder approves; the approval re-reads the connection
// before its PUT, so a connection another run approved meanwhile is left
// alone. When the store was unreadable (cur nil) the approvals go ahead
// under the in-process lock alone. A connection that changed between the
// read and the write (ARM's 412, no longer Pending, gone) is re-decided by
// the next run: neither approved nor a blind spot.
func (r *Reconciler) approve(ctx context.Context, projectID string, az Azure, approvals []plan.Approval, key string, cur *state.Read, run string) (out applied) {
	if az == nil {
		return out
	}
	for _, a := range approvals {
		log := r.log.With("connection", a.Connection, "endpoint", a.EndpointID)
		if cur != nil {
			if err := r.claim(ctx, key, cur, a.Connection, run); err != nil {
				if !errors.Is(err, errClaimed) {
					log.WarnContext(ctx, "approval not claimed; the next reconcile retries it", "error", err.Error())
					out.transient = true
				}
				continue
			}
		}
		res, err := az.Approve(ctx, a.Vault, a.Connection, a.Description)
		switch {
		case err == nil && res.Outcome == vault.ChangedMeanwhile: // the vault client logs it
		case errors.As(err, new(*vault.NotPendingError)) || errors.Is(err, vault.ErrConnectionNotFound):
			log.InfoContext(ctx, "connection changed since it was read; re-deciding next run", "status", res.Connection.Status)
		case err != nil:
			log.ErrorContext(ctx, "approval failed", "error", err.Error())
			out.failed = append(out.failed, sourceError(SourceApprove, fmt.Errorf("approve %s: %w", a.Connection, err)))
			out.transient = out.transient || transient.Is(err)
		case res.Changed:
			if res.Outcome == vault.Approved {
				log.InfoContext(ctx, "approved", "vault", a.Vault.String())
			} else {
				// Accepted but not (yet) approved by us: say so; the next
				// reconcile reads it again.
				log.WarnContext(ctx, "approval accepted but not confirmed", "outcome", string(res.Outcome),
					"status", res.Connection.Status, "provisioningState", res.Connection.ProvisioningState)
			}
			out.audit = append(out.audit, plan.ApprovedNotice(projectID, a, "", r.now()))
			out.approved = append(out.approved, a.Connection)
		}
	}
	return out
}

// claim records this run's claim on approving conn in the project's
// document; errClaimed when another run holds an unexpired claim.
func (r *Reconciler) claim(ctx context.Context, key string, cur *state.Read, conn, run string) error {
	now := r.now()
	_, read, err := state.Update(ctx, r.store, key, cur, func(d *Doc) error {
		if c, ok := d.Claims[conn]; ok && c.By != run && now.Before(c.Until) {
			return errClaimed
		}
		if d.Claims == nil {
			d.Claims = map[string]Claim{}
		}
		d.Claims[conn] = Claim{By: run, Until: now.Add(claimTTL)}
		return nil
	})
	if err == nil {
		*cur = read
	}
	return err
}
