package state

import (
	"strings"
)

// Blob names: every byte of a key outside [A-Za-z0-9_-] is written as ~XX
// (upper-case hex). The encoding is per byte, so the encoding of a prefix is a
// prefix of the encoding of every key that starts with it, and List can ask
// the service for the encoded prefix. Names never contain '/', '.', '%' or
// characters that need URL escaping, so no key can collide with another,
// create virtual directories or end in a dot.

const hexDigits = "0123456789ABCDEF"

func encodeKey(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// decodeKey reverses encodeKey; ok is false for names it did not produce.
func decodeKey(name string) (string, bool) {
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '~' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(name) {
			return "", false
		}
		hi, lo := strings.IndexByte(hexDigits, name[i+1]), strings.IndexByte(hexDigits, name[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), true
}
