package event

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"unsafe"
)

// The fast path of Decode and Classify: one pass over an event object that
// validates it and reads only the fields the guard uses, into the same
// structs json.Unmarshal fills (envelope, keyVaultData, armData), so that
// everything after decoding is shared with the encoding/json path. Any doubt
// (a key that encoding/json would match only by folding case, duplicate
// keys, escapes in keys, \u escapes or invalid UTF-8 in a value read, a type
// encoding/json would reject, an error from a field's UnmarshalJSON) makes it
// report !ok; the caller then decodes with encoding/json, which produces the
// result or the error.

// Field names, exactly as the struct tags spell them.
var envelopeFields = [...]string{"id", "subject", "topic", "eventType", "eventTime", "source", "type", "time", "specversion", "data"}

const (
	envID = iota
	envSubject
	envTopic
	envEventType
	envEventTime
	envSource
	envType
	envTime
	envSpecVersion
	envData
)

// dataFields are the fields of keyVaultData and armData; the two structs
// share no name, even folded.
var dataFields = [...]string{"Id", "VaultName", "ObjectType", "ObjectName", "Version", "NBF", "EXP", "claims", "operationName", "resourceUri"}

const (
	dataID = iota
	dataVaultName
	dataObjectType
	dataObjectName
	dataVersion
	dataNBF
	dataEXP
	dataClaims
	dataOperationName
	dataResourceURI
)

var claimFields = [...]string{
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
	"upn",
	"unique_name",
	"email",
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
	"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
	"appid",
	"azp",
	"http://schemas.microsoft.com/identity/claims/objectidentifier",
	"oid",
}

// fieldIndex returns the index of key among names when it is exactly one of
// them, -1 when encoding/json would match it to none of them, and -2 when it
// might match one only by folding case (or key is not ASCII, which can fold
// to ASCII: the Kelvin sign to 'k'): the caller must give up then.
func fieldIndex(key []byte, names []string) int {
	if !isASCII(key) {
		return -2
	}
	for i, n := range names {
		if len(n) != len(key) {
			continue
		}
		if string(key) == n {
			return i
		}
		if asciiEqualFold(key, n) {
			return -2
		}
	}
	return -1
}

// isASCII reports whether b has no byte >= 0x80, eight bytes at a time.
func isASCII(b []byte) bool {
	var acc uint64
	for len(b) >= 8 {
		acc |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		acc |= uint64(c)
	}
	return acc&lanesHigh == 0
}

func asciiEqualFold(a []byte, b string) bool {
	for i := range a {
		x, y := a[i], b[i]
		if x != y {
			if 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			if 'A' <= y && y <= 'Z' {
				y += 'a' - 'A'
			}
			if x != y {
				return false
			}
		}
	}
	return true
}

// stringBatch collects the string fields one pass reads and sets them all
// from one allocation (set), instead of one allocation per field.
type stringBatch struct {
	n, size int
	dst     [len(envelopeFields) + len(dataFields)]*string
	src     [len(envelopeFields) + len(dataFields)][]byte
}

// add schedules *dst = string(src); each field is added at most once.
func (sb *stringBatch) add(dst *string, src []byte) {
	sb.dst[sb.n], sb.src[sb.n] = dst, src
	sb.n++
	sb.size += len(src)
}

// set copies every scheduled value into one new buffer, which nothing else
// references or changes afterwards, and sets the fields to parts of it.
func (sb *stringBatch) set() {
	if sb.size == 0 {
		return // every value is "", which the fields already hold
	}
	buf := make([]byte, 0, sb.size)
	for _, src := range sb.src[:sb.n] {
		buf = append(buf, src...)
	}
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	off := 0
	for k, dst := range sb.dst[:sb.n] {
		n := len(sb.src[k])
		*dst = all[off : off+n]
		off += n
	}
}

