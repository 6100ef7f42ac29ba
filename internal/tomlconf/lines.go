package tomlconf

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// keyLines knows on which line each key of a TOML document is written, under the indexed
// path that messages use (site[1].http[0].url). The toml package records positions only
// per unindexed key (so every [[site]] shares one entry, the last) and does not export
// them; without this scan an error in the first site would point at the last one.
//
// It runs only on documents the toml package has already parsed, so it may assume valid
// syntax; on anything else it still ends, it merely knows fewer lines.
type keyLines struct {
	line    map[string]int      // indexed path -> line (1-based)
	plain   map[string][]string // dotted path without indexes -> indexed paths, in order
	tooDeep bool                // arrays or inline tables nest deeper than maxNesting
}

// maxNesting bounds how deeply arrays and inline tables may nest. The config needs three
// levels at most; the toml package takes time that grows steeply with depth (seconds for
// a few thousand levels), so deeper input is refused before it is decoded.
const maxNesting = 32

// lineOf returns the line of path, or of its closest enclosing key or table when path
// itself is not written in the file (a default, a missing key), or 0.
func (kl *keyLines) lineOf(path string) int {
	for path != "" {
		if n, ok := kl.line[path]; ok {
			return n
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath strips the last segment or index from an indexed path.
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if strings.HasSuffix(path, `"`) {
		if i := strings.LastIndex(path, `."`); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// JoinKey appends one key to an indexed path, quoting it when it is not a bare key.
func JoinKey(path, key string) string {
	if !isBareKey(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// IndexPath appends an array index to a path.
func IndexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

type lineScanner struct {
	src        string
	i          int
	depth      int // of arrays and inline tables around s.i
	lineStarts []int
	arrays     map[string]int // indexed path of an array of tables -> tables seen
	kl         *keyLines
}

func scanKeyLines(src string) *keyLines {
	s := &lineScanner{
		src:        src,
		lineStarts: []int{0},
		arrays:     map[string]int{},
		kl:         &keyLines{line: map[string]int{}, plain: map[string][]string{}},
	}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			s.lineStarts = append(s.lineStarts, i+1)
		}
	}
	table, plain := "", ""
	for s.skipSpace(true); s.i < len(s.src); s.skipSpace(true) {
		start := s.i
		if s.src[s.i] == '[' {
			table, plain = s.header()
		} else {
			s.keyValue(table, plain)
		}
		if s.i == start {
			s.i++
		}
	}
	return s.kl
}

// record notes the line of a key and lists it under its plain path.
func (s *lineScanner) record(path, plain string, offset int) {
	if s.recordLine(path, offset) {
		s.kl.plain[plain] = append(s.kl.plain[plain], path)
	}
}

// recordLine notes the line of a key or array element; false when already known.
func (s *lineScanner) recordLine(path string, offset int) bool {
	if _, seen := s.kl.line[path]; seen {
		return false
	}
	s.kl.line[path] = sort.SearchInts(s.lineStarts, offset+1)
	return true
}

// header reads [a.b] or [[a.b]] and returns the table's indexed and plain paths.
func (s *lineScanner) header() (string, string) {
	start := s.i
	array := strings.HasPrefix(s.src[s.i:], "[[")
	if array {
		s.i += 2
	} else {
		s.i++
	}
	keys := s.keys()
	s.skipLine()
	path, plain := "", ""
	for j, k := range keys {
		path, plain = JoinKey(path, k), joinPlain(plain, k)
		n := s.arrays[path]
		switch {
		case array && j == len(keys)-1:
			s.arrays[path] = n + 1
			path = IndexPath(path, n)
		case n > 0:
			path = IndexPath(path, n-1)
		}
	}
	s.record(path, plain, start)
	return path, plain
}

// keyValue reads `a.b = value` inside the table at path.
func (s *lineScanner) keyValue(table, plain string) {
	start := s.i
	path := table
	for _, k := range s.keys() {
		path, plain = JoinKey(path, k), joinPlain(plain, k)
	}
	s.record(path, plain, start)
	s.skipSpace(false)
	if s.i < len(s.src) && s.src[s.i] == '=' {
		s.i++
		s.skipSpace(false)
		s.value(path, plain)
	}
}

// value skips one value, recording the keys of inline tables and the elements of arrays.
func (s *lineScanner) value(path, plain string) {
	if s.i >= len(s.src) {
		return
	}
	rest := s.src[s.i:]
	switch {
	case strings.HasPrefix(rest, `"""`), strings.HasPrefix(rest, `'''`):
		s.multilineString(rest[:3])
	case rest[0] == '"' || rest[0] == '\'':
		s.quoted(rest[0])
	case rest[0] == '[' || rest[0] == '{':
		if s.depth++; s.depth > maxNesting {
			s.kl.tooDeep = true
			s.i = len(s.src)
			return
		}
		s.container(path, plain)
		s.depth--
	default:
		for s.i < len(s.src) && !strings.ContainsRune(",]}#\r\n", rune(s.src[s.i])) {
			s.i++
		}
	}
}

// container skips an array, recording where each element starts, or an inline table,
// recording its keys.
func (s *lineScanner) container(path, plain string) {
	end := byte(']')
	if s.src[s.i] == '{' {
		end = '}'
	}
	s.i++
	for n := 0; ; n++ {
		s.skipSpace(true)
		if s.i >= len(s.src) || s.src[s.i] == end {
			break
		}
		start := s.i
		if end == ']' {
			s.recordLine(IndexPath(path, n), start)
			s.value(IndexPath(path, n), plain)
		} else {
			s.keyValue(path, plain)
		}
		s.skipSpace(true)
		if s.i < len(s.src) && s.src[s.i] == ',' {
			s.i++
		} else if s.i == start {
			s.i++
		}
	}
	s.i++
}

// keys reads a dotted key: bare, "basic" or 'literal' parts.
func (s *lineScanner) keys() []string {
	var keys []string
	for s.i < len(s.src) {
		s.skipSpace(false)
		if s.i >= len(s.src) {
			break
		}
		switch c := s.src[s.i]; c {
		case '"', '\'':
			start := s.i
			s.quoted(c)
			raw := s.src[start:s.i]
			if k, err := strconv.Unquote(raw); c == '"' && err == nil {
				keys = append(keys, k)
			} else {
				keys = append(keys, strings.Trim(raw, string(c)))
			}
		default:
			start := s.i
			for s.i < len(s.src) && !strings.ContainsRune(" \t.=]\r\n#", rune(s.src[s.i])) {
				s.i++
			}
			if s.i == start {
				return keys
			}
			keys = append(keys, s.src[start:s.i])
		}
		s.skipSpace(false)
		if s.i >= len(s.src) || s.src[s.i] != '.' {
			break
		}
		s.i++
	}
	return keys
}

// quoted skips a one-line string starting at s.i with quote q.
func (s *lineScanner) quoted(q byte) {
	for s.i++; s.i < len(s.src); s.i++ {
		switch s.src[s.i] {
		case '\\':
			if q == '"' && s.i+1 < len(s.src) { // a backslash at the end escapes nothing
				s.i++
			}
		case '\n':
			return
		case q:
			s.i++
			return
		}
	}
}

// multilineString skips a multi-line string (delim is three double or three single
// quotes), including up to two quotes that end its content right before the delimiter.
func (s *lineScanner) multilineString(delim string) {
	s.i += 3
	for s.i < len(s.src) {
		if delim == `"""` && s.src[s.i] == '\\' {
			s.i += 2
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			s.i += 3
			for n := 0; n < 2 && s.i < len(s.src) && s.src[s.i] == delim[0]; n++ {
				s.i++
			}
			return
		}
		s.i++
	}
}

// skipSpace skips blanks and comments, and line breaks when newlines is true.
func (s *lineScanner) skipSpace(newlines bool) {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t':
			s.i++
		case '\r', '\n':
			if !newlines {
				return
			}
			s.i++
		case '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// skipLine moves past the rest of the current line.
func (s *lineScanner) skipLine() {
	for s.i < len(s.src) && s.src[s.i] != '\n' {
		s.i++
	}
}

func joinPlain(plain, key string) string {
	if plain == "" {
		return key
	}
	return plain + "." + key
}
