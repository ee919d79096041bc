package event

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// A fast path for the steps every invocation takes: splitting the host
// envelope (DecodeInvocation), unquoting a string-wrapped event (unwrap) and
// reading the few fields the guard uses from the event and its data (see
// fastevent.go). encoding/json validates its whole input before decoding it,
// so each json.Unmarshal of a nested json.RawMessage re-reads the same bytes;
// these helpers validate and split in one pass, and skip the bytes inside
// strings eight at a time (SWAR). They are conservative: on anything they do
// not handle exactly like encoding/json (escapes in object keys, invalid
// UTF-8 in strings they decode, nesting deeper than fastMaxDepth, any syntax
// error) they report !ok and the caller takes the encoding/json path, which
// then produces the result or the error.
// FuzzFastPath and FuzzClassifyFastPath check that both paths agree.

const fastMaxDepth = 64

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// SWAR constants: one bit per byte lane.
const (
	lanesLow  = 0x0101010101010101
	lanesHigh = 0x8080808080808080
)

// stringSpecial has the high bit set in the lane of the first byte of x
// (little-endian) that is '"', '\\' or a control character (< 0x20); lanes
// above that one may be set too. It is zero when no byte is special.
func stringSpecial(x uint64) uint64 {
	q := x ^ (lanesLow * '"')
	s := x ^ (lanesLow * '\\')
	return (((q - lanesLow) &^ q) | ((s - lanesLow) &^ s) | ((x - lanesLow*0x20) &^ x)) & lanesHigh
}

// skipPlain returns the index of the first byte at or after b[j] that is
// '"', '\\' or a control character, or a later index up to len(b) when
// fewer than 8 bytes are left: it skips eight bytes at a time. (Sixteen at a
// time measured slower.)
func skipPlain(b []byte, j int) int {
	for j+8 <= len(b) {
		if m := stringSpecial(binary.LittleEndian.Uint64(b[j:])); m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
		j += 8
	}
	return j
}

// scanString returns the index after the JSON string starting at b[i]
// (b[i] == '"'), validating its escapes; escaped reports a backslash. Runs of
// ordinary bytes are skipped eight at a time.
func scanString(b []byte, i int) (end int, escaped, ok bool) {
	j := i + 1
	for {
		j = skipPlain(b, j)
		if j >= len(b) {
			return 0, false, false
		}
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
				j++
			case 'u':
				if j+4 >= len(b) {
					return 0, false, false
				}
				for _, h := range b[j+1 : j+5] {
					if !isHex(h) {
						return 0, false, false
					}
				}
				j += 5
			default:
				return 0, false, false
			}
		default:
			j++
		}
	}
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
		i, more, ok := objectStart(b, i)
		for ok && more {
			if _, _, i, ok = memberKey(b, i); !ok {
				break
			}
			if i, ok = scanValue(b, i, depth+1); !ok {
				break
			}
			i, more, ok = memberEnd(b, i, '}')
		}
		return i, ok
	case c == '[':
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for more, ok := true, true; more; {
			if i, ok = scanValue(b, i, depth+1); !ok {
				return 0, false
			}
			if i, more, ok = memberEnd(b, i, ']'); !ok {
				return 0, false
			}
		}
		return i, true
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

// objectStart begins reading the object at b[i] (b[i] must be '{'): it
// returns the index of the first key and more, or, for an empty object, the
// index after it and !more.
func objectStart(b []byte, i int) (next int, more, ok bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, false, true
	}
	return i, true, true
}

// memberKey reads the key at b[i] and the colon after it. key is the raw
// content between the quotes (escaped reports a backslash in it); value is
// the index of the member's value.
func memberKey(b []byte, i int) (key []byte, escaped bool, value int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, false, 0, false
	}
	end, escaped, ok := scanString(b, i)
	if !ok {
		return nil, false, 0, false
	}
	key = b[i+1 : end-1]
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return nil, false, 0, false
	}
	return key, escaped, skipSpace(b, i+1), true
}

