package state

import (
	"fmt"
	"strconv"
	"strings"
)

// Blob names: every byte of a key outside [A-Za-z0-9_-] is written as ~XX
// (upper-case hex). The encoding is per byte, so the encoding of a prefix is a
// prefix of the encoding of every key that starts with it, and List can ask
// the service for the encoded prefix. Names never contain '/', '.', '%' or
// characters that need URL escaping, so no key can collide with another,
// create virtual directories or end in a dot.

func encodeKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		if c := key[i]; c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "~%02X", c)
		}
	}
	return b.String()
}

// decodeKey reverses encodeKey; ok is false for names it could not have
// produced (List also drops names that do not encode back to themselves).
func decodeKey(name string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] != '~' {
			b.WriteByte(name[i])
			continue
		}
		if i+3 > len(name) {
			return "", false
		}
		v, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}
