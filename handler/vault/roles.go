package vault

// ARM role actions, one per distinct management-plane operation the Client
// performs (names as in Azure's resource provider operations for
// Microsoft.KeyVault).
const (
	ActionVaultRead        = "Microsoft.KeyVault/vaults/read"                             // Vault
	ActionConnectionsRead  = "Microsoft.KeyVault/vaults/privateEndpointConnections/read"  // Connections, Approve
	ActionConnectionsWrite = "Microsoft.KeyVault/vaults/privateEndpointConnections/write" // Approve
	// ActionConnectionsApproval ("approve or reject a connection to a private
	// endpoint") is checked together with the write when a PUT changes the
	// connection state.
	ActionConnectionsApproval = "Microsoft.KeyVault/vaults/PrivateEndpointConnectionsApproval/action"
	ActionKeysRead            = "Microsoft.KeyVault/vaults/keys/read" // Key: the current version
	// ActionKeyVersionsRead is separate from keys/read in Azure's list ("read
	// the specified version of a key"): Key needs it when Atlas pins a
	// version other than the latest.
	ActionKeyVersionsRead = "Microsoft.KeyVault/vaults/keys/versions/read"
)

// RoleActions returns exactly the ARM actions the Client performs, for the
// least-privilege custom role assigned on the vault. The infra drift test
// compares the Bicep role definition with this list; keep them equal.
func RoleActions() []string {
	return []string{ActionVaultRead, ActionConnectionsRead, ActionConnectionsWrite, ActionConnectionsApproval, ActionKeysRead, ActionKeyVersionsRead}
}
