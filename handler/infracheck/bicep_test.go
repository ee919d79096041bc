package infracheck_test

import (
	"regexp"
	"strings"
)

// This file is a deliberately small reader of Bicep text: enough to find
// declarations, bracketed blocks, string lists and object keys in the
// templates of infra/, which are written in a plain style (one property per
// line). It is not a Bicep parser; what it cannot read, the checks report.

// stripComments replaces // and /* */ comments with spaces, keeping newlines
// and every string literal intact, so that offsets and line numbers survive.
func stripComments(s string) string {
	b := []byte(s)
	out := make([]byte, len(b))
	copy(out, b)
	for i := 0; i < len(b); {
		switch {
		case strings.HasPrefix(s[i:], "'''"):
			end := strings.Index(s[i+3:], "'''")
			if end < 0 {
				return string(out)
			}
			i += 3 + end + 3
		case b[i] == '\'':
			i = skipString(s, i)
		case strings.HasPrefix(s[i:], "//"):
			for i < len(b) && b[i] != '\n' {
				out[i] = ' '
				i++
			}
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				end = len(s) - i - 2
			}
			for j := i; j < i+2+end+2 && j < len(b); j++ {
				if b[j] != '\n' {
					out[j] = ' '
				}
			}
			i += 2 + end + 2
		default:
			i++
		}
	}
	return string(out)
}

// skipString returns the offset just past the single-quoted string starting
// at s[i] (a single quote), honouring \' escapes and ${...} interpolations.
func skipString(s string, i int) int {
	if strings.HasPrefix(s[i:], "'''") {
		end := strings.Index(s[i+3:], "'''")
		if end < 0 {
			return len(s)
		}
		return i + 3 + end + 3
	}
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\':
			j++
		case s[j] == '$' && j+1 < len(s) && s[j+1] == '{':
			depth := 0
			for j++; j < len(s); j++ {
				if s[j] == '{' {
					depth++
				} else if s[j] == '}' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
		case s[j] == '\'' || s[j] == '\n':
			return j + 1
		}
	}
	return len(s)
}