// stringField reads the value at b[i] as encoding/json reads it into a
// string field: null leaves *dst alone, a string is scheduled in sb to be
// set. ok is false for any other value and for strings fastUnquote does not
// decode.
func stringField(b []byte, i int, dst *string, sb *stringBatch) (end int, ok bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		end, escaped, ok := scanString(b, i)
		if !ok {
			return 0, false
		}
		s, ok := unescape(b[i:end], escaped)
		if !ok {
			return 0, false
		}
		sb.add(dst, s)
		return end, true
	case 'n':
		return literal(b, i, "null")
	}
	return 0, false
}

// fastData is what the fast path read of an event's data object, for
// Classify: raw is the data it describes (Classify uses the rest only while
// Event.Data is still raw).
type fastData struct {
	raw []byte
	kv  keyVaultData
	arm armData
	// claims are the raw values of the claims in arm.Claims (which stays
	// empty), in the order of claimFields; nil for a claim not sent. Only
	// the one that names the actor is ever decoded (see actor).
	claims [len(claimFields)][]byte
	// fromJSON: encoding/json filled kv or arm, claims included.
	fromJSON bool
}

// actor is claims.actor for the raw claims.
func (fd *fastData) actor() string {
	for _, raw := range fd.claims {
		if raw == nil {
			continue
		}
		var c claim
		if c.UnmarshalJSON(raw) != nil {
			continue // not reached: scanClaims accepts only valid JSON values
		}
		if s := strings.TrimSpace(string(c)); s != "" {
			return s
		}
	}
	return ""
}

// fastEnvelope reads obj (a trimmed JSON object) as json.Unmarshal(obj, &env)
// does. When data is an object whose fields it could read, fd holds them.
func fastEnvelope(obj []byte) (env envelope, fd *fastData, ok bool) {
	var seen uint32
	var sb stringBatch
	i, more, ok := objectStart(obj, 0)
	for ok && more {
		var key []byte
		var escaped bool
		if key, escaped, i, ok = memberKey(obj, i); !ok || escaped {
			return envelope{}, nil, false
		}
		f := fieldIndex(key, envelopeFields[:])
		if f == -2 || (f >= 0 && seen&(1<<f) != 0) {
			return envelope{}, nil, false
		}
		if f >= 0 {
			seen |= 1 << f
		}
		switch f {
		case -1:
			i, ok = scanValue(obj, i, 1)
		case envData:
			start := i
			if i < len(obj) && obj[i] == '{' {
				var dataOK bool
				fd = new(fastData)
				if i, ok, dataOK = scanData(obj, i, fd, &sb); !dataOK {
					fd = nil
				}
			} else {
				i, ok = scanValue(obj, i, 1)
			}
			if ok {
				env.Data = obj[start:i]
				if fd != nil {
					fd.raw = env.Data
				}
			}
		default:
			i, ok = stringField(obj, i, envelopeField(&env, f), &sb)
		}
		if !ok {
			return envelope{}, nil, false
		}
		i, more, ok = memberEnd(obj, i, '}')
	}
	if !ok || i != len(obj) {
		return envelope{}, nil, false
	}
	sb.set()
	return env, fd, true
}

func envelopeField(env *envelope, f int) *string {
	switch f {
	case envID:
		return &env.ID
	case envSubject:
		return &env.Subject
	case envTopic:
		return &env.Topic
	case envEventType:
		return &env.EventType
	case envEventTime:
		return &env.EventTime
	case envSource:
		return &env.Source
	case envType:
		return &env.Type
	case envTime:
		return &env.Time
	default:
		return &env.SpecVersion
	}
}

// member reads the key of the next object member at b[i] and returns its
// index in names and the index after the key. The index is -1 when the key is
// none of names or cannot be trusted to be one — escaped, ambiguous or
// repeated, where encoding/json might decode otherwise — and then *read turns
// false. seen records the fields met.
func member(b []byte, i int, names []string, seen *uint32, read *bool) (f, next int, ok bool) {
	key, escaped, next, ok := memberKey(b, i)
	if !ok {
		return -1, 0, false
	}
	f = -1
	if escaped {
		*read = false
	} else {
		f = fieldIndex(key, names)
	}
	if f == -2 || (f >= 0 && *seen&(1<<f) != 0) {
		*read, f = false, -1
	}
	if f >= 0 {
		*seen |= 1 << f
	}
	return f, next, true
}

