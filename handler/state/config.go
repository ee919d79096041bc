package state

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// DefaultContainer is the container used when GUARD_STATE_CONTAINER is unset.
const DefaultContainer = "atlas-akv-guard"

// developmentStorage is Azurite's well-known connection string.
const developmentStorage = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"

// BlobOptions configures NewBlob. Exactly one of ConnectionString and
// ServiceURL is used (the connection string wins). Its String, GoString and
// LogValue never show the connection string or keys.
type BlobOptions struct {
	ConnectionString string // a storage account connection string (a secret)
	// ServiceURL is the blob service URL for identity-based access (https://account.blob.core.windows.net),
	// authenticated by a managed identity (ManagedIdentity, with ClientID) or else azidentity's default chain.
	ServiceURL      string
	ManagedIdentity bool
	ClientID        string
	Container       string // "" means DefaultContainer
	// ClientOptions go to the azblob client; a zero Retry means a short policy (3 retries, ≤1s apart).
	ClientOptions *azblob.ClientOptions
}

// String describes the options without secrets.
func (o BlobOptions) String() string {
	c := cmp.Or(o.Container, DefaultContainer)
	switch {
	case o.ConnectionString != "":
		ep := "account " + connValue(o.ConnectionString, "AccountName")
		if be := connValue(o.ConnectionString, "BlobEndpoint"); be != "" {
			ep = redactURL(be)
		}
		return fmt.Sprintf("blob %s, container %s, connection string", ep, c)
	case o.ServiceURL != "":
		auth := "default Azure credential"
		switch {
		case o.ManagedIdentity && o.ClientID != "":
			auth = "managed identity " + o.ClientID
		case o.ManagedIdentity:
			auth = "system-assigned managed identity"
		}
		return fmt.Sprintf("blob %s, container %s, %s", redactURL(o.ServiceURL), c, auth)
	}
	return "blob (not configured), container " + c
}

// GoString is String, so %#v does not print the connection string either.
func (o BlobOptions) GoString() string { return o.String() }

// LogValue implements slog.LogValuer.
func (o BlobOptions) LogValue() slog.Value { return slog.StringValue(o.String()) }

// ParseAzureWebJobsStorage reads the state store settings through env
// (os.Getenv in production): GUARD_STATE_CONTAINER and the Functions
// storage connection — AzureWebJobsStorage as a connection string
// (UseDevelopmentStorage=true means Azurite at 127.0.0.1:10000), or the
// identity-based AzureWebJobsStorage__blobServiceUri or
// AzureWebJobsStorage__accountName with optional
// AzureWebJobsStorage__credential=managedidentity and
// AzureWebJobsStorage__clientId. Errors name the setting, never its value.
func ParseAzureWebJobsStorage(env func(string) string) (BlobOptions, error) {
	var o BlobOptions
	o.Container = cmp.Or(strings.TrimSpace(env("GUARD_STATE_CONTAINER")), DefaultContainer)
	if err := validContainerName(o.Container); err != nil {
		return BlobOptions{}, fmt.Errorf("GUARD_STATE_CONTAINER: %w", err)
	}
	if cs := strings.TrimSpace(env("AzureWebJobsStorage")); cs != "" {
		if strings.EqualFold(connValue(cs, "UseDevelopmentStorage"), "true") {
			o.ConnectionString = developmentStorage
			return o, nil
		}
		if err := checkConnectionString(cs); err != nil {
			return BlobOptions{}, fmt.Errorf("AzureWebJobsStorage: %w", err)
		}
		o.ConnectionString = cs
		return o, nil
	}
	switch uri, acct := strings.TrimSpace(env("AzureWebJobsStorage__blobServiceUri")), strings.TrimSpace(env("AzureWebJobsStorage__accountName")); {
	case uri != "":
		if err := checkServiceURL(uri); err != nil {
			return BlobOptions{}, fmt.Errorf("AzureWebJobsStorage__blobServiceUri: %w", err)
		}
		o.ServiceURL = uri
	case acct != "":
		if !validAccountName(acct) {
			return BlobOptions{}, errors.New("AzureWebJobsStorage__accountName: not a storage account name (3-24 lower-case letters and digits)")
		}
		o.ServiceURL = "https://" + acct + ".blob.core.windows.net"
	default:
		return BlobOptions{}, errors.New("AzureWebJobsStorage: not set (need a connection string, or " +
			"AzureWebJobsStorage__blobServiceUri or AzureWebJobsStorage__accountName for identity-based access)")
	}
	switch cred := strings.TrimSpace(env("AzureWebJobsStorage__credential")); {
	case strings.EqualFold(cred, "managedidentity"):
		o.ManagedIdentity = true
		o.ClientID = strings.TrimSpace(env("AzureWebJobsStorage__clientId"))
	case cred == "":
		if env("AzureWebJobsStorage__clientId") != "" {
			return BlobOptions{}, errors.New("AzureWebJobsStorage__clientId is set but AzureWebJobsStorage__credential is not managedidentity")
		}
	default:
		return BlobOptions{}, errors.New("AzureWebJobsStorage__credential: unsupported value (only managedidentity)")
	}
	return o, nil
}

// connValue returns the value of key in a connection string (keys compared
// case-insensitively); values may contain '='.
func connValue(cs, key string) string {
	for part := range strings.SplitSeq(cs, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func checkConnectionString(cs string) error {
	bad := errors.New("not a usable storage connection string (need AccountName and AccountKey, " +
		"or SharedAccessSignature with AccountName or BlobEndpoint)")
	for part := range strings.SplitSeq(cs, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		if k, _, ok := strings.Cut(part, "="); !ok || strings.TrimSpace(k) == "" {
			return bad
		}
	}
	acct, key := connValue(cs, "AccountName"), connValue(cs, "AccountKey")
	sas, ep := connValue(cs, "SharedAccessSignature"), connValue(cs, "BlobEndpoint")
	switch {
	case acct != "" && key != "":
	case sas != "" && (acct != "" || ep != ""):
	default:
		return bad
	}
	if ep != "" {
		if err := checkServiceURL(ep); err != nil {
			return fmt.Errorf("BlobEndpoint: %w", err)
		}
	}
	return nil
}

// checkServiceURL requires https (http only to a loopback emulator) without
// credentials or a query.
func checkServiceURL(s string) error {
	u, err := resource.ParseEndpoint(s)
	if err == nil && (u.User != nil || u.RawQuery != "") {
		err = errors.New("must not carry credentials or a query")
	}
	return err
}

func validAccountName(s string) bool {
	if len(s) < 3 || len(s) > 24 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validContainerName applies the Blob Storage container naming rules.
func validContainerName(s string) error {
	if len(s) < 3 || len(s) > 63 {
		return errors.New("container name must be 3-63 characters")
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
		if !ok || (c == '-' && (i == 0 || i == len(s)-1 || s[i-1] == '-')) {
			return errors.New("container name must be lower-case letters, digits and single inner hyphens")
		}
	}
	return nil
}
