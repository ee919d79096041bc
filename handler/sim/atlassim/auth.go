package atlassim

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

var splitHostPort = net.SplitHostPort

// tokenJSON is the OAuth 2.0 access token response (RFC 6749 §5.1).
type tokenJSON struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
	TokenType   string `json:"token_type"`
}

// oauthErrorJSON is the OAuth 2.0 error response (RFC 6749 §5.2).
type oauthErrorJSON struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, oauthErrorJSON{Error: code, ErrorDescription: desc})
}

// handleToken is POST /api/oauth/token: grant_type=client_credentials with
// the client authenticated by HTTP Basic (form-urlencoded id and secret, as
// RFC 6749 §2.3.1 says). Credentials in the body are not accepted.
func (s *Sim) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "only client_credentials is supported")
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication with HTTP Basic is required")
		return
	}
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	s.mu.Lock()
	want, known := s.accounts[id]
	s.mu.Unlock()
	if err1 != nil || err2 != nil || !known || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "invalid client credentials")
		return
	}
	tok := randomToken(32)
	s.mu.Lock()
	now := s.now()
	for t, info := range s.tokens { // keep the map bounded
		if !now.Before(info.expires) {
			delete(s.tokens, t)
		}
	}
	s.tokens[tok] = tokenInfo{clientID: id, expires: now.Add(s.tokenTTL)}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenJSON{AccessToken: tok, ExpiresIn: int64(s.tokenTTL.Seconds()), TokenType: "Bearer"})
}

// authenticate checks a Bearer token or a Digest response. Without
// credentials (or with wrong ones) it answers 401 with a fresh Digest
// challenge, as Atlas does, and returns false.
func (s *Sim) authenticate(w http.ResponseWriter, r *http.Request) (principal string, ok bool) {
	a := r.Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(a, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		tok := strings.TrimSpace(rest)
		s.mu.Lock()
		info, found := s.tokens[tok]
		expired := found && !s.now().Before(info.expires)
		if expired {
			delete(s.tokens, tok)
		}
		s.mu.Unlock()
		if !found || expired {
			writeError(w, http.StatusUnauthorized, "INVALID_OR_EXPIRED_TOKEN", "Invalid or expired access token.")
			return "", false
		}
		return info.clientID, true
	case strings.EqualFold(scheme, "Digest"):
		user, stale, err := s.verifyDigest(r, rest)
		if err == nil {
			return user, true
		}
		s.challenge(w, stale)
		return "", false
	default:
		s.challenge(w, false)
		return "", false
	}
}

// challenge answers 401 with a Digest challenge in Atlas's exact format.
func (s *Sim) challenge(w http.ResponseWriter, stale bool) {
	nonce := randomToken(16)
	s.mu.Lock()
	now := s.now()
	if len(s.nonces) >= maxNonces/2 {
		for n, info := range s.nonces {
			if now.Sub(info.issued) > nonceTTL {
				delete(s.nonces, n)
			}
		}
	}
	if len(s.nonces) < maxNonces {
		s.nonces[nonce] = &nonceInfo{issued: now}
	}
	s.mu.Unlock()
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(
		`Digest realm="%s", domain="", nonce="%s", algorithm=MD5, qop="auth", stale=%t`, digestRealm, nonce, stale))
	writeError(w, http.StatusUnauthorized, "USER_UNAUTHORIZED", "You are not authorized for this resource.")
}

// parseDigest splits `k=v, k="v", …` (RFC 7616 auth-params).
func parseDigest(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("malformed auth-param near %q", s)
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimSpace(s[eq+1:])
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated quoted string for %s", key)
			}
			val, s = b.String(), s[i+1:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("duplicate %s", key)
		}
		out[key] = val
		s = strings.TrimSpace(s)
		s = strings.TrimPrefix(s, ",")
		s = strings.TrimSpace(s)
	}
	return out, nil
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s)) //nolint:gosec // HTTP Digest as Atlas speaks it
	return hex.EncodeToString(sum[:])
}

// verifyDigest checks an RFC 7616 MD5/qop=auth response: known user, our
// realm, a nonce we issued that hasn't expired, a nonce count above the last
// one seen for it (no replay), the request's own URI and method, and the
// response hash. stale reports an unknown or expired nonce with otherwise
// plausible credentials.
func (s *Sim) verifyDigest(r *http.Request, params string) (user string, stale bool, err error) {
	p, err := parseDigest(params)
	if err != nil {
		return "", false, err
	}
	user = p["username"]
	for _, k := range []string{"username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"} {
		if p[k] == "" {
			return "", false, fmt.Errorf("missing %s", k)
		}
	}
	if alg := p["algorithm"]; alg != "" && !strings.EqualFold(alg, "MD5") {
		return "", false, fmt.Errorf("unsupported algorithm %s", alg)
	}
	if p["qop"] != "auth" {
		return "", false, fmt.Errorf("unsupported qop %s", p["qop"])
	}
	if p["realm"] != digestRealm {
		return "", false, fmt.Errorf("wrong realm")
	}
	if p["uri"] != r.RequestURI {
		return "", false, fmt.Errorf("uri does not match the request")
	}
	nc, err := strconv.ParseUint(p["nc"], 16, 32)
	if err != nil || len(p["nc"]) != 8 || nc == 0 {
		return "", false, fmt.Errorf("malformed nc")
	}
	s.mu.Lock()
	private, known := s.apiKeys[user]
	s.mu.Unlock()
	if !known {
		return "", false, fmt.Errorf("unknown user")
	}
	ha1 := md5hex(user + ":" + digestRealm + ":" + private)
	ha2 := md5hex(r.Method + ":" + p["uri"])
	want := md5hex(strings.Join([]string{ha1, p["nonce"], p["nc"], p["cnonce"], p["qop"], ha2}, ":"))
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(p["response"]))) != 1 {
		return "", false, fmt.Errorf("wrong response")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nonces[p["nonce"]]
	if n == nil || s.now().Sub(n.issued) > nonceTTL {
		delete(s.nonces, p["nonce"])
		return "", true, fmt.Errorf("unknown or expired nonce")
	}
	if nc <= n.lastNC {
		return "", false, fmt.Errorf("replayed nonce count")
	}
	n.lastNC = nc
	return user, false, nil
}
