package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/graph"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Atlas is what the reconciler reads from the Atlas Admin API.
type Atlas interface {
	EncryptionAtRest(ctx context.Context, groupID string) (atlas.EncryptionAtRest, error)
	PrivateEndpoints(ctx context.Context, groupID string) ([]atlas.PrivateEndpoint, error)
	Clusters(ctx context.Context, groupID string) ([]atlas.Cluster, error)
	AlertConfigs(ctx context.Context, groupID string) ([]atlas.AlertConfig, error)
}

// Azure is what the reconciler reads from, and the one write it makes to,
// Azure Resource Manager.
type Azure interface {
	Vault(ctx context.Context, v resource.ID) (vault.Vault, error)
	Connections(ctx context.Context, v resource.ID) ([]vault.Connection, error)
	Key(ctx context.Context, v resource.ID, name, version string) (vault.Key, error)
	Approve(ctx context.Context, v resource.ID, name, description string) (vault.Approval, error)
}

// AppSecrets tells when the secret of the Azure application clientID (the
// one Atlas authenticates with) expires; nil when unknown. Its errors are
// recorded as source graph:application; they should not be transient (the
// answer is cached, so a retried invocation cannot help).
type AppSecrets func(ctx context.Context, clientID string) (*plan.AppSecret, error)

// AzureFor returns the Azure client for Atlas's azureEnvironment.
type AzureFor func(azureEnvironment string) (Azure, error)

// observe reads everything one project's plan needs. Atlas's three reads run
// in parallel; the three ARM reads start as soon as the EAR config names the
// vault; while EAR is enabled the alert configurations come from the hourly
// cache (see alertConfigs). A read that fails — or panics — is recorded in the snapshot's
// Errors (the plan raises "guard blind" for it) and never aborts the others.
// It returns the Azure client it used (nil when the config named no vault)
// and whether a failed read may succeed if retried.
func (r *Reconciler) observe(ctx context.Context, projectID string, hints []plan.Hint) (s plan.Snapshot, az Azure, retry bool) {
	s = plan.Snapshot{ProjectID: projectID, Hints: hints}
	var mu sync.Mutex
	set := func(f func()) { mu.Lock(); defer mu.Unlock(); f() }
	// read runs f, which reads src and stores what it read through set. A
	// failure or a panic becomes an error of src.
	read := func(src plan.Source, f func() error) (ok bool) {
		err := func() (err error) {
			defer func() {
				if v := recover(); v != nil {
					r.log.ErrorContext(ctx, "panic while reading", "source", string(src), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
					err = fmt.Errorf("internal error while reading %s: %v", src, v)
				}
			}()
			return f()
		}()
		if err != nil {
			set(func() {
				s.Errors = append(s.Errors, sourceError(src, err))
				retry = retry || transient.Is(err)
			})
		}
		return err == nil
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		read(plan.SourcePrivateEndpoints, func() error {
			eps, err := r.atlas.PrivateEndpoints(ctx, projectID)
			set(func() { s.Endpoints = nonNil(eps, err) })
			return err
		})
	})
	wg.Go(func() {
		read(plan.SourceClusters, func() error {
			cls, err := r.atlas.Clusters(ctx, projectID)
			set(func() { s.Clusters = nonNil(cls, err) })
			return err
		})
	})
	var cfg atlas.AzureKeyVault
	if !read(plan.SourceEncryptionAtRest, func() error {
		ear, err := r.atlas.EncryptionAtRest(ctx, projectID)
		cfg = ear.AzureKeyVault
		return err
	}) {
		return s, nil, retry
	}
	v := vaultOf(cfg)
	set(func() { s.Config = &cfg })
	if r.appSecrets != nil && cfg.Enabled && cfg.ClientID != "" {
		wg.Go(func() {
			read(plan.SourceGraph, func() error {
				sec, err := r.appSecrets(ctx, cfg.ClientID)
				set(func() { s.AppSecret = sec })
				return err
			})
		})
	}
	if cfg.Enabled {
		wg.Go(func() {
			read(plan.SourceAlertConfigs, func() error {
				acs, se := r.alertConfigs(ctx, projectID) // hourly; a failure is reported, never retried
				set(func() {
					s.AlertConfigs = acs
					if se != nil {
						s.Errors = append(s.Errors, *se)
					}
				})
				return nil
			})
		})
	}
	if v.IsZero() {
		return s, nil, retry // not configured for Azure Key Vault: nothing on ARM to read
	}
	set(func() { s.Vault = v })
	az, azErr := r.azureFor(cfg.AzureEnvironment)
	arm := func(src plan.Source, f func() error) {
		wg.Go(func() {
			read(src, func() error {
				if azErr != nil {
					return azErr
				}
				return f()
			})
		})
	}
	arm(plan.SourceVault, func() error {
		st, err := az.Vault(ctx, v)
		if err == nil {
			set(func() { s.VaultState = &st })
		}
		return err
	})
	arm(plan.SourceConnections, func() error {
		conns, err := az.Connections(ctx, v)
		set(func() { s.Connections = nonNil(conns, err) })
		return err
	})
	arm(plan.SourceKey, func() error {
		_, name, version, err := resource.ParseKeyIdentifier(cfg.KeyIdentifier)
		if err != nil {
			return err
		}
		k, err := az.Key(ctx, v, name, version)
		if err == nil {
			set(func() { s.Key = &k })
		}
		return err
	})
	if azErr != nil {
		return s, nil, retry
	}
	return s, az, retry
}

