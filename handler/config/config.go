// Package config reads every setting of the guard from the environment (the
// Function App's app settings) in one place, validates it, and fails fast with
// one line naming the bad setting. Secrets are Secret values that never print.
package config

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
)

// Secret is a setting that must never appear in logs, errors, alerts or
// status output: fmt, slog and encoding/json print "[redacted]" ("" when
// empty). Reveal returns the value for the one place that uses it.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

func (s Secret) GoString() string             { return strconv.Quote(s.String()) }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(s.String()) }
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }
func (s Secret) Reveal() string               { return string(s) }

// Atlas says how to reach the Atlas Admin API: a service account
// (ClientID+ClientSecret, preferred) or an API key (PublicKey+PrivateKey,
// HTTP digest).
type Atlas struct {
	BaseURL      string `json:"baseURL"`
	ClientID     string `json:"clientID,omitempty"`
	ClientSecret Secret `json:"clientSecret,omitempty"`
	PublicKey    string `json:"publicKey,omitempty"`
	PrivateKey   Secret `json:"privateKey,omitempty"`
}

// AppSecret says how the guard learns when the secret of the Azure
// application Atlas authenticates with (the EAR config's clientID) expires.
type AppSecret struct {
	// Expiry is GUARD_AZURE_APP_SECRET_EXPIRY by client id; the key "" holds
	// a bare date, which applies to every project. Dates are 00:00 UTC.
	Expiry map[string]time.Time `json:"expiry,omitempty"`
	// FromGraph: read the application's secrets from Microsoft Graph.
	FromGraph bool `json:"fromGraph"`
}

// Config is the guard's whole configuration. The zero value is not valid;
// use Load.
type Config struct {
	ProjectIDs []string `json:"projectIds"`
	Atlas      Atlas    `json:"atlas"`
	plan.Policy
	ReconcileTimeout time.Duration `json:"reconcileTimeout"`
	Concurrency      int           `json:"concurrency"`
	WebhookURL       Secret        `json:"webhookURL,omitempty"`
	WebhookFormat    notify.Format `json:"webhookFormat,omitempty"`
	TopicEndpoint    string        `json:"topicEndpoint,omitempty"`
	TopicKey         Secret        `json:"topicKey,omitempty"`
	AppSecret        AppSecret     `json:"appSecret"`
	// Storage is where the state lives (AzureWebJobsStorage and
	// GUARD_STATE_CONTAINER); zero when no storage setting is present.
	Storage     state.BlobOptions `json:"-"`
	ARMEndpoint string            `json:"armEndpoint,omitempty"`
	Port        int               `json:"port,omitempty"` // FUNCTIONS_CUSTOMHANDLER_PORT; 0 when unset
	LogLevel    slog.Level        `json:"logLevel"`
}

// StorageConfigured reports whether a state store is configured.
func (c Config) StorageConfigured() bool {
	return c.Storage.ConnectionString != "" || c.Storage.ServiceURL != ""
}

// Setting describes one app setting the guard or its host reads.
type Setting struct {
	Name, Default, Help string
	Secret              bool
	Host                bool // set by the Functions host itself, not by the deployment
}

