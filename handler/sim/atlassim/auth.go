package atlassim

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	digestRealm = "MMS Public API"
	nonceTTL    = 5 * time.Minute
	maxNonces   = 100_000
)

type token struct {
	clientID string
	expires  time.Time
}

type nonce struct {
	issued time.Time
	lastNC uint64
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc}) // RFC 6749 §5.2
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
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	s.mu.Lock()
	want, known := s.accounts[id]
	s.mu.Unlock()
	if !ok || err1 != nil || err2 != nil || !known || subtle.ConstantTimeCompare([]byte(want), []byte(secret)) != 1 {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "invalid client credentials (HTTP Basic is required)")
		return
	}
	tok := randomHex(32)
	s.locked(func() {
		now := s.now()
		for t, info := range s.tokens { // keep the map bounded
			if !now.Before(info.expires) {
				delete(s.tokens, t)
			}
		}
		s.tokens[tok] = token{clientID: id, expires: now.Add(s.tokenTTL)}
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": int64(s.tokenTTL.Seconds()), "token_type": "Bearer"}) // RFC 6749 §5.1
}

// authenticate checks a Bearer token or a Digest response. Without
// credentials (or with wrong ones) it answers 401 with a fresh Digest
// challenge, as Atlas does, and returns false.
func (s *Sim) authenticate(w http.ResponseWriter, r *http.Request) (principal string, ok bool) {
	scheme, rest, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if strings.EqualFold(scheme, "Bearer") {
		s.mu.Lock()
		info, found := s.tokens[strings.TrimSpace(rest)]
		found = found && s.now().Before(info.expires)
		s.mu.Unlock()
		if !found {
			writeError(w, http.StatusUnauthorized, "INVALID_OR_EXPIRED_TOKEN", "Invalid or expired access token.")
		}
		return info.clientID, found
	}
	stale := false
	if strings.EqualFold(scheme, "Digest") {
		user, st, err := s.verifyDigest(r, rest)
		if err == nil {
			return user, true
		}
		stale = st
	}
	// A 401 with a Digest challenge in Atlas's exact format.
	n := randomHex(16)
	s.locked(func() {
		now := s.now()
		if len(s.nonces) >= maxNonces/2 {
			for k, info := range s.nonces {
				if now.Sub(info.issued) > nonceTTL {
					delete(s.nonces, k)
				}
			}
		}
		if len(s.nonces) < maxNonces {
			s.nonces[n] = &nonce{issued: now}
		}
	})
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(
		`Digest realm="%s", domain="", nonce="%s", algorithm=MD5, qop="auth", stale=%t`, digestRealm, n, stale))
	writeError(w, http.StatusUnauthorized, "USER_UNAUTHORIZED", "You are not authorized for this resource.")
	return "", false
}

// digestParam is one RFC 7616 auth-param: key=token or key="quoted string".
var digestParam = regexp.MustCompile(`(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*(?:,|$)`)

// parseDigest splits `k=v, k="v", …` (RFC 7616 auth-params); anything else,
// or a repeated key, is an error.
func parseDigest(s string) (map[string]string, error) {
	out := map[string]string{}
	rest := strings.TrimSpace(s)
	for rest != "" {
		m := digestParam.FindStringSubmatchIndex(rest)
		if m == nil || m[0] != 0 {
			return nil, fmt.Errorf("malformed auth-param near %q", rest)
		}
		key, val := strings.ToLower(rest[m[2]:m[3]]), ""
		if m[4] >= 0 {
			val = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(rest[m[4]:m[5]])
		} else {
			val = rest[m[6]:m[7]]
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("duplicate %s", key)
		}
		out[key], rest = val, strings.TrimSpace(rest[m[1]:])
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
	for _, k := range []string{"username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"} {
		if p[k] == "" {
			return "", false, fmt.Errorf("missing %s", k)
		}
	}
	nc, err := strconv.ParseUint(p["nc"], 16, 32)
	user = p["username"]
	s.mu.Lock()
	private, known := s.apiKeys[user]
	s.mu.Unlock()
	switch {
	case p["algorithm"] != "" && !strings.EqualFold(p["algorithm"], "MD5"):
		return "", false, errors.New("unsupported algorithm")
	case p["qop"] != "auth", p["realm"] != digestRealm, p["uri"] != r.RequestURI:
		return "", false, errors.New("wrong qop, realm or uri")
	case err != nil || len(p["nc"]) != 8 || nc == 0:
		return "", false, errors.New("malformed nc")
	case !known:
		return "", false, errors.New("unknown user")
	}
	ha1 := md5hex(user + ":" + digestRealm + ":" + private)
	ha2 := md5hex(r.Method + ":" + p["uri"])
	want := md5hex(strings.Join([]string{ha1, p["nonce"], p["nc"], p["cnonce"], p["qop"], ha2}, ":"))
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(p["response"]))) != 1 {
		return "", false, errors.New("wrong response")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nonces[p["nonce"]]
	if n == nil || s.now().Sub(n.issued) > nonceTTL {
		delete(s.nonces, p["nonce"])
		return "", true, errors.New("unknown or expired nonce")
	}
	if nc <= n.lastNC {
		return "", false, errors.New("replayed nonce count")
	}
	n.lastNC = nc
	return user, false, nil
}
