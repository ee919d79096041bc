package reconcile

import (
	"context"
	"errors"
	"sync"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	retry "github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Atlas is what the reconciler reads from the Atlas Admin API.
type Atlas interface {
	EncryptionAtRest(ctx context.Context, groupID string) (atlas.EncryptionAtRest, error)
	PrivateEndpoints(ctx context.Context, groupID string) ([]atlas.PrivateEndpoint, error)
	Clusters(ctx context.Context, groupID string) ([]atlas.Cluster, error)
}

// Azure is what the reconciler reads from, and the one write it makes to,
// Azure Resource Manager.
type Azure interface {
	Vault(ctx context.Context, v resource.ID) (vault.Vault, error)
	Connections(ctx context.Context, v resource.ID) ([]vault.Connection, error)
	Key(ctx context.Context, v resource.ID, name, version string) (vault.Key, error)
	Approve(ctx context.Context, v resource.ID, name, description string) (vault.Approval, error)
}

// AzureFor returns the Azure client for Atlas's azureEnvironment.
type AzureFor func(azureEnvironment string) (Azure, error)

// observe reads everything one project's plan needs. Atlas's three reads run
// in parallel; the three ARM reads start as soon as the EAR config names the
// vault. A read that fails is recorded in the snapshot's Errors (the plan
// raises "guard blind" for it) and never aborts the others. It returns the
// Azure client it used (nil when the config named no vault) and whether any
// failed read was transient.
func (r *Reconciler) observe(ctx context.Context, projectID string, hints []plan.Hint) (s plan.Snapshot, az Azure, transient bool) {
	s = plan.Snapshot{ProjectID: projectID, Hints: hints}
	var mu sync.Mutex
	fail := func(src plan.Source, err error) {
		mu.Lock()
		defer mu.Unlock()
		s.Errors = append(s.Errors, sourceError(src, err))
		transient = transient || retry.Is(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		eps, err := r.atlas.PrivateEndpoints(ctx, projectID)
		if err != nil {
			fail(plan.SourcePrivateEndpoints, err)
			return
		}
		mu.Lock()
		s.Endpoints = nonNil(eps)
		mu.Unlock()
	})
	wg.Go(func() {
		cls, err := r.atlas.Clusters(ctx, projectID)
		if err != nil {
			fail(plan.SourceClusters, err)
			return
		}
		mu.Lock()
		s.Clusters = nonNil(cls)
		mu.Unlock()
	})

	ear, err := r.atlas.EncryptionAtRest(ctx, projectID)
	if err != nil {
		fail(plan.SourceEncryptionAtRest, err)
		wg.Wait()
		return s, nil, transient
	}
	cfg := ear.AzureKeyVault
	mu.Lock()
	s.Config = &cfg
	mu.Unlock()
	v := resource.ID{SubscriptionID: cfg.SubscriptionID, ResourceGroup: cfg.ResourceGroupName, Name: cfg.KeyVaultName}
	if v.SubscriptionID == "" || v.ResourceGroup == "" || v.Name == "" {
		// Not configured for Azure Key Vault: nothing on the ARM side to read.
		wg.Wait()
		return s, nil, transient
	}
	mu.Lock()
	s.Vault = v
	mu.Unlock()
	az, err = r.azureFor(cfg.AzureEnvironment)
	if err != nil {
		for _, src := range []plan.Source{plan.SourceVault, plan.SourceConnections, plan.SourceKey} {
			fail(src, err)
		}
		wg.Wait()
		return s, nil, transient
	}
	wg.Go(func() {
		st, err := az.Vault(ctx, v)
		if err != nil {
			fail(plan.SourceVault, err)
			return
		}
		mu.Lock()
		s.VaultState = &st
		mu.Unlock()
	})
	wg.Go(func() {
		conns, err := az.Connections(ctx, v)
		if err != nil {
			fail(plan.SourceConnections, err)
			return
		}
		mu.Lock()
		s.Connections = nonNil(conns)
		mu.Unlock()
	})
	wg.Go(func() {
		_, name, version, err := resource.ParseKeyIdentifier(cfg.KeyIdentifier)
		if err != nil {
			fail(plan.SourceKey, err)
			return
		}
		k, err := az.Key(ctx, v, name, version)
		if err != nil {
			fail(plan.SourceKey, err)
			return
		}
		mu.Lock()
		s.Key = &k
		mu.Unlock()
	})
	wg.Wait()
	return s, az, transient
}

func sourceError(src plan.Source, err error) plan.SourceError {
	se := plan.SourceError{Source: src, Message: err.Error()}
	var fe *vault.ForbiddenError
	if errors.As(err, &fe) {
		se.Permission = fe.Action
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

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