// vaultOf is the vault Atlas's EAR config names; zero when it names none.
func vaultOf(c atlas.AzureKeyVault) resource.ID {
	if c.SubscriptionID == "" || c.ResourceGroupName == "" || c.KeyVaultName == "" {
		return resource.ID{}
	}
	return resource.ID{SubscriptionID: c.SubscriptionID, ResourceGroup: c.ResourceGroupName, Name: c.KeyVaultName}
}

// sourceError describes a failed read (or write) of src: the error, the
// service it went to, a short root cause without secrets or URLs (the plan
// groups guard-blind alerts by service and cause), and the missing
// permission when the service said so.
func sourceError(src plan.Source, err error) plan.SourceError {
	se := plan.SourceError{Source: src, Message: err.Error(), Service: "storage"}
	switch {
	case strings.HasPrefix(string(src), "atlas:"):
		se.Service = "atlas"
	case strings.HasPrefix(string(src), "arm:"):
		se.Service = "arm"
	case src == plan.SourceGraph:
		se.Service = "graph"
	}
	se.Cause = cause(se.Service, err)
	var fe *vault.ForbiddenError
	if errors.As(err, &fe) {
		se.Permission = fe.Action
	}
	if errors.As(err, new(*graph.ForbiddenError)) {
		se.Permission, se.Cause = graph.Permission, "Microsoft Graph answered 403: missing Application.Read.All"
	}
	var ae *atlas.Error
	switch {
	case !errors.As(err, &ae):
	case ae.StatusCode == 401:
		se.Permission = "valid Atlas credentials (ATLAS_CLIENT_ID/ATLAS_CLIENT_SECRET or ATLAS_PUBLIC_KEY/ATLAS_PRIVATE_KEY) allowed from this app's outbound addresses"
	case ae.StatusCode == 403 && src == plan.SourcePrivateEndpoints:
		se.Permission = "Atlas Project Owner on the project (required to list encryption-at-rest private endpoints)"
	case ae.StatusCode == 403:
		se.Permission = "Atlas Project Read Only (or higher) on the project"
	}
	return se
}

// cause names the root cause of err, a failure talking to service, in a few
// words: who answered what, or why nobody answered.
func cause(service string, err error) string {
	name := map[string]string{"atlas": "Atlas", "arm": "ARM", "graph": "Microsoft Graph"}[service]
	if name == "" {
		name = "storage"
	}
	var (
		fe *vault.ForbiddenError
		ae *atlas.Error
		re *azcore.ResponseError
		af *azidentity.AuthenticationFailedError
		de *net.DNSError
		ne net.Error
	)
	switch {
	case errors.As(err, &fe):
		return "ARM answered 403: missing " + fe.Action
	case errors.As(err, &ae) && ae.StatusCode >= 300:
		return fmt.Sprintf("Atlas answered %d %s", ae.StatusCode, http.StatusText(ae.StatusCode))
	case errors.As(err, &ae) && ae.StatusCode != 0:
		return "Atlas answered an unusable response"
	case errors.As(err, &af):
		return "the managed identity could not get a token for " + name
	case errors.As(err, &re):
		return fmt.Sprintf("%s answered %d %s", name, re.StatusCode, http.StatusText(re.StatusCode))
	case errors.As(err, &de):
		return fmt.Sprintf("cannot reach %s: DNS lookup of %s failed", name, de.Name)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "cannot reach " + name + ": timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "cannot reach " + name + ": connection refused"
	case errors.As(err, &ne):
		return "cannot reach " + name + ": network error"
	case strings.HasPrefix(err.Error(), "internal error"):
		return "internal error while reading " + name
	}
	return name + " read failed"
}

// nonNil is s read successfully (never nil), or nil when err says it was not.
func nonNil[T any](s []T, err error) []T {
	if err != nil {
		return nil
	}
	if s == nil {
		return []T{}
	}
	return s
}
