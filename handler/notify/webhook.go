package notify

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// Format is the shape of webhook payloads.
type Format string

const (
	// FormatAuto picks Teams or Slack from the URL's host, else generic.
	FormatAuto    Format = "auto"
	FormatGeneric Format = "generic"
	FormatTeams   Format = "teams"
	FormatSlack   Format = "slack"
)

// ParseFormat accepts "", auto, generic, teams and slack (any case).
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "":
		return FormatAuto, nil
	case FormatAuto, FormatGeneric, FormatTeams, FormatSlack:
		return f, nil
	}
	return "", fmt.Errorf("unknown webhook format %q (want auto, generic, teams or slack)", s)
}

// MaxBatch is the most notices one generic webhook POST carries; larger
// batches are sent as several POSTs.
const MaxBatch = 50

// maxResponse bounds how much of a webhook response is read.
const maxResponse = 16 << 10

// WebhookOptions configures NewWebhook.
type WebhookOptions struct {
	// URL is the webhook (GUARD_ALERT_WEBHOOK_URL), a secret kept out of errors and String: https, or http to loopback.
	URL       string
	Format    Format            // "" or FormatAuto detects it
	Transport http.RoundTripper // default http.DefaultTransport
	Timeout   time.Duration     // per POST, default 10s
}

// Webhook posts notices as JSON.
//
// Generic: one POST per batch of up to MaxBatch notices,
// {"source":"atlas-akv-guard","notices":[notice…]} where each notice is the
// alert.Notice JSON ({id, action, at, alert{…}}).
// Teams and Slack: one POST per notice (one chat message per alert; an
// Adaptive Card message for Teams, text plus Block Kit blocks for Slack).
// Any 2xx answer is success; redirects are not followed.
type Webhook struct {
	url    string
	format Format
	client *http.Client
	secret []string // strings to scrub from response excerpts
}

// NewWebhook validates the options. Its errors never contain the URL.
func NewWebhook(opts WebhookOptions) (*Webhook, error) {
	u, err := CheckWebhookURL(opts.URL)
	f, ferr := ParseFormat(string(opts.Format))
	if err = cmp.Or(err, ferr); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	if f == FormatAuto {
		f = DetectFormat(u)
	}
	secret := []string{opts.URL}
	if p := u.EscapedPath(); len(p) > 1 {
		secret = append(secret, p, u.Path)
	}
	if u.RawQuery != "" {
		secret = append(secret, u.RawQuery)
		for _, vs := range u.Query() {
			for _, v := range vs {
				if len(v) >= 8 {
					secret = append(secret, v)
				}
			}
		}
	}
	return &Webhook{url: opts.URL, format: f, secret: secret, client: &http.Client{
		Transport: opts.Transport, Timeout: cmp.Or(max(opts.Timeout, 0), 10*time.Second),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// CheckWebhookURL parses a webhook URL (GUARD_ALERT_WEBHOOK_URL): https, or
// http to a loopback address. Its errors never repeat the URL, a secret.
func CheckWebhookURL(raw string) (*url.URL, error) { return resource.ParseEndpoint(raw) }

// DetectFormat maps a webhook URL to its format: Teams for
// *.webhook.office.com (connectors) and Workflows URLs (*.logic.azure.com,
// *.powerplatform.com), Slack for hooks.slack.com, generic otherwise.
func DetectFormat(u *url.URL) Format {
	h := strings.ToLower(u.Hostname())
	switch {
	case h == "hooks.slack.com":
		return FormatSlack
	case strings.HasSuffix(h, ".webhook.office.com"), strings.HasSuffix(h, ".logic.azure.com"),
		strings.HasSuffix(h, ".powerplatform.com"), strings.HasSuffix(h, ".powerautomate.com"):
		return FormatTeams
	}
	return FormatGeneric
}

// Name implements Sink.
func (*Webhook) Name() string { return "webhook" }

// String describes the sink without its URL.
func (w *Webhook) String() string { return "webhook (" + string(w.format) + ")" }

// Send implements Sink.
func (w *Webhook) Send(ctx context.Context, notices []alert.Notice) error {
	switch w.format {
	case FormatTeams, FormatSlack:
		for i, n := range notices {
			var body any = SlackMessage(n)
			if w.format == FormatTeams {
				body = TeamsMessage(n)
			}
			if err := w.post(ctx, body); err != nil {
				return partial(err, i)
			}
		}
	default:
		for i := 0; i < len(notices); i += MaxBatch {
			batch := notices[i:min(i+MaxBatch, len(notices))]
			if err := w.post(ctx, Generic{Source: Source, Notices: batch}); err != nil {
				return partial(err, i)
			}
		}
	}
	return nil
}

func (w *Webhook) post(ctx context.Context, payload any) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return &SendError{Sink: "webhook", msg: "encode payload: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return &SendError{Sink: "webhook", msg: "build request failed"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "atlas-akv-guard")
	resp, err := w.client.Do(req)
	if err != nil {
		return failed(&SendError{Sink: "webhook", msg: "POST failed: " + transportCause(err), err: err})
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse)) // let the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	msg := fmt.Sprintf("POST failed: status %d", resp.StatusCode)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg += " (redirect refused)"
	} else if s := w.scrub(excerpt); s != "" {
		msg += ": " + s
	}
	return failed(&SendError{
		Sink:       "webhook",
		StatusCode: resp.StatusCode,
		RetryAfter: backoff.RetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		msg:        msg,
	})
}

// scrub turns a response body into a short single-line excerpt without the
// URL or its parts.
func (w *Webhook) scrub(b []byte) string {
	s := string(b)
	for _, sec := range w.secret {
		s = strings.ReplaceAll(s, sec, "[redacted]")
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