// Settings lists every app setting, in the order of the README's table: Load
// takes the defaults from it, and the tests hold it equal to what Load reads,
// the README, local.settings.json.example and the Bicep.
func Settings() []Setting {
	return []Setting{
		{Name: "ATLAS_PROJECT_IDS", Help: "comma-separated Atlas project (group) ids to guard"},
		{Name: "ATLAS_CLIENT_ID", Help: "Atlas service account client id (preferred)"},
		{Name: "ATLAS_CLIENT_SECRET", Secret: true, Help: "Atlas service account secret"},
		{Name: "ATLAS_PUBLIC_KEY", Help: "Atlas API public key (digest), if no service account"},
		{Name: "ATLAS_PRIVATE_KEY", Secret: true, Help: "Atlas API private key"},
		{Name: "ATLAS_BASE_URL", Default: "https://cloud.mongodb.com", Help: "Atlas base URL (https)"},
		{Name: "GUARD_MODE", Default: string(plan.ModeEnforce), Help: "enforce (approve) or observe (never write to Azure)"},
		{Name: "GUARD_SCHEDULE", Default: "0 */1 * * * *", Help: "NCRONTAB schedule of the Reconcile timer (the host reads it)"},
		{Name: "GUARD_KEY_EXPIRY_WARN_DAYS", Default: "30", Help: "warn this many days before the key expires"},
		{Name: "GUARD_STUCK_AFTER", Default: "30m", Help: "an Atlas endpoint waiting longer than this is stuck"},
		{Name: "GUARD_RENOTIFY_AFTER", Default: "1h", Help: "re-notify open critical alerts after this (0 = never)"},
		{Name: "GUARD_RECONCILE_TIMEOUT", Default: "4m", Help: "deadline of one timer reconcile; keep it below functionTimeout"},
		{Name: "GUARD_CONCURRENCY", Default: "8", Help: "projects reconciled at once on the timer path"},
		{Name: "GUARD_AZURE_APP_SECRET_EXPIRY", Help: "when the Atlas application's secret expires: YYYY-MM-DD, or clientID=YYYY-MM-DD[,…]"},
		{Name: "GUARD_AZURE_APP_SECRET_FROM_GRAPH", Default: "false", Help: "read the Atlas application's secret expiry from Microsoft Graph (needs Application.Read.All)"},
		{Name: "GUARD_ALERT_WEBHOOK_URL", Secret: true, Help: "JSON POST of alerts (generic, Teams or Slack)"},
		{Name: "GUARD_ALERT_WEBHOOK_FORMAT", Default: "auto", Help: "auto, generic, teams or slack"},
		{Name: "GUARD_ALERT_TOPIC_ENDPOINT", Help: "Event Grid custom topic for alerts (CloudEvents)"},
		{Name: "GUARD_ALERT_TOPIC_KEY", Secret: true, Help: "topic access key; managed identity when unset"},
		{Name: "GUARD_STATE_CONTAINER", Default: "atlas-akv-guard", Help: "blob container for the guard's state"},
		{Name: "GUARD_ARM_ENDPOINT", Help: "ARM endpoint override (sovereign clouds, the simulator)"},
		{Name: "GUARD_LOG_LEVEL", Default: "info", Help: "debug, info, warn or error"},
		{Name: "AZURE_CLIENT_ID", Help: "client id of the user-assigned managed identity (read by azidentity)"},
		{Name: "AzureWebJobsStorage", Secret: true, Help: "storage connection string (or the identity-based AzureWebJobsStorage__* settings)"},
		{Name: "AzureWebJobsStorage__blobServiceUri", Help: "identity-based storage: blob service URI"},
		{Name: "AzureWebJobsStorage__accountName", Help: "identity-based storage: account name"},
		{Name: "AzureWebJobsStorage__credential", Help: "identity-based storage: managedidentity"},
		{Name: "AzureWebJobsStorage__clientId", Help: "identity-based storage: user-assigned identity client id"},
		{Name: "FUNCTIONS_CUSTOMHANDLER_PORT", Host: true, Help: "the port to listen on"},
	}
}

// Error names the setting that is wrong.
type Error struct{ Setting, Problem string }

func (e *Error) Error() string { return "config: " + e.Setting + ": " + e.Problem }

func bad(setting, format string, args ...any) error {
	return &Error{Setting: setting, Problem: fmt.Sprintf(format, args...)}
}

// Load reads and validates the configuration from env (os.Getenv in
// production). It returns the first problem as an *Error naming the setting.
func Load(env func(string) string) (Config, error) {
	defaults := map[string]string{}
	for _, s := range Settings() {
		defaults[s.Name] = s.Default
	}
	get := func(name string) string { return cmp.Or(strings.TrimSpace(env(name)), defaults[name]) }
	var c Config
	for _, read := range []func(func(string) string, *Config) error{readProjects, readAtlas, readPolicy, readSinks, readHost, readAppSecret} {
		if err := read(get, &c); err != nil {
			return Config{}, err
		}
	}
	var err error
	if c.Storage, err = readStorage(env); err != nil {
		return Config{}, err
	}
	return c, nil
}

var projectIDPattern = regexp.MustCompile(`^[0-9a-f]{24}$`)

// readProjects reads ATLAS_PROJECT_IDS: trimmed, de-duplicated, in order.
func readProjects(get func(string) string, c *Config) error {
	const name = "ATLAS_PROJECT_IDS"
	if get(name) == "" {
		return bad(name, "missing: set the comma-separated Atlas project ids to guard")
	}
	for _, id := range strings.Split(get(name), ",") {
		if id = strings.TrimSpace(id); id == "" || slices.Contains(c.ProjectIDs, id) {
			continue
		}
		if !projectIDPattern.MatchString(id) {
			return bad(name, "%q is not an Atlas project id (24 lower-case hex digits)", alert.ScrubN(id, 64))
		}
		c.ProjectIDs = append(c.ProjectIDs, id)
	}
	if len(c.ProjectIDs) == 0 {
		return bad(name, "no project id given")
	}
	return nil
}

