package vault

// ARM role actions, one per distinct management-plane operation the Client
// performs (names as in Azure's "resource provider operations" list for
// Microsoft.KeyVault).
const (
	// ActionVaultRead: VaultsClient.Get (Client.Vault).
	ActionVaultRead = "Microsoft.KeyVault/vaults/read"
	// ActionConnectionsRead: PrivateEndpointConnectionsClient.Get and
	// NewListByResourcePager (Client.Connections, Client.Approve).
	ActionConnectionsRead = "Microsoft.KeyVault/vaults/privateEndpointConnections/read"
	// ActionConnectionsWrite: PrivateEndpointConnectionsClient.Put
	// (Client.Approve).
	ActionConnectionsWrite = "Microsoft.KeyVault/vaults/privateEndpointConnections/write"
	// ActionConnectionsApproval: "Approve or reject a connection to a Private
	// Endpoint resource", checked together with ActionConnectionsWrite when
	// the PUT changes the connection state (Client.Approve).
	ActionConnectionsApproval = "Microsoft.KeyVault/vaults/PrivateEndpointConnectionsApproval/action"
	// ActionKeysRead: KeysClient.Get, "read the current version of a
	// specified key" (Client.Key).
	ActionKeysRead = "Microsoft.KeyVault/vaults/keys/read"
	// ActionKeyVersionsRead: KeysClient.GetVersion, "read the specified version
	// of a key" (Client.Key when Atlas pins a version other than the latest).
	// Azure lists it as a separate action from keys/read.
	ActionKeyVersionsRead = "Microsoft.KeyVault/vaults/keys/versions/read"
)

// RoleActions returns exactly the ARM actions the Client performs, for the
// least-privilege custom role assigned on the vault. The infra drift test
// compares the Bicep role definition with this list; keep them equal.
//
// Note that Microsoft.KeyVault/vaults/keys/versions/read is separate from
// keys/read in Azure's operation list ("List the versions of a specified key,
// or read the specified version of a key"), and KeysClient.GetVersion
// (…/keys/{name}/versions/{version}) needs it.
func RoleActions() []string {
	return []string{
		ActionVaultRead,
		ActionConnectionsRead,
		ActionConnectionsWrite,
		ActionConnectionsApproval,
		ActionKeysRead,
		ActionKeyVersionsRead,
	}
}
