package vault

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"
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
