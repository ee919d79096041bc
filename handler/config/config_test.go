package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/config"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
)

const (
	project = "5f1e2d3c4b5a697887766554"
	secret  = "sk-very-secret-value"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func base() map[string]string {
	return map[string]string{
		"ATLAS_PROJECT_IDS":   project,
		"ATLAS_CLIENT_ID":     "mdb_sa_id_1",
		"ATLAS_CLIENT_SECRET": secret,
	}
}

func with(kv ...string) map[string]string {
	m := base()
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestDefaultsAndValues(t *testing.T) {
	c, err := config.Load(env(base()))
	want := config.Config{
		ProjectIDs:       []string{project},
		Atlas:            config.Atlas{BaseURL: "https://cloud.mongodb.com", ClientID: "mdb_sa_id_1", ClientSecret: secret},
		Policy:           plan.Policy{Mode: plan.ModeEnforce, KeyExpiryWarn: 30 * 24 * time.Hour, StuckAfter: 30 * time.Minute, RenotifyAfter: time.Hour},
		ReconcileTimeout: 4 * time.Minute,
		Concurrency:      8, WebhookFormat: notify.FormatAuto, LogLevel: slog.LevelInfo,
	}
	if err != nil || c.StorageConfigured() || fmt.Sprintf("%#v", c) != fmt.Sprintf("%#v", want) {
		t.Fatalf("defaults (%v):\n got %#v\nwant %#v", err, c, want)
	}
	c, err = config.Load(env(with(
		"ATLAS_PROJECT_IDS", " "+project+", 6a7b8c9d0e1f203142536475 ,"+project,
		"ATLAS_CLIENT_ID", "", "ATLAS_CLIENT_SECRET", "", "ATLAS_PUBLIC_KEY", "abcdefgh", "ATLAS_PRIVATE_KEY", secret,
		"ATLAS_BASE_URL", "https://atlas.example.test/", "GUARD_MODE", "OBSERVE", "GUARD_KEY_EXPIRY_WARN_DAYS", "7",
		"GUARD_STUCK_AFTER", "45m", "GUARD_RENOTIFY_AFTER", "0", "GUARD_CONCURRENCY", "3",
		"GUARD_ALERT_WEBHOOK_URL", "http://127.0.0.1:9999/hook", "GUARD_ALERT_TOPIC_ENDPOINT", "https://topic.westeurope-1.eventgrid.azure.net/api/events",
		"AzureWebJobsStorage__blobServiceUri", "https://acct.blob.core.windows.net", "GUARD_ARM_ENDPOINT", "https://127.0.0.1:8443/",
		"FUNCTIONS_CUSTOMHANDLER_PORT", "7071", "GUARD_LOG_LEVEL", "debug",
		"GUARD_AZURE_APP_SECRET_EXPIRY", "app-1=2027-01-31, 2026-12-01", "GUARD_AZURE_APP_SECRET_FROM_GRAPH", "true",
	)))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []struct {
		name      string
		got, want any
	}{
		{"project ids (trimmed, de-duplicated, in order)", strings.Join(c.ProjectIDs, ","), project + ",6a7b8c9d0e1f203142536475"},
		{"API key", c.Atlas.PublicKey + " " + c.Atlas.PrivateKey.Reveal(), "abcdefgh " + secret},
		{"base url", c.Atlas.BaseURL, "https://atlas.example.test"},
		{"mode", c.Mode, plan.ModeObserve},
		{"warn", c.KeyExpiryWarn, 7 * 24 * time.Hour},
		{"stuck", c.StuckAfter, 45 * time.Minute},
		{"renotify", c.RenotifyAfter, time.Duration(0)},
		{"concurrency", c.Concurrency, 3},
		{"arm", c.ARMEndpoint, "https://127.0.0.1:8443"},
		{"port", c.Port, 7071},
		{"log level", c.LogLevel, slog.LevelDebug},
		{"storage uri", c.Storage.ServiceURL, "https://acct.blob.core.windows.net"},
		{"app secret", fmt.Sprintln(len(c.AppSecret.Expiry), c.AppSecret.Expiry["app-1"].Format(time.DateOnly), c.AppSecret.Expiry[""].Format(time.DateOnly), c.AppSecret.FromGraph), "2 2027-01-31 2026-12-01 true\n"},
	} {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestBadSettingsNameTheSetting(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		setting string
	}{
		{"missing projects", with("ATLAS_PROJECT_IDS", ""), "ATLAS_PROJECT_IDS"},
		{"only commas", with("ATLAS_PROJECT_IDS", ", ,"), "ATLAS_PROJECT_IDS"},
		{"malformed project", with("ATLAS_PROJECT_IDS", "not-a-project"), "ATLAS_PROJECT_IDS"},
		{"upper-case project", with("ATLAS_PROJECT_IDS", strings.ToUpper(project)), "ATLAS_PROJECT_IDS"},
		{"no credentials", with("ATLAS_CLIENT_ID", "", "ATLAS_CLIENT_SECRET", ""), "ATLAS_CLIENT_ID"},
		{"secret without id", with("ATLAS_CLIENT_ID", ""), "ATLAS_CLIENT_ID"},
		{"id without secret", with("ATLAS_CLIENT_SECRET", ""), "ATLAS_CLIENT_SECRET"},
		{"public without private", with("ATLAS_PUBLIC_KEY", "abc"), "ATLAS_PRIVATE_KEY"},
		{"private without public", with("ATLAS_PRIVATE_KEY", secret), "ATLAS_PUBLIC_KEY"},
		{"http base url", with("ATLAS_BASE_URL", "http://cloud.mongodb.com"), "ATLAS_BASE_URL"},
		{"bad mode", with("GUARD_MODE", "approve-all"), "GUARD_MODE"},
		{"bad days", with("GUARD_KEY_EXPIRY_WARN_DAYS", "thirty"), "GUARD_KEY_EXPIRY_WARN_DAYS"},
		{"negative days", with("GUARD_KEY_EXPIRY_WARN_DAYS", "-1"), "GUARD_KEY_EXPIRY_WARN_DAYS"},
		{"bad duration", with("GUARD_STUCK_AFTER", "half an hour"), "GUARD_STUCK_AFTER"},
		{"bad secret date", with("GUARD_AZURE_APP_SECRET_EXPIRY", "2027-13-01"), "GUARD_AZURE_APP_SECRET_EXPIRY"},
		{"secret date without id", with("GUARD_AZURE_APP_SECRET_EXPIRY", "a=2027-01-01,=2027-02-01"), "GUARD_AZURE_APP_SECRET_EXPIRY"},
		{"secret id twice", with("GUARD_AZURE_APP_SECRET_EXPIRY", "a=2027-01-01, a=2027-02-01"), "GUARD_AZURE_APP_SECRET_EXPIRY"},
		{"bad graph flag", with("GUARD_AZURE_APP_SECRET_FROM_GRAPH", "yes please"), "GUARD_AZURE_APP_SECRET_FROM_GRAPH"},
		{"too short duration", with("GUARD_STUCK_AFTER", "5s"), "GUARD_STUCK_AFTER"},
		{"bad renotify", with("GUARD_RENOTIFY_AFTER", "-1h"), "GUARD_RENOTIFY_AFTER"},
		{"bad timeout", with("GUARD_RECONCILE_TIMEOUT", "10ms"), "GUARD_RECONCILE_TIMEOUT"},
		{"bad concurrency", with("GUARD_CONCURRENCY", "0"), "GUARD_CONCURRENCY"},
		{"webhook not https", with("GUARD_ALERT_WEBHOOK_URL", "http://hooks.example.com/"+secret), "GUARD_ALERT_WEBHOOK_URL"},
		{"webhook format", with("GUARD_ALERT_WEBHOOK_FORMAT", "xml"), "GUARD_ALERT_WEBHOOK_FORMAT"},
		{"topic key without endpoint", with("GUARD_ALERT_TOPIC_KEY", secret), "GUARD_ALERT_TOPIC_ENDPOINT"},
		{"topic not a url", with("GUARD_ALERT_TOPIC_ENDPOINT", "::"), "GUARD_ALERT_TOPIC_ENDPOINT"},
		{"topic over http", with("GUARD_ALERT_TOPIC_ENDPOINT", "http://127.0.0.1:8443/api/events"), "GUARD_ALERT_TOPIC_ENDPOINT"},
		{"container", with("GUARD_STATE_CONTAINER", "Bad_Name"), "GUARD_STATE_CONTAINER"},
		{"container double hyphen", with("GUARD_STATE_CONTAINER", "a--b"), "GUARD_STATE_CONTAINER"},
		{"storage connection", with("AzureWebJobsStorage", "garbage"), "AzureWebJobsStorage"},
		{"storage credential", with("AzureWebJobsStorage__blobServiceUri", "https://a.blob.core.windows.net", "AzureWebJobsStorage__credential", "password"), "AzureWebJobsStorage__credential"},
		{"arm endpoint", with("GUARD_ARM_ENDPOINT", "http://management.azure.com"), "GUARD_ARM_ENDPOINT"},
		{"port", with("FUNCTIONS_CUSTOMHANDLER_PORT", "70000"), "FUNCTIONS_CUSTOMHANDLER_PORT"},
		// URL settings never echo user-info, path or query.
		{"base url with user-info", with("ATLAS_BASE_URL", "http://admin:"+secret+"@cloud.mongodb.com/?key="+secret), "ATLAS_BASE_URL"},
		{"arm endpoint unparsable", with("GUARD_ARM_ENDPOINT", "https://u:"+secret+"@arm.example/%zz"), "GUARD_ARM_ENDPOINT"},
		{"topic with query", with("GUARD_ALERT_TOPIC_ENDPOINT", "http://u:"+secret+"@t.example/api/events?code="+secret), "GUARD_ALERT_TOPIC_ENDPOINT"},
		{"webhook unparsable", with("GUARD_ALERT_WEBHOOK_URL", "https://hooks.example.com/"+secret+"/%zz"), "GUARD_ALERT_WEBHOOK_URL"},
		{"storage uri with sas", with("AzureWebJobsStorage__blobServiceUri", "http://a.blob.core.windows.net/?sig="+secret), "AzureWebJobsStorage__blobServiceUri"},
		{"log level", with("GUARD_LOG_LEVEL", "loud"), "GUARD_LOG_LEVEL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(env(tc.env))
			var ce *config.Error
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.As(err, &ce) || ce.Setting != tc.setting {
				t.Fatalf("error %q does not name %s", err, tc.setting)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "config: "+tc.setting+": ") {
				t.Errorf("want one line starting with the setting, got %q", msg)
			}
			if strings.Contains(msg, secret) {
				t.Errorf("error leaks a secret: %q", msg)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://cloud.mongodb.com":                 `"https://cloud.mongodb.com"`,
		"https://u:p@h.example:8443/x?sig=s#f":      `"https://…@h.example:8443/…"`,
		"https://hooks.slack.com/services/T/B/XXXX": `"https://hooks.slack.com/…"`,
		"https://h/%zz":                             `(an unparsable URL, not shown)`,
		"mailto:someone@example.com":                `(an unparsable URL, not shown)`,
	} {
		if got := config.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	c, err := config.Load(env(with(
		"ATLAS_PUBLIC_KEY", "pub", "ATLAS_PRIVATE_KEY", secret+"-private",
		"GUARD_ALERT_WEBHOOK_URL", "https://hooks.slack.com/services/"+secret+"-hook",
		"GUARD_ALERT_TOPIC_ENDPOINT", "https://t.example.test/api/events",
		"GUARD_ALERT_TOPIC_KEY", secret+"-topic",
		"AzureWebJobsStorage", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey="+secret+"-storage",
	)))
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", c, "secret", c.Atlas.ClientSecret)
	j, _ := json.Marshal(c)
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", c),
		"%+v":  fmt.Sprintf("%+v", c),
		"%#v":  fmt.Sprintf("%#v", c),
		"%s":   fmt.Sprintf("%s", c.WebhookURL),
		"json": string(j),
		"slog": logged.String(),
	}
	for how, out := range outputs {
		if strings.Contains(out, secret) {
			t.Errorf("%s output leaks a secret: %s", how, out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s output does not show the redaction: %s", how, out)
		}
	}
	if c.TopicKey.Reveal() != secret+"-topic" {
		t.Error("Reveal does not return the secret")
	}
}

func TestSettingsCoverEveryNameLoadReads(t *testing.T) {
	read := map[string]bool{}
	identity := with("AzureWebJobsStorage__blobServiceUri", "https://a.blob.core.windows.net", "AzureWebJobsStorage__credential", "managedidentity")
	for _, m := range []map[string]string{base(), identity} {
		config.Load(func(k string) string { read[k] = true; return m[k] })
	}
	listed := map[string]bool{}
	for _, s := range config.Settings() {
		if listed[s.Name] {
			t.Errorf("%s listed twice", s.Name)
		}
		listed[s.Name] = true
		if s.Secret && s.Default != "" {
			t.Errorf("secret %s has a default", s.Name)
		}
	}
	for name := range read {
		if !listed[name] {
			t.Errorf("Load reads %s, which Settings does not list", name)
		}
	}
	for name := range listed {
		if !read[name] && name != "GUARD_SCHEDULE" && name != "AZURE_CLIENT_ID" { // the host's; azidentity's
			t.Errorf("Settings lists %s, which Load never reads", name)
		}
	}
}

// TestLocalSettingsExample: the example loads (the environment wins over
// it), and it and the README name every setting an operator sets.
func TestLocalSettingsExample(t *testing.T) {
	path := filepath.Join("..", "..", "local.settings.json.example")
	lookup, err := config.WithLocalSettings(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c, err := config.Load(lookup); err != nil || c.Mode != plan.ModeObserve || len(c.ProjectIDs) != 2 || !c.StorageConfigured() {
		t.Errorf("the example settings load as %+v, %v", c, err)
	}
	over, _ := config.WithLocalSettings(path, env(map[string]string{"GUARD_MODE": "enforce"}))
	if c, _ := config.Load(over); c.Mode != plan.ModeEnforce {
		t.Error("environment does not override local.settings.json")
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"Values": 3}`), 0o600)
	if _, err := config.WithLocalSettings(bad, os.Getenv); err == nil {
		t.Error("malformed local.settings.json accepted")
	}
	example, err1 := os.ReadFile(path)
	readme, err2 := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	for _, s := range config.Settings() {
		if s.Name == "FUNCTIONS_CUSTOMHANDLER_PORT" {
			continue // the host's, not the operator's
		}
		if !strings.HasPrefix(s.Name, "AzureWebJobsStorage__") && !strings.Contains(string(example), `"`+s.Name+`"`) {
			t.Errorf("local.settings.json.example lacks %s", s.Name)
		}
		if !strings.Contains(string(readme), strings.TrimPrefix(s.Name, "AzureWebJobsStorage__")) {
			t.Errorf("README's configuration table does not mention %s", s.Name)
		}
	}
}
