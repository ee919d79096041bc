package state

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

const (
	maxDocSize = 32 << 20 // how much of a document Get reads
	// writeIDKey tags each write with a random id, so a write whose response was lost and that the SDK
	// retried is recognised as ours, not reported as a conflict.
	writeIDKey = "guardwrite"
)

// Blob is a Store on an Azure Blob Storage container: one block blob per
// key, named by an escaping of the key (see names.go), with the document's
// JSON as content and If-Match / If-None-Match conditions on every write.
type Blob struct {
	name   string // for messages: host/path/container, no query
	client *container.Client
}

var _ Store = (*Blob)(nil)

// NewBlob connects to opts.Container (default DefaultContainer), creating it if missing, with the
// connection string when set, else a managed identity or default Azure credential against opts.ServiceURL.
func NewBlob(ctx context.Context, opts BlobOptions) (*Blob, error) {
	name := cmp.Or(opts.Container, DefaultContainer)
	if err := validContainerName(name); err != nil {
		return nil, fmt.Errorf("state: container %q: %w", name, err)
	}
	var copts azblob.ClientOptions
	if opts.ClientOptions != nil {
		copts = *opts.ClientOptions
	}
	if r := copts.Retry; r.MaxRetries == 0 && r.TryTimeout == 0 && r.RetryDelay == 0 && r.MaxRetryDelay == 0 && r.StatusCodes == nil && r.ShouldRetry == nil {
		// Short SDK retries: callers see an outage in about a second and retry at their level.
		copts.Retry = policy.RetryOptions{MaxRetries: 3, TryTimeout: 15 * time.Second, RetryDelay: 100 * time.Millisecond, MaxRetryDelay: time.Second}
	}
	var (
		svc *azblob.Client
		err error
	)
	switch {
	case opts.ConnectionString != "":
		if svc, err = azblob.NewClientFromConnectionString(opts.ConnectionString, &copts); err != nil {
			// The SDK's message may quote the connection string: don't wrap it.
			return nil, errors.New("state: storage connection string is malformed")
		}
	case opts.ServiceURL != "":
		var cred azcore.TokenCredential
		if opts.ManagedIdentity {
			mo := &azidentity.ManagedIdentityCredentialOptions{}
			if opts.ClientID != "" {
				mo.ID = azidentity.ClientID(opts.ClientID)
			}
			cred, err = azidentity.NewManagedIdentityCredential(mo)
		} else {
			cred, err = azidentity.NewDefaultAzureCredential(nil)
		}
		if err == nil {
			svc, err = azblob.NewClient(opts.ServiceURL, cred, &copts)
		}
		if err != nil {
			return nil, fmt.Errorf("state: blob service %s: %w", redactURL(opts.ServiceURL), err)
		}
	default:
		return nil, errors.New("state: no storage configured (need a connection string or a blob service URL)")
	}
	b := &Blob{
		name:   "blob " + redactURL(svc.URL()) + "/" + name,
		client: svc.ServiceClient().NewContainerClient(name),
	}
	if err := b.createContainer(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// String names the store (endpoint and container, never credentials).
func (b *Blob) String() string { return b.name }

func (b *Blob) createContainer(ctx context.Context) error {
	_, err := b.client.Create(ctx, nil)
	if err == nil || bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return nil
	}
	return b.fail("create-container", "", err)
}

// Get implements Store.
func (b *Blob) Get(ctx context.Context, key string) ([]byte, string, error) {
	if err := checkKey(key); err != nil {
		return nil, "", &Error{Store: b.name, Op: "get", Key: key, Err: err}
	}
	resp, err := b.client.NewBlockBlobClient(encodeKey(key)).DownloadStream(ctx, nil)
	if err != nil {
		if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
			return nil, "", &Error{Store: b.name, Op: "get", Key: key, Err: ErrNotFound}
		}
		return nil, "", b.fail("get", key, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDocSize+1))
	if err != nil {
		return nil, "", b.fail("get", key, err)
	}
	switch {
	case len(data) > maxDocSize:
		err = fmt.Errorf("document larger than %d bytes", maxDocSize)
	case resp.ETag == nil:
		err = errors.New("response without ETag")
	default:
		return data, string(*resp.ETag), nil
	}
	return nil, "", &Error{Store: b.name, Op: "get", Key: key, Err: err}
}

// Put implements Store.
func (b *Blob) Put(ctx context.Context, key string, data []byte, etag string, meta map[string]string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", &Error{Store: b.name, Op: "put", Key: key, Err: err}
	}
	md := map[string]*string{}
	for k, v := range meta {
		md[metaPrefix+k] = to.Ptr(url.QueryEscape(v)) // metadata values must be ASCII
	}
	tag, err := b.put(ctx, key, data, etag, md)
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		// Someone removed the container since NewBlob: recreate it once.
		if cerr := b.createContainer(ctx); cerr != nil {
			return "", cerr
		}
		tag, err = b.put(ctx, key, data, etag, md)
	}
	return tag, err
}

