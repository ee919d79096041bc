package event

import (
	"encoding/json"
	"unicode/utf8"
)

// A fast path for the two steps every invocation takes: splitting the host
// envelope (DecodeInvocation) and unquoting a string-wrapped event (unwrap).
// encoding/json validates its whole input before decoding it, so each
// json.Unmarshal of a nested json.RawMessage re-reads the same bytes; these
// helpers validate and split in one pass. They are conservative: on anything
// they do not handle exactly like encoding/json (escapes in object keys, \u
// escapes in strings, invalid UTF-8, nesting deeper than fastMaxDepth, any
// syntax error) they report !ok and the caller takes the encoding/json path,
// which then produces the result or the error. FuzzFastPath checks that both
// paths agree.

const fastMaxDepth = 64

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// scanString returns the index after the JSON string starting at b[i]
// (b[i] == '"'), validating its escapes; escaped reports a backslash.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, true
		case c < 0x20:
			return 0, false, false
		case c == '\\':
			escaped = true
			j++
			if j >= len(b) {
				return 0, false, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) {
					return 0, false, false
				}
				for _, h := range b[j+1 : j+5] {
					if !isHex(h) {
						return 0, false, false
					}
				}
				j += 4
			default:
				return 0, false, false
			}
		}
	}
	return 0, false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanValue returns the index after the JSON value starting at b[i] (no
// leading space), validating it.
func scanValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) || depth > fastMaxDepth {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok := scanString(b, i)
		return end, ok
	case c == '{':
		return scanObject(b, i, depth, nil)
	case c == '[':
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			end, ok := scanValue(b, i, depth+1)
			if !ok {
				return 0, false
			}
			i = skipSpace(b, end)
			if i >= len(b) {
				return 0, false
			}
			switch b[i] {
			case ']':
				return i + 1, true
			case ',':
				i = skipSpace(b, i+1)
			default:
				return 0, false
			}
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || isDigit(c):
		return scanNumber(b, i)
	}
	return 0, false
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return 0, false
}

func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return 0, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return 0, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, true
}

// scanObject validates the object starting at b[i] (b[i] == '{') and, when
// member is not nil, calls it with each key (without quotes; keys with
// escapes make the scan fail) and raw value, in order. member returning false
// fails the scan.
func scanObject(b []byte, i, depth int, member func(key, val []byte) bool) (int, bool) {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		kEnd, escaped, ok := scanString(b, i)
		if !ok || (escaped && member != nil) {
			return 0, false
		}
		key := b[i+1 : kEnd-1]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = skipSpace(b, i+1)
		vEnd, ok := scanValue(b, i, depth+1)
		if !ok {
			return 0, false
		}
		if member != nil && !member(key, b[i:vEnd]) {
			return 0, false
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case '}':
			return i + 1, true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return 0, false
		}
	}
}

// fastInvocation is DecodeInvocation's fast path for b (trimmed, starting
// with '{'). ok is false when the caller must take the encoding/json path
// (which also produces every error). The raw values alias b.
func fastInvocation(b []byte) (inv Invocation, ok bool) {
	var data, metadata []byte
	end, ok := scanObject(b, 0, 0, func(key, val []byte) bool {
		if !utf8.Valid(key) {
			return false
		}
		switch string(key) {
		case "Data":
			data = val
		case "Metadata":
			metadata = val
		}
		return true
	})
	if !ok || end != len(b) || data == nil || data[0] != '{' {
		return Invocation{}, false
	}
	if inv.Data, ok = fastMap(data); !ok {
		return Invocation{}, false
	}
	if metadata != nil {
		switch metadata[0] {
		case '{':
			if inv.Metadata, ok = fastMap(metadata); !ok {
				return Invocation{}, false
			}
		case 'n': // null: no metadata, as encoding/json leaves the map nil
		default:
			return Invocation{}, false
		}
	}
	return inv, true
}

// fastMap splits an object already validated into a map of raw values (the
// last of duplicate keys wins, as with encoding/json).
func fastMap(obj []byte) (map[string]json.RawMessage, bool) {
	m := make(map[string]json.RawMessage, 2)
	_, ok := scanObject(obj, 0, 0, func(key, val []byte) bool {
		if !utf8.Valid(key) {
			return false
		}
		m[string(key)] = val
		return true
	})
	return m, ok
}

// fastUnquote validates the JSON string tok (exactly one string token) and
// returns its content. ok is false for \u escapes, invalid UTF-8 and any
// syntax error: the caller then uses encoding/json.
func fastUnquote(tok []byte) (out []byte, ok bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return nil, false
	}
	end, escaped, ok := scanString(tok, 0)
	if !ok || end != len(tok) {
		return nil, false
	}
	in := tok[1 : len(tok)-1]
	if !utf8.Valid(in) {
		return nil, false
	}
	if !escaped {
		return in, true
	}
	out = make([]byte, 0, len(in))
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch in[i] {
		case '"', '\\', '/':
			out = append(out, in[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default: // \u
			return nil, false
		}
	}
	return out, true
}