// memberEnd reads what follows a value in an object (closing '}') or an
// array (closing ']'): a comma (more, next is the following key or value) or
// the closing bracket (!more, next is the index after it).
func memberEnd(b []byte, i int, closing byte) (next int, more, ok bool) {
	i = skipSpace(b, i)
	if i >= len(b) {
		return 0, false, false
	}
	switch b[i] {
	case ',':
		return skipSpace(b, i+1), true, true
	case closing:
		return i + 1, false, true
	}
	return 0, false, false
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

// fastInvocation is DecodeInvocation's fast path for b (trimmed, starting
// with '{'), in one pass over b. ok is false when the caller must take the
// encoding/json path (which also produces every error). The raw values alias
// b.
func fastInvocation(b []byte) (inv Invocation, ok bool) {
	var seenData, seenMetadata bool
	i, more, ok := objectStart(b, 0)
	for ok && more {
		var key []byte
		var escaped bool
		if key, escaped, i, ok = memberKey(b, i); !ok || escaped || !utf8.Valid(key) {
			return Invocation{}, false
		}
		switch string(key) {
		case "Data":
			if seenData || i >= len(b) || b[i] != '{' {
				return Invocation{}, false
			}
			seenData = true
			inv.Data, i, ok = fastMap(b, i, &inv.unquoted)
		case "Metadata":
			if seenMetadata {
				return Invocation{}, false
			}
			seenMetadata = true
			switch {
			case i < len(b) && b[i] == '{':
				inv.Metadata, i, ok = fastMap(b, i, nil)
			case i < len(b) && b[i] == 'n': // null: no metadata, as encoding/json leaves the map nil
				i, ok = literal(b, i, "null")
			default:
				return Invocation{}, false
			}
		default:
			i, ok = scanValue(b, i, 1)
		}
		if !ok {
			return Invocation{}, false
		}
		i, more, ok = memberEnd(b, i, '}')
	}
	if !ok || i != len(b) || !seenData {
		return Invocation{}, false
	}
	return inv, true
}

// fastMap reads the object at b[i] into a map of raw values (the last of
// duplicate keys wins, as with encoding/json) and returns the index after it.
// When unquoted is not nil, the first string value that holds an object or an
// array (a string-wrapped event) is unquoted while it is validated, and kept
// in *unquoted for Invocation.Events.
func fastMap(b []byte, i int, unquoted *unquotedBinding) (m map[string]json.RawMessage, end int, ok bool) {
	m = make(map[string]json.RawMessage, 2)
	i, more, ok := objectStart(b, i)
	for ok && more {
		var key []byte
		var escaped bool
		if key, escaped, i, ok = memberKey(b, i); !ok || escaped || !utf8.Valid(key) {
			return nil, 0, false
		}
		start, name := i, keyString(key)
		if unquoted != nil && unquoted.raw == nil && i+1 < len(b) && b[i] == '"' && (b[i+1] == '{' || b[i+1] == '[') {
			if content, end, ok := unquoteAt(b, i); ok && end-i <= 4*MaxEventSize {
				i = end
				*unquoted = unquotedBinding{name: name, raw: b[start:end], content: content}
			}
		}
		if i == start {
			if i, ok = scanValue(b, i, 2); !ok {
				return nil, 0, false
			}
		}
		m[name] = b[start:i]
		i, more, ok = memberEnd(b, i, '}')
	}
	return m, i, ok
}

// knownKeys are the keys the host sends in Data and Metadata for the guard's
// functions; keyString returns them without allocating.
var knownKeys = [...]string{"event", "timer", "sys"}

// keyString returns string(key), sharing the string of a known key.
func keyString(key []byte) string {
	for _, k := range knownKeys {
		if string(key) == k {
			return k
		}
	}
	return string(key)
}

// fastUnquote validates the JSON string tok (exactly one string token) and
// returns its content, which aliases tok when tok has no escapes. ok is false
// for invalid UTF-8 and any syntax error: the caller then uses encoding/json.
func fastUnquote(tok []byte) (out []byte, ok bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return nil, false
	}
	out, end, ok := unquoteAt(tok, 0)
	if !ok || end != len(tok) {
		return nil, false
	}
	return out, true
}

// unquoteAt reads the JSON string starting at b[i] (b[i] == '"') in one
// pass, validating and unescaping it eight bytes at a time between escapes,
// and returns its content (aliasing b when it has no escapes) and the index
// after it. It decodes \u escapes as encoding/json does (an unpaired
// surrogate becomes U+FFFD). ok is false for a syntax error and for invalid
// UTF-8 (which encoding/json would replace).
func unquoteAt(b []byte, i int) (out []byte, end int, ok bool) {
	start := i + 1
	j := start
	// Up to the first special byte the content is b itself; most strings
	// have no escapes.
	for j+8 <= len(b) {
		if m := stringSpecial(binary.LittleEndian.Uint64(b[j:])); m != 0 {
			j += bits.TrailingZeros64(m) >> 3
			break
		}
		j += 8
	}
	for j < len(b) && b[j] >= 0x20 && b[j] != '"' && b[j] != '\\' {
		j++
	}
	if j < len(b) && b[j] == '"' {
		if in := b[start:j]; utf8.Valid(in) {
			return in, j + 1, true
		}
		return nil, 0, false
	}
	// out has 8 bytes of slack so that whole words can be stored; the
	// content is never longer than what is left of b.
	out = make([]byte, len(b)-start+8)
	o := copy(out, b[start:j])
	for {
		for j+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[j:])
			binary.LittleEndian.PutUint64(out[o:], x)
			if m := stringSpecial(x); m != 0 {
				n := bits.TrailingZeros64(m) >> 3
				j, o = j+n, o+n
				break
			}
			j, o = j+8, o+8
		}
		if j >= len(b) {
			return nil, 0, false
		}
		c := b[j]
		switch {
		case c == '"':
			if !utf8.Valid(b[start:j]) {
				return nil, 0, false
			}
			return out[:o:o], j + 1, true
		case c < 0x20:
			return nil, 0, false
		case c == '\\':
			if j+1 >= len(b) {
				return nil, 0, false
			}
			switch c = b[j+1]; c {
			case '"', '\\', '/':
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'u':
				r := getu4(b[j:])
				if r < 0 {
					return nil, 0, false
				}
				j += 6
				if utf16.IsSurrogate(r) {
					if dec := utf16.DecodeRune(r, getu4(b[j:])); dec != unicode.ReplacementChar {
						r = dec
						j += 6
					} else {
						r = unicode.ReplacementChar
					}
				}
				o += utf8.EncodeRune(out[o:], r)
				continue
			default:
				return nil, 0, false
			}
			j++
		}
		out[o] = c
		j, o = j+1, o+1
	}
}

// getu4 decodes \uXXXX at the start of b, or returns -1.
func getu4(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unescape returns the content of the JSON string tok (with its quotes)
// whose syntax is already validated; escaped says whether it has a
// backslash. ok is false for invalid UTF-8.
func unescape(tok []byte, escaped bool) (out []byte, ok bool) {
	if in := tok[1 : len(tok)-1]; !escaped {
		return in, utf8.Valid(in)
	}
	return fastUnquote(tok)
}