// metaPrefix keeps callers' metadata apart from writeIDKey.
const metaPrefix = "m"

func (b *Blob) put(ctx context.Context, key string, data []byte, etag string, md map[string]*string) (string, error) {
	id := rand.Text()
	md[writeIDKey] = to.Ptr(id)
	cond := &blob.ModifiedAccessConditions{}
	if etag == "" {
		cond.IfNoneMatch = to.Ptr(azcore.ETagAny)
	} else {
		cond.IfMatch = to.Ptr(azcore.ETag(etag))
	}
	bc := b.client.NewBlockBlobClient(encodeKey(key))
	resp, err := bc.Upload(ctx, streaming.NopCloser(bytes.NewReader(data)), &blockblob.UploadOptions{
		HTTPHeaders:      &blob.HTTPHeaders{BlobContentType: to.Ptr("application/json")},
		Metadata:         md,
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: cond},
	})
	if err == nil {
		if resp.ETag == nil {
			return "", &Error{Store: b.name, Op: "put", Key: key, Err: errors.New("response without ETag")}
		}
		return string(*resp.ETag), nil
	}
	if bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobAlreadyExists) ||
		(etag != "" && bloberror.HasCode(err, bloberror.BlobNotFound)) {
		// If the SDK retried a write that had succeeded, the stored blob
		// carries our write id: that is success, not a conflict.
		if props, perr := bc.GetProperties(ctx, nil); perr == nil && props.ETag != nil && metadata(props.Metadata, writeIDKey) == id {
			return string(*props.ETag), nil
		}
		return "", transient.Mark(&Error{Store: b.name, Op: "put", Key: key, Err: ErrConflict})
	}
	if bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return "", err // Put recreates the container and tries again
	}
	return "", b.fail("put", key, err)
}

// List implements Store.
func (b *Blob) List(ctx context.Context, prefix string) ([]Item, error) {
	items := []Item{}
	pager := b.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Prefix: to.Ptr(encodeKey(prefix)), Include: container.ListBlobsInclude{Metadata: true}})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if bloberror.HasCode(err, bloberror.ContainerNotFound) {
				return items, nil
			}
			return nil, b.fail("list", "", err)
		}
		for _, bi := range page.Segment.BlobItems {
			if bi.Name == nil {
				continue
			}
			k, ok := decodeKey(*bi.Name)
			if !ok || encodeKey(k) != *bi.Name {
				continue
			}
			it := Item{Key: k, Meta: map[string]string{}}
			for mk, mv := range bi.Metadata {
				name, ok := strings.CutPrefix(strings.ToLower(mk), metaPrefix)
				if v, err := url.QueryUnescape(deref(mv)); ok && err == nil && name != "" {
					it.Meta[name] = v
				}
			}
			items = append(items, it)
		}
	}
	slices.SortFunc(items, func(a, b Item) int { return strings.Compare(a.Key, b.Key) })
	return items, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// fail builds an *Error whose message carries no URL query (SAS) and no
// credential, marked transient when a retry may help (no response,
// timeouts, 408, 429, 5xx).
func (b *Blob) fail(op, key string, err error) error {
	e := &Error{Store: b.name, Op: op, Key: key, Err: err}
	var re *azcore.ResponseError
	switch {
	case errors.As(err, &re):
		e.cause = strings.TrimSpace(fmt.Sprintf("status %d %s", re.StatusCode, re.ErrorCode))
		if re.StatusCode == http.StatusRequestTimeout || re.StatusCode == http.StatusTooManyRequests || re.StatusCode >= 500 {
			return transient.Mark(e)
		}
	case errors.Is(err, context.Canceled):
		e.cause = "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		e.cause = "timed out"
		return transient.Mark(e)
	default:
		e.cause = "storage unreachable: " + networkCause(err)
		return transient.Mark(e)
	}
	return e
}

// networkCause describes a transport error without the request URL.
func networkCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Error()
	}
	msg := err.Error()
	if strings.Contains(msg, "://") || strings.Contains(msg, "sig=") {
		return "transport error"
	}
	return msg
}

func metadata(md map[string]*string, key string) string {
	for k, v := range md {
		if strings.EqualFold(k, key) && v != nil {
			return *v
		}
	}
	return ""
}

// redactURL returns host/path of u, without scheme, user info or query.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "(invalid URL)"
	}
	return p.Host + strings.TrimSuffix(p.EscapedPath(), "/")
}