// closing returns the offset of the bracket that closes the one at s[open]
// ('(', '[' or '{'), skipping string literals, or -1.
func closing(s string, open int) int {
	depth := 0
	for i := open; i < len(s); {
		switch s[i] {
		case '\'':
			i = skipString(s, i)
			continue
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return -1
}

// block returns the text between the bracket that starts at or after s[from]
// and its closing bracket (exclusive), and whether it was found.
func block(s string, from int) (string, bool) {
	i := strings.IndexAny(s[from:], "([{")
	if i < 0 {
		return "", false
	}
	open := from + i
	end := closing(s, open)
	if end < 0 {
		return "", false
	}
	return s[open+1 : end], true
}

// propertyBlocks returns the bracketed value of every property `name:` in s
// (as a whole word: `actions:` does not match `dataActions:`).
func propertyBlocks(s, name string) []string {
	re := regexp.MustCompile(`(?m)(^|[\s{,])` + regexp.QuoteMeta(name) + `\s*:\s*[\[{]`)
	var out []string
	for _, m := range re.FindAllStringIndex(s, -1) {
		if b, ok := block(s, m[1]-1); ok {
			out = append(out, b)
		}
	}
	return out
}

// decl is a top-level declaration: a resource, module, param, var or output.
type decl struct {
	kind, name string
	// typ is the resource/module type string or the param/output type.
	typ string
	// body is the text after '=' (the whole object, expression or loop).
	body string
	// decorators holds the names of the decorators on a param (secure, ...).
	decorators []string
	line       int
}

var declRE = regexp.MustCompile(`(?m)^(resource|module|param|var|output|type)\s+([A-Za-z_][A-Za-z0-9_]*)\s*([^=\n]*?)\s*(=|$)`)

// declarations lists the top-level declarations of a comment-free Bicep text.
func declarations(s string) []decl {
	var out []decl
	for _, m := range declRE.FindAllStringSubmatchIndex(s, -1) {
		d := decl{kind: s[m[2]:m[3]], name: s[m[4]:m[5]], typ: strings.TrimSpace(s[m[6]:m[7]])}
		d.line = strings.Count(s[:m[0]], "\n") + 1
		d.typ = strings.TrimSpace(strings.TrimSuffix(d.typ, "existing"))
		d.typ = strings.Trim(strings.TrimSpace(d.typ), "'")
		if m[8] >= 0 && s[m[8]:m[9]] == "=" {
			d.body = expression(s, m[9])
		}
		if d.kind == "param" {
			d.decorators = decoratorsBefore(s, m[0])
		}
		out = append(out, d)
	}
	return out
}

// expression returns the expression that starts at s[from]: up to the end of
// the line, extended over any bracket opened on it.
func expression(s string, from int) string {
	i := from
	for i < len(s) && s[i] != '\n' {
		switch s[i] {
		case '\'':
			i = skipString(s, i)
			continue
		case '(', '[', '{':
			if end := closing(s, i); end > 0 {
				i = end
			}
		}
		i++
	}
	return strings.TrimSpace(s[from:i])
}

var decoratorRE = regexp.MustCompile(`^@([A-Za-z_][A-Za-z0-9_.]*)`)

// decoratorsBefore returns the decorators directly above the declaration at
// offset at (multi-line decorators such as @allowed([...]) included).
func decoratorsBefore(s string, at int) []string {
	var names []string
	lines := strings.Split(s[:at], "\n")
	lines = lines[:len(lines)-1] // the declaration's own line
	depth := 0                   // brackets closed below, not yet opened
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		code := codeOnly(l)
		depth += strings.Count(code, "]") + strings.Count(code, ")") -
			strings.Count(code, "[") - strings.Count(code, "(")
		switch m := decoratorRE.FindStringSubmatch(l); {
		case m != nil && depth <= 0:
			names = append(names, m[1])
			depth = 0
		case depth > 0:
			// inside a multi-line decorator argument
		default:
			return names
		}
	}
	return names
}

// items returns the elements of a one-element-per-line array body: string
// literals unquoted, anything else as written prefixed with "expr:".
func items(arrayBody string) []string {
	var out []string
	for _, l := range strings.Split(arrayBody, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if lit, ok := literal(l); ok {
			out = append(out, lit)
		} else {
			out = append(out, "expr:"+l)
		}
	}
	return out
}

var literalRE = regexp.MustCompile(`^'((?:[^'\\$]|\\.|\$[^{])*)'$`)

// literal unquotes a plain single-quoted Bicep string (no interpolation).
func literal(s string) (string, bool) {
	m := literalRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return "", false
	}
	return strings.NewReplacer(`\'`, `'`, `\\`, `\`, `\n`, "\n").Replace(m[1]), true
}

var keyRE = regexp.MustCompile(`(?m)^\s*([A-Za-z_][A-Za-z0-9_]*|'[^'\n]+')\s*:\s*(.*?)\s*$`)

// keys returns the `key: value` pairs written one per line in an object body
// (at any depth), in order.
func keys(objectBody string) [][2]string {
	var out [][2]string
	for _, m := range keyRE.FindAllStringSubmatch(objectBody, -1) {
		k := strings.Trim(m[1], "'")
		out = append(out, [2]string{k, m[2]})
	}
	return out
}

// mentions reports whether expr refers to the identifier name as a whole word
// outside string literals (interpolations count: they are code).
func mentions(expr, name string) bool {
	re := regexp.MustCompile(`(^|[^A-Za-z0-9_.])` + regexp.QuoteMeta(name) + `($|[^A-Za-z0-9_])`)
	return re.MatchString(codeOnly(expr))
}

// codeOnly blanks the literal parts of strings in expr but keeps the code of
// their ${...} interpolations.
func codeOnly(expr string) string {
	var b strings.Builder
	inString := false
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case !inString && c == '\'':
			inString = true
			b.WriteByte(' ')
		case inString && c == '\\':
			i++
			b.WriteString("  ")
		case inString && c == '\'':
			inString = false
			b.WriteByte(' ')
		case inString && c == '$' && i+1 < len(expr) && expr[i+1] == '{':
			end := strings.IndexByte(expr[i:], '}')
			if end < 0 {
				end = len(expr) - i - 1
			}
			b.WriteString(" " + expr[i+2:i+end] + " ")
			i += end
		case inString:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