// scanData validates the data object at b[i] (b[i] == '{', nested at depth
// 1) and returns the index after it (ok). It also reads the fields of
// keyVaultData and armData into fd as json.Unmarshal does (the strings once
// sb is set; the claims raw, see fastData); read is false when it could not
// be sure of them (the object may still be valid).
func scanData(b []byte, i int, fd *fastData, sb *stringBatch) (end int, ok, read bool) {
	var seen uint32
	read = true
	i, more, ok := objectStart(b, i)
	for ok && more {
		var f int
		if f, i, ok = member(b, i, dataFields[:], &seen, &read); !ok {
			return 0, false, false
		}
		start := i
		var fieldOK bool
		switch f {
		case -1:
			i, ok = scanValue(b, i, 2)
			fieldOK = true
		case dataClaims:
			switch {
			case i < len(b) && b[i] == '{':
				i, ok, fieldOK = scanClaims(b, i, &fd.claims)
			case i < len(b) && b[i] == 'n':
				i, ok = literal(b, i, "null")
				fieldOK = true
			default:
				i, ok = scanValue(b, i, 2)
			}
		case dataNBF, dataEXP:
			if i, ok = scanValue(b, i, 2); ok {
				dst := &fd.kv.NBF
				if f == dataEXP {
					dst = &fd.kv.EXP
				}
				fieldOK = dst.UnmarshalJSON(b[start:i]) == nil
			}
		default:
			var end int
			if end, fieldOK = stringField(b, i, dataField(fd, f), sb); fieldOK {
				i = end
			} else {
				i, ok = scanValue(b, i, 2)
			}
		}
		if !ok {
			return 0, false, false
		}
		read = read && fieldOK
		i, more, ok = memberEnd(b, i, '}')
	}
	if !ok {
		return 0, false, false
	}
	return i, true, read
}

func dataField(fd *fastData, f int) *string {
	switch f {
	case dataID:
		return &fd.kv.ID
	case dataVaultName:
		return &fd.kv.VaultName
	case dataObjectType:
		return &fd.kv.ObjectType
	case dataObjectName:
		return &fd.kv.ObjectName
	case dataVersion:
		return &fd.kv.Version
	case dataOperationName:
		return &fd.arm.OperationName
	default:
		return &fd.arm.ResourceURI
	}
}

// scanClaims is scanData for the claims object at b[i] (nested at depth 2):
// it keeps the raw values of the claims fields (see fastData.claims).
// claim.UnmarshalJSON accepts every JSON value, so only keys can make it
// unsure.
func scanClaims(b []byte, i int, c *[len(claimFields)][]byte) (end int, ok, read bool) {
	var seen uint32
	read = true
	i, more, ok := objectStart(b, i)
	for ok && more {
		var f int
		if f, i, ok = member(b, i, claimFields[:], &seen, &read); !ok {
			return 0, false, false
		}
		start := i
		if i, ok = scanValue(b, i, 3); !ok {
			return 0, false, false
		}
		if f >= 0 {
			c[f] = b[start:i]
		}
		i, more, ok = memberEnd(b, i, '}')
	}
	if !ok {
		return 0, false, false
	}
	return i, true, read
}

// fastArray splits the array v (trimmed, starting with '[') into its items
// when every item is an object; ok is false otherwise (encoding/json then
// reports what is wrong).
func fastArray(v []byte) (items []json.RawMessage, ok bool) {
	i := skipSpace(v, 1)
	if i < len(v) && v[i] == ']' {
		return nil, false // empty: the slow path reports it
	}
	for more := true; more; {
		if i >= len(v) || v[i] != '{' {
			return nil, false
		}
		start := i
		if i, ok = scanValue(v, i, 1); !ok {
			return nil, false
		}
		items = append(items, v[start:i])
		if i, more, ok = memberEnd(v, i, ']'); !ok {
			return nil, false
		}
	}
	return items, i == len(v)
}
