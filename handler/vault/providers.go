package vault

import (
	"context"
	"fmt"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// ActionProvidersRead is the role action of reading a subscription's resource
// provider registrations (Providers_Get). Only `handler check`, running with
// the operator's identity, reads them; the guard's role does not hold it.
const ActionProvidersRead = "Microsoft.Resources/subscriptions/providers/read"

// Provider returns the registration state of resource provider namespace in
// the subscription ("Registered", "NotRegistered", "Registering", …). A 403 is
// a *ForbiddenError naming the missing action.
func (c *Client) Provider(ctx context.Context, subscriptionID, namespace string) (string, error) {
	op := fmt.Sprintf("read resource provider %s in subscription %s", namespace, subscriptionID)
	opts := c.armOpts
	pc, err := armresources.NewProvidersClient(subscriptionID, c.cred, &opts)
	if err != nil {
		return "", fmt.Errorf("%s: %w", op, err)
	}
	got, err := pc.Get(ctx, namespace, nil)
	if err != nil {
		return "", fail(op, ActionProvidersRead, err)
	}
	return deref(got.RegistrationState), nil
}

// Region returns the vault's Azure region; found is false (and err nil) when
// ARM answers 404. A 403 is a *ForbiddenError naming the missing action.
func (c *Client) Region(ctx context.Context, v resource.ID) (region string, found bool, err error) {
	op := "get vault " + v.Name
	f, err := c.factory(v.SubscriptionID)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", op, err)
	}
	got, err := f.NewVaultsClient().Get(ctx, v.ResourceGroup, v.Name, nil)
	switch {
	case statusOf(err) == http.StatusNotFound:
		return "", false, nil
	case err != nil:
		return "", false, fail(op, ActionVaultRead, err)
	}
	return deref(got.Location), true, nil
}
