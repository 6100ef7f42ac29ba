package failover

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/dns"

	"github.com/edgeprobe/edgeprobe/internal/netcheck"
)

// Key is one TSIG key (RFC 8945) as a BIND key file declares it.
type Key struct {
	Name      string // canonical: lower case, fully qualified ("edgeprobe.")
	Algorithm string // as miekg/dns names it, e.g. dns.HmacSHA256 ("hmac-sha256.")
	Secret    string // base64, as the file writes it
}

// MaxKeyFileBytes bounds a TSIG key file: tsig-keygen writes about 100 bytes a key.
const MaxKeyFileBytes = 64 << 10

// keyAlgorithms are the algorithms a key file may name, BIND's spelling to miekg/dns's.
// hmac-md5 is refused: miekg/dns no longer signs with it, and RFC 8945 deprecates it.
var keyAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

func algorithmNames() string {
	names := make([]string, 0, len(keyAlgorithms))
	for n := range keyAlgorithms {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// KeyFileError is a problem in a key file, at a line (1-based).
type KeyFileError struct {
	Line int
	Msg  string
}

func (e *KeyFileError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// ParseKeyFile reads the keys of a BIND key file, the syntax tsig-keygen writes and
// named.conf includes:
//
//	key "edgeprobe" {
//		algorithm hmac-sha256;
//		secret "base64...";
//	};
//
// It accepts several keys, the two clauses in either order, names and values quoted or
// not, and #, // and /* */ comments. Anything else (another statement, an unknown
// clause or algorithm, a secret that is not base64, a key twice) is an error naming the
// line, so that a key file that named would refuse is refused here too, at check time.
func ParseKeyFile(data []byte) ([]Key, error) {
	p := &keyParser{src: string(data), line: 1}
	var keys []Key
	seen := map[string]int{}
	for {
		tok, err := p.next()
		if err != nil {
			return nil, err
		}
		if tok.kind == tokEOF {
			break
		}
		if tok.kind != tokWord || tok.text != "key" {
			return nil, p.errAt(tok.line, "%s where a key statement belongs; allowed: key \"NAME\" { algorithm ALG; secret \"BASE64\"; };", tok.describe())
		}
		k, line, err := p.key()
		if err != nil {
			return nil, err
		}
		if first, dup := seen[k.Name]; dup {
			return nil, p.errAt(line, "key %q is declared twice (first on line %d)", strings.TrimSuffix(k.Name, "."), first)
		}
		seen[k.Name] = line
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, p.errAt(p.line, "no key statement; allowed: key \"NAME\" { algorithm ALG; secret \"BASE64\"; }; (the output of tsig-keygen)")
	}
	return keys, nil
}

// key reads a key statement after the word "key": NAME { clauses } ;
func (p *keyParser) key() (Key, int, error) {
	nameTok, err := p.next()
	if err != nil {
		return Key{}, 0, err
	}
	if nameTok.kind != tokWord && nameTok.kind != tokString {
		return Key{}, 0, p.errAt(nameTok.line, "%s after \"key\"; allowed: the key's name", nameTok.describe())
	}
	name := strings.ToLower(dns.Fqdn(nameTok.text))
	if nameTok.text == "" || nameTok.text == "." {
		return Key{}, 0, p.errAt(nameTok.line, "empty key name")
	}
	if !netcheck.IsHostName(name) {
		return Key{}, 0, p.errAt(nameTok.line, "key name %q is not a domain name (letters, digits, '-', '_' and dots)", nameTok.text)
	}
	if err := p.expect(tokOpen, "\"{\" after the key name"); err != nil {
		return Key{}, 0, err
	}
	k := Key{Name: name}
	var algLine, secretLine int
	for {
		tok, err := p.next()
		if err != nil {
			return Key{}, 0, err
		}
		if tok.kind == tokClose {
			break
		}
		if tok.kind != tokWord {
			return Key{}, 0, p.errAt(tok.line, "%s in key %q; allowed: algorithm, secret", tok.describe(), nameTok.text)
		}
		val, err := p.next()
		if err != nil {
			return Key{}, 0, err
		}
		if val.kind != tokWord && val.kind != tokString {
			return Key{}, 0, p.errAt(val.line, "%s after %q; allowed: a value", val.describe(), tok.text)
		}
		switch tok.text {
		case "algorithm":
			if algLine != 0 {
				return Key{}, 0, p.errAt(tok.line, "key %q has a second algorithm (first on line %d)", nameTok.text, algLine)
			}
			alg, ok := keyAlgorithms[strings.ToLower(val.text)]
			if !ok {
				return Key{}, 0, p.errAt(val.line, "unknown algorithm %q; allowed: %s", val.text, algorithmNames())
			}
			k.Algorithm, algLine = alg, tok.line
		case "secret":
			if secretLine != 0 {
				return Key{}, 0, p.errAt(tok.line, "key %q has a second secret (first on line %d)", nameTok.text, secretLine)
			}
			raw, err := base64.StdEncoding.DecodeString(val.text)
			if err != nil || len(raw) == 0 {
				return Key{}, 0, p.errAt(val.line, "the secret of key %q is not base64 (or is empty)", nameTok.text)
			}
			k.Secret, secretLine = base64.StdEncoding.EncodeToString(raw), tok.line
		default:
			return Key{}, 0, p.errAt(tok.line, "unknown clause %q in key %q; allowed: algorithm, secret", tok.text, nameTok.text)
		}
		if err := p.expect(tokSemicolon, fmt.Sprintf("\";\" after %s", tok.text)); err != nil {
			return Key{}, 0, err
		}
	}
	if err := p.expect(tokSemicolon, "\";\" after the key's \"}\""); err != nil {
		return Key{}, 0, err
	}
	switch {
	case algLine == 0:
		return Key{}, 0, p.errAt(nameTok.line, "key %q has no algorithm; allowed: %s", nameTok.text, algorithmNames())
	case secretLine == 0:
		return Key{}, 0, p.errAt(nameTok.line, "key %q has no secret", nameTok.text)
	}
	return k, nameTok.line, nil
}

type tokKind uint8

const (
	tokEOF tokKind = iota
	tokWord
	tokString
	tokOpen
	tokClose
	tokSemicolon
)

type token struct {
	kind tokKind
	text string
	line int
}

func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end of the file"
	case tokWord:
		return fmt.Sprintf("%q", t.text)
	case tokString:
		return fmt.Sprintf("the string %q", t.text)
	case tokOpen:
		return "\"{\""
	case tokClose:
		return "\"}\""
	}
	return "\";\""
}

// keyParser splits a key file into tokens, skipping white space and comments.
type keyParser struct {
	src  string
	i    int
	line int
}

func (p *keyParser) errAt(line int, format string, args ...any) error {
	return &KeyFileError{Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (p *keyParser) expect(kind tokKind, what string) error {
	tok, err := p.next()
	if err != nil {
		return err
	}
	if tok.kind != kind {
		return p.errAt(tok.line, "%s where %s belongs", tok.describe(), what)
	}
	return nil
}

func (p *keyParser) next() (token, error) {
	if err := p.skip(); err != nil {
		return token{}, err
	}
	if p.i >= len(p.src) {
		return token{kind: tokEOF, line: p.line}, nil
	}
	line := p.line
	switch c := p.src[p.i]; c {
	case '{':
		p.i++
		return token{kind: tokOpen, line: line}, nil
	case '}':
		p.i++
		return token{kind: tokClose, line: line}, nil
	case ';':
		p.i++
		return token{kind: tokSemicolon, line: line}, nil
	case '"':
		p.i++
		var b strings.Builder
		for p.i < len(p.src) {
			c := p.src[p.i]
			switch {
			case c == '"':
				p.i++
				return token{kind: tokString, text: b.String(), line: line}, nil
			case c == '\\' && p.i+1 < len(p.src):
				p.i++
				c = p.src[p.i]
			case c == '\n':
				return token{}, p.errAt(line, "string not closed before the end of the line")
			}
			if c == '\n' {
				p.line++
			}
			b.WriteByte(c)
			p.i++
		}
		return token{}, p.errAt(line, "string not closed before the end of the file")
	}
	start := p.i
	for p.i < len(p.src) && !isDelim(p.src[p.i]) {
		if p.src[p.i] < 0x20 || p.src[p.i] == 0x7f {
			return token{}, p.errAt(line, "control character %#x", p.src[p.i])
		}
		p.i++
	}
	return token{kind: tokWord, text: p.src[start:p.i], line: line}, nil
}

func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', '{', '}', ';', '"', '#':
		return true
	}
	return false
}

// skip passes white space and comments: #... and //... to the end of the line, /* ... */.
func (p *keyParser) skip() error {
	for p.i < len(p.src) {
		switch c := p.src[p.i]; {
		case c == '\n':
			p.line++
			p.i++
		case c == ' ' || c == '\t' || c == '\r':
			p.i++
		case c == '#' || strings.HasPrefix(p.src[p.i:], "//"):
			for p.i < len(p.src) && p.src[p.i] != '\n' {
				p.i++
			}
		case strings.HasPrefix(p.src[p.i:], "/*"):
			start := p.line
			end := strings.Index(p.src[p.i+2:], "*/")
			if end < 0 {
				return p.errAt(start, "comment /* not closed")
			}
			p.line += strings.Count(p.src[p.i:p.i+2+end], "\n")
			p.i += 2 + end + 2
		default:
			return nil
		}
	}
	return nil
}

// SelectKey picks the key named name from keys, or the only key when name is "".
func SelectKey(keys []Key, name string) (Key, error) {
	if name == "" {
		if len(keys) == 1 {
			return keys[0], nil
		}
		return Key{}, fmt.Errorf("the file holds %d keys (%s); name one with tsig_key", len(keys), keyNames(keys))
	}
	want := strings.ToLower(dns.Fqdn(name))
	for _, k := range keys {
		if k.Name == want {
			return k, nil
		}
	}
	return Key{}, fmt.Errorf("no key %q in the file; it holds %s", name, keyNames(keys))
}

func keyNames(keys []Key) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = fmt.Sprintf("%q", strings.TrimSuffix(k.Name, "."))
	}
	return strings.Join(names, ", ")
}
