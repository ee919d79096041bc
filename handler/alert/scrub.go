package alert

import (
	"regexp"
	"strings"
	"unicode"
)

var (
	bearerRE = regexp.MustCompile(`(?i)(bearer\s+)[^\s"',]+`)
	paramRE  = regexp.MustCompile(`(?i)\b((?:sig|code|client_secret|access_token|refresh_token|id_token|password|secret|apikey|api_key|token|accountkey)=)[^&;\s"',]+`)
)

// MaxMessage bounds a scrubbed message, in bytes (before the ellipsis).
const MaxMessage = 512

// Scrub prepares a message that came from outside (an API error, Atlas's
// errorMessage) for an alert or a page: bearer tokens and secret-looking URL
// or connection-string parameters are redacted, control characters become
// spaces (no terminal escapes), and it is cut to MaxMessage bytes on a rune
// boundary.
func Scrub(msg string) string { return ScrubN(msg, MaxMessage) }

// ScrubN is Scrub with a bound of max bytes, for larger outside text (a
// quarantined payload).
func ScrubN(msg string, max int) string {
	if len(msg) > 2*max+64 {
		msg = msg[:2*max+64] // bound the work
	}
	msg = bearerRE.ReplaceAllString(msg, "${1}[redacted]")
	msg = paramRE.ReplaceAllString(msg, "${1}[redacted]")
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > max {
		msg = strings.ToValidUTF8(msg[:max], "") + "…" // valid after Map, but for a cut rune
	}
	return msg
}