// readAtlas reads the Atlas base URL and exactly one complete credential.
func readAtlas(get func(string) string, c *Config) error {
	c.Atlas = Atlas{
		BaseURL:      strings.TrimRight(get("ATLAS_BASE_URL"), "/"),
		ClientID:     get("ATLAS_CLIENT_ID"),
		ClientSecret: Secret(get("ATLAS_CLIENT_SECRET")),
		PublicKey:    get("ATLAS_PUBLIC_KEY"),
		PrivateKey:   Secret(get("ATLAS_PRIVATE_KEY")),
	}
	if err := httpsURL("ATLAS_BASE_URL", c.Atlas.BaseURL); err != nil {
		return err
	}
	for _, pair := range [][2]string{{"ATLAS_CLIENT_ID", "ATLAS_CLIENT_SECRET"}, {"ATLAS_PUBLIC_KEY", "ATLAS_PRIVATE_KEY"}} {
		if get(pair[0]) == "" && get(pair[1]) != "" {
			return bad(pair[0], "missing while %s is set", pair[1])
		} else if get(pair[0]) != "" && get(pair[1]) == "" {
			return bad(pair[1], "missing while %s is set", pair[0])
		}
	}
	if c.Atlas.ClientID == "" && c.Atlas.PublicKey == "" {
		return bad("ATLAS_CLIENT_ID", "no Atlas credentials: set ATLAS_CLIENT_ID and ATLAS_CLIENT_SECRET (service account) or ATLAS_PUBLIC_KEY and ATLAS_PRIVATE_KEY (API key)")
	}
	return nil
}

// readPolicy reads the mode, the thresholds and the concurrency.
func readPolicy(get func(string) string, c *Config) error {
	if c.Mode = plan.Mode(strings.ToLower(get("GUARD_MODE"))); c.Mode != plan.ModeEnforce && c.Mode != plan.ModeObserve {
		return bad("GUARD_MODE", "%q is neither enforce nor observe", alert.ScrubN(get("GUARD_MODE"), 64))
	}
	days, err := number(get, "GUARD_KEY_EXPIRY_WARN_DAYS", 0, 3650)
	if err != nil {
		return err
	}
	c.KeyExpiryWarn = time.Duration(days) * 24 * time.Hour
	for _, d := range []struct {
		setting string
		to      *time.Duration
		min     time.Duration
	}{{"GUARD_STUCK_AFTER", &c.StuckAfter, time.Minute}, {"GUARD_RENOTIFY_AFTER", &c.RenotifyAfter, 0}, {"GUARD_RECONCILE_TIMEOUT", &c.ReconcileTimeout, time.Second}} {
		v := get(d.setting)
		if *d.to, err = time.ParseDuration(v); v == "0" {
			*d.to, err = 0, nil
		}
		if err != nil || *d.to < d.min {
			return bad(d.setting, "%q is not a Go duration of at least %v (e.g. 30m, 1h)", alert.ScrubN(v, 64), d.min)
		}
	}
	c.Concurrency, err = number(get, "GUARD_CONCURRENCY", 1, 256)
	return err
}

// number reads setting as a whole number from min to max.
func number(get func(string) string, setting string, min, max int) (int, error) {
	n, err := strconv.Atoi(get(setting))
	if err != nil || n < min || n > max {
		return 0, bad(setting, "%q is not a whole number from %d to %d", alert.ScrubN(get(setting), 64), min, max)
	}
	return n, nil
}

// readSinks reads the optional webhook and Event Grid topic.
func readSinks(get func(string) string, c *Config) error {
	if c.WebhookURL = Secret(get("GUARD_ALERT_WEBHOOK_URL")); c.WebhookURL != "" {
		if _, err := notify.CheckWebhookURL(c.WebhookURL.Reveal()); err != nil {
			return badURL("GUARD_ALERT_WEBHOOK_URL", c.WebhookURL.Reveal(), err)
		}
	}
	var err error
	if c.WebhookFormat, err = notify.ParseFormat(get("GUARD_ALERT_WEBHOOK_FORMAT")); err != nil {
		return bad("GUARD_ALERT_WEBHOOK_FORMAT", "%v", err)
	}
	c.TopicEndpoint, c.TopicKey = get("GUARD_ALERT_TOPIC_ENDPOINT"), Secret(get("GUARD_ALERT_TOPIC_KEY"))
	if c.TopicEndpoint != "" {
		if _, err := notify.CheckTopicEndpoint(c.TopicEndpoint); err != nil {
			return badURL("GUARD_ALERT_TOPIC_ENDPOINT", c.TopicEndpoint, err)
		}
	} else if c.TopicKey != "" {
		return bad("GUARD_ALERT_TOPIC_ENDPOINT", "missing while GUARD_ALERT_TOPIC_KEY is set")
	}
	return nil
}

