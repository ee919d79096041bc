package atlas

// EndpointStatus values of an Atlas EAR private endpoint.
const (
	StatusInitiating        = "INITIATING"
	StatusPendingAcceptance = "PENDING_ACCEPTANCE"
	StatusActive            = "ACTIVE"
	StatusFailed            = "FAILED"
	StatusPendingRecreation = "PENDING_RECREATION"
	StatusDeleting          = "DELETING"
)

// AzureKeyVault is the project's encryption-at-rest configuration for Azure Key
// Vault, as GET /groups/{groupId}/encryptionAtRest returns it. Valid is nil when
// Atlas did not report it.
type AzureKeyVault struct {
	AzureEnvironment         string `json:"azureEnvironment,omitempty"`
	ClientID                 string `json:"clientID,omitempty"`
	Enabled                  bool   `json:"enabled"`
	KeyIdentifier            string `json:"keyIdentifier,omitempty"`
	KeyVaultName             string `json:"keyVaultName,omitempty"`
	RequirePrivateNetworking bool   `json:"requirePrivateNetworking"`
	ResourceGroupName        string `json:"resourceGroupName,omitempty"`
	SubscriptionID           string `json:"subscriptionID,omitempty"`
	TenantID                 string `json:"tenantID,omitempty"`
	Valid                    *bool  `json:"valid,omitempty"`
}

// EncryptionAtRest is the part of the project's EAR document the guard reads.
type EncryptionAtRest struct {
	AzureKeyVault AzureKeyVault `json:"azureKeyVault"`
}

// PrivateEndpoint is one Atlas EAR private endpoint for Azure.
type PrivateEndpoint struct {
	ID                            string `json:"id"`
	CloudProvider                 string `json:"cloudProvider,omitempty"`
	RegionName                    string `json:"regionName,omitempty"`
	Status                        string `json:"status"`
	ErrorMessage                  string `json:"errorMessage,omitempty"`
	PrivateEndpointConnectionName string `json:"privateEndpointConnectionName,omitempty"`
}

// Requesting reports whether Atlas is waiting for this endpoint's connection to
// be approved (INITIATING or PENDING_ACCEPTANCE).
func (e PrivateEndpoint) Requesting() bool {
	return e.Status == StatusInitiating || e.Status == StatusPendingAcceptance
}

// Cluster is the part of a cluster description the guard reads.
// RegionConfigs holds replicationSpecs[].regionConfigs[] (provider and
// region), de-duplicated, in first-seen order.
type Cluster struct {
	ID                       string         `json:"id"`
	Name                     string         `json:"name"`
	Paused                   bool           `json:"paused"`
	StateName                string         `json:"stateName,omitempty"`
	EncryptionAtRestProvider string         `json:"encryptionAtRestProvider,omitempty"`
	RegionConfigs            []RegionConfig `json:"regionConfigs,omitempty"`
}

// RegionConfig is where a cluster has nodes: ProviderName is AWS, AZURE, GCP
// or TENANT; RegionName is Atlas's region name (e.g. US_EAST_2).
type RegionConfig struct {
	ProviderName string `json:"providerName"`
	RegionName   string `json:"regionName"`
}

// UsesAzureKeys reports whether the cluster is encrypted with the project's
// Azure Key Vault key.
func (c Cluster) UsesAzureKeys() bool { return c.EncryptionAtRestProvider == "AZURE" }

// AlertConfig is the part of a project's alert configuration the guard
// reads: which event it alerts on and whether it is on. Atlas omits enabled
// when false (its default).
type AlertConfig struct {
	ID            string `json:"id"`
	EventTypeName string `json:"eventTypeName"`
	Enabled       bool   `json:"enabled"`
}
