package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/messaging"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/azeventgrid"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
)

// maxEvents is the most events one publish request carries.
const maxEvents = 100

// EventGridOptions configures NewEventGrid.
type EventGridOptions struct {
	// Endpoint is the CloudEvents 1.0 custom topic endpoint (GUARD_ALERT_TOPIC_ENDPOINT); without a path it gets /api/events.
	Endpoint string
	// Key is the topic access key (GUARD_ALERT_TOPIC_KEY, a secret); when empty, Credential is used
	// (Entra ID, role "EventGrid Data Sender").
	Key        string
	Credential azcore.TokenCredential
	// ClientOptions go to the azeventgrid client; a zero Retry turns the SDK's retries off (wrap the sink in Retry).
	ClientOptions *azcore.ClientOptions
}

// EventGrid publishes each notice as a CloudEvent 1.0 to an Event Grid
// topic: id = notice ID, type = AtlasAkvGuard.Alert.<Action>, source =
// /atlas-akv-guard/projects/{projectId}, subject = the alert fingerprint,
// time = notice time, data = the alert JSON, plus the extension attributes
// alertkind and alertseverity (for subscription filters). One request per up
// to 100 notices.
type EventGrid struct {
	client   *azeventgrid.Client
	endpoint string // without query, for String
}

// CheckTopicEndpoint parses a topic endpoint (absolute https, no user info) into the publish URL: the path
// defaults to /api/events and the query is dropped (the client adds api-version).
func CheckTopicEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Scheme != "https" || u.User != nil {
		return nil, errors.New("topic endpoint must be an absolute https URL")
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/api/events"
	}
	u.RawQuery = ""
	return u, nil
}

// NewEventGrid builds the publisher client. Its errors never contain the key.
func NewEventGrid(opts EventGridOptions) (*EventGrid, error) {
	u, err := CheckTopicEndpoint(opts.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("eventgrid: %w", err)
	}
	co := azeventgrid.ClientOptions{}
	if opts.ClientOptions != nil {
		co.ClientOptions = *opts.ClientOptions
	}
	if r := co.Retry; r.MaxRetries == 0 && r.TryTimeout == 0 && r.RetryDelay == 0 && r.MaxRetryDelay == 0 && r.StatusCodes == nil && r.ShouldRetry == nil {
		co.Retry.MaxRetries = -1
		co.Retry.TryTimeout = 30 * time.Second
	}
	var client *azeventgrid.Client
	switch {
	case opts.Key != "":
		client, err = azeventgrid.NewClientWithSharedKeyCredential(u.String(), azcore.NewKeyCredential(opts.Key), &co)
	case opts.Credential != nil:
		client, err = azeventgrid.NewClient(u.String(), opts.Credential, &co)
	default:
		return nil, errors.New("eventgrid: need a topic key or a token credential")
	}
	if err != nil {
		return nil, fmt.Errorf("eventgrid: client: %w", err)
	}
	return &EventGrid{client: client, endpoint: u.Host + u.Path}, nil
}

// Name implements Sink.
func (*EventGrid) Name() string { return "eventgrid" }

// String describes the sink (topic host and path, no key).
func (e *EventGrid) String() string { return "eventgrid " + e.endpoint }

// Send implements Sink.
func (e *EventGrid) Send(ctx context.Context, notices []alert.Notice) error {
	for i := 0; i < len(notices); i += maxEvents {
		batch := notices[i:min(i+maxEvents, len(notices))]
		events := make([]messaging.CloudEvent, len(batch))
		for j, n := range batch {
			events[j] = CloudEvent(n)
		}
		if _, err := e.client.PublishCloudEvents(ctx, events, nil); err != nil {
			return partial(publishError(err), i)
		}
	}
	return nil
}

// CloudEvent maps a notice to the event the EventGrid sink publishes.
func CloudEvent(n alert.Notice) messaging.CloudEvent {
	source := "/" + Source
	if n.Alert.ProjectID != "" {
		source += "/projects/" + url.PathEscape(n.Alert.ProjectID)
	}
	ev := messaging.CloudEvent{
		ID:              n.ID,
		Source:          source,
		SpecVersion:     "1.0",
		Type:            EventType(n.Action),
		Data:            n.Alert,
		DataContentType: to.Ptr("application/json"),
		Extensions: map[string]any{
			"alertkind":     string(n.Alert.Kind),
			"alertseverity": string(n.Alert.Severity),
		},
	}
	if n.Alert.Fingerprint != "" {
		ev.Subject = to.Ptr(n.Alert.Fingerprint)
	}
	if !n.At.IsZero() {
		ev.Time = to.Ptr(n.At.UTC())
	}
	return ev
}

// EventType maps an action to its CloudEvent type:
// AtlasAkvGuard.Alert.Raised, .Escalated, .Reminder, .Resolved or .Audit.
func EventType(a alert.Action) string {
	if a == "" {
		return "AtlasAkvGuard.Alert"
	}
	return "AtlasAkvGuard.Alert." + strings.ToUpper(string(a[:1])) + string(a[1:])
}

// publishError classifies an azeventgrid error without quoting the request.
func publishError(err error) error {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		msg := fmt.Sprintf("publish failed: status %d", re.StatusCode)
		if t := http.StatusText(re.StatusCode); t != "" {
			msg += " (" + t + ")"
		}
		if re.ErrorCode != "" && re.ErrorCode != http.StatusText(re.StatusCode) {
			msg += " " + re.ErrorCode
		}
		var ra time.Duration
		if re.RawResponse != nil {
			ra = backoff.RetryAfter(re.RawResponse.Header.Get("Retry-After"), time.Now())
		}
		return failed(&SendError{Sink: "eventgrid", StatusCode: re.StatusCode, RetryAfter: ra, msg: msg, err: err})
	}
	if errors.As(err, new(*url.Error)) || errors.As(err, new(net.Error)) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return failed(&SendError{Sink: "eventgrid", msg: "publish failed: " + transportCause(err), err: err})
	}
	// Left: a pipeline failure before sending, most often the token credential. Its text is not
	// ours to vouch for (kept out of the message); the caller may still retry (managed identity recovers).
	return failed(&SendError{Sink: "eventgrid", msg: "publish failed: could not authenticate or build the request", err: err})
}