// readHost reads the ARM endpoint override, the port and the log level.
func readHost(get func(string) string, c *Config) (err error) {
	if c.ARMEndpoint = strings.TrimRight(get("GUARD_ARM_ENDPOINT"), "/"); c.ARMEndpoint != "" {
		if err := httpsURL("GUARD_ARM_ENDPOINT", c.ARMEndpoint); err != nil {
			return err
		}
	}
	if get("FUNCTIONS_CUSTOMHANDLER_PORT") != "" {
		if c.Port, err = number(get, "FUNCTIONS_CUSTOMHANDLER_PORT", 1, 65535); err != nil {
			return err
		}
	}
	if c.LogLevel.UnmarshalText([]byte(get("GUARD_LOG_LEVEL"))) != nil {
		return bad("GUARD_LOG_LEVEL", "%q is not debug, info, warn or error", alert.ScrubN(get("GUARD_LOG_LEVEL"), 64))
	}
	return nil
}

// readAppSecret reads GUARD_AZURE_APP_SECRET_EXPIRY (YYYY-MM-DD, or
// clientID=YYYY-MM-DD[,…]) and GUARD_AZURE_APP_SECRET_FROM_GRAPH (a bool).
func readAppSecret(get func(string) string, c *Config) (err error) {
	const exp, graph = "GUARD_AZURE_APP_SECRET_EXPIRY", "GUARD_AZURE_APP_SECRET_FROM_GRAPH"
	if c.AppSecret.FromGraph, err = strconv.ParseBool(get(graph)); err != nil {
		return bad(graph, "%q is not true or false", alert.ScrubN(get(graph), 64))
	}
	for _, item := range strings.Split(get(exp), ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		id, date, pair := strings.Cut(item, "=")
		if !pair {
			id, date = "", item
		}
		id = strings.TrimSpace(id)
		t, err := time.Parse(time.DateOnly, strings.TrimSpace(date))
		if _, dup := c.AppSecret.Expiry[id]; err != nil || pair && id == "" || dup {
			return bad(exp, "%q is not YYYY-MM-DD or clientID=YYYY-MM-DD, or its client id is given twice", alert.ScrubN(item, 64))
		}
		if c.AppSecret.Expiry == nil {
			c.AppSecret.Expiry = map[string]time.Time{}
		}
		c.AppSecret.Expiry[id] = t
	}
	return nil
}

// readStorage reads AzureWebJobsStorage (or its identity-based settings) and
// GUARD_STATE_CONTAINER; zero options when no storage setting is present.
func readStorage(env func(string) string) (state.BlobOptions, error) {
	opts, err := state.ParseAzureWebJobsStorage(env)
	if err == nil {
		return opts, nil
	}
	setting, problem, _ := strings.Cut(err.Error(), ": ")
	if strings.Contains(setting, " ") {
		setting, problem = "AzureWebJobsStorage", err.Error()
	}
	if v := env(setting); strings.Contains(setting, "Uri") && v != "" {
		problem = strings.ReplaceAll(problem, v, RedactURL(v))
	}
	if env("AzureWebJobsStorage") != "" || env("AzureWebJobsStorage__blobServiceUri") != "" ||
		env("AzureWebJobsStorage__accountName") != "" || setting == "GUARD_STATE_CONTAINER" {
		return state.BlobOptions{}, bad(setting, "%s", problem)
	}
	return state.BlobOptions{}, nil
}

func httpsURL(setting, v string) error {
	u, err := url.Parse(v)
	if err == nil && (u.Scheme != "https" || u.Host == "") {
		err = errors.New("not an https URL")
	}
	if err != nil {
		return badURL(setting, v, err)
	}
	return nil
}

// badURL is the one error about a URL setting: it shows the value as
// RedactURL does and the cause without the value (url.Parse quotes it).
func badURL(setting, v string, cause error) error {
	if ue := (*url.Error)(nil); errors.As(cause, &ue) {
		cause = ue.Err
	}
	msg := cause.Error()
	if v != "" {
		msg = strings.ReplaceAll(msg, v, "…")
	}
	return bad(setting, "%s: %s", RedactURL(v), msg)
}

// RedactURL returns v fit for a message: scheme and host only, with "…"
// where a path, user-info or query was (they may hold secrets: a webhook's
// path, a password, a SAS signature). A value that does not parse is not
// shown at all.
func RedactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.Opaque != "" || strings.ContainsAny(u.Host, "@ ") {
		return "(an unparsable URL, not shown)"
	}
	out := u.Host
	if u.User != nil {
		out = "…@" + out
	}
	if u.Scheme != "" {
		out = u.Scheme + "://" + out
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		out += "/…"
	}
	return strconv.Quote(out)
}

// WithLocalSettings returns an env lookup that prefers the process
// environment and falls back to the Values of a local.settings.json file, as
// Core Tools do. A missing file is an error.
func WithLocalSettings(path string, env func(string) string) (func(string) string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	var file struct{ Values map[string]string }
	if err = json.Unmarshal(data, &file); err == nil && file.Values == nil {
		err = errors.New("no Values")
	}
	if err != nil {
		return nil, fmt.Errorf("config: %s is not a local.settings.json: %w", path, err)
	}
	return func(name string) string { return cmp.Or(env(name), file.Values[name]) }, nil
}
