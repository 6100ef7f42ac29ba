package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/edgeprobe/edgeprobe/probes"
)

// ConfigError is one problem found in a configuration.
type ConfigError struct {
	File string // as given to Load or Parse; "" when the data came from elsewhere
	Line int    // 1-based line the problem is on or under; 0 when unknown
	Key  string // indexed key path such as site[1].http[0].url; "" for the file as a whole
	Msg  string // what is wrong and what is allowed
}

// Error formats the problem as FILE:LINE: KEY: MSG, leaving out the parts that are unknown.
func (e ConfigError) Error() string {
	var parts []string
	switch {
	case e.File != "" && e.Line > 0:
		parts = append(parts, e.File+":"+strconv.Itoa(e.Line))
	case e.File != "":
		parts = append(parts, e.File)
	case e.Line > 0:
		parts = append(parts, "line "+strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		parts = append(parts, e.Key)
	}
	return strings.Join(append(parts, e.Msg), ": ")
}

// ConfigErrors is every problem found in one configuration, in file order, so that a
// user fixes them all in one round instead of one per run.
type ConfigErrors struct {
	Errors []ConfigError
}

// Error prints one problem per line.
func (e *ConfigErrors) Error() string {
	lines := make([]string, len(e.Errors))
	for i, ce := range e.Errors {
		lines[i] = ce.Error()
	}
	return strings.Join(lines, "\n")
}

// Load reads, checks and completes the agent configuration in the file at path. Errors
// reading the file come back as the *fs.PathError the os package gives (it names the
// file and the cause); problems with its content come back as *ConfigErrors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse checks and completes a configuration read from path (used in messages, and as
// the directory relative file names in it are resolved against). The returned Config has
// every default filled in; on any problem it returns nil and a *ConfigErrors.
func Parse(data []byte, path string) (*Config, error) {
	l := &loader{file: path, dir: filepath.Dir(path), defined: map[string]bool{}}
	if path == "" {
		l.dir = "."
	}
	text := string(data)
	lines := scanKeyLines(text)
	if lines.tooDeep {
		l.errs = append(l.errs, ConfigError{File: path,
			Msg: fmt.Sprintf("arrays or inline tables nest more than %d levels deep", maxNesting)})
		return nil, l.result()
	}
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		l.decodeError(err)
		return nil, l.result()
	}
	l.lines = lines
	l.checkTypes("", raw, reflect.TypeFor[Config]())
	if len(l.errs) > 0 {
		return nil, l.result()
	}
	cfg := &Config{Path: path}
	md, err := toml.Decode(text, cfg)
	if err != nil {
		l.decodeError(err)
		return nil, l.result()
	}
	l.unknownKeys(md.Undecoded())
	l.normalize(cfg)
	if len(l.errs) > 0 {
		return nil, l.result()
	}
	return cfg, nil
}

// loader collects the problems of one Parse.
type loader struct {
	file    string
	dir     string          // relative file names in the config are relative to this
	lines   *keyLines       // nil until the syntax is known to be valid
	defined map[string]bool // indexed paths of every known key the file sets
	errs    []ConfigError
}

// errAt records a problem with the key at path.
func (l *loader) errAt(path, format string, args ...any) {
	line := 0
	if l.lines != nil {
		line = l.lines.lineOf(path)
	}
	l.errs = append(l.errs, ConfigError{File: l.file, Line: line, Key: path, Msg: fmt.Sprintf(format, args...)})
}

// result returns the problems in file order; those without a line (a missing section,
// say) come last.
func (l *loader) result() *ConfigErrors {
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i].Line, l.errs[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	return &ConfigErrors{Errors: l.errs}
}

// decodeError turns an error of the toml package into a ConfigError. Syntax errors carry
// a position; others (which the type check should have caught first) carry only text.
func (l *loader) decodeError(err error) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		l.errs = append(l.errs, ConfigError{File: l.file, Line: pe.Position.Line, Msg: "invalid TOML: " + pe.Message})
		return
	}
	l.errs = append(l.errs, ConfigError{File: l.file, Msg: err.Error()})
}

// unknownKeys reports keys the decoder had no field for. toml names them without array
// indexes; the line scan finds each place they are written. Keys inside an unknown table
// are not repeated.
func (l *loader) unknownKeys(keys []toml.Key) {
	unknown := make(map[string]bool, len(keys))
	for _, k := range keys {
		unknown[strings.Join(k, ".")] = true
	}
	for _, k := range keys {
		if len(k) > 1 && unknown[strings.Join(k[:len(k)-1], ".")] {
			continue
		}
		msg := "unknown key"
		if allowed := schemaKeys(k[:len(k)-1]); len(allowed) > 0 {
			msg += "; allowed here: " + strings.Join(allowed, ", ")
		}
		paths := l.lines.plain[strings.Join(k, ".")]
		if len(paths) == 0 {
			l.errs = append(l.errs, ConfigError{File: l.file, Key: k.String(), Msg: msg})
		}
		for _, p := range paths {
			l.errAt(p, "%s", msg)
		}
	}
}

// schemaKeys lists the keys the config accepts in the table at the unindexed path.
func schemaKeys(path []string) []string {
	t := reflect.TypeFor[Config]()
	for _, k := range path {
		t = tableType(t)
		if t == nil {
			return nil
		}
		f, _ := fieldFor(t, k)
		if f == nil {
			return nil
		}
		t = f.typ
	}
	t = tableType(t)
	if t == nil {
		return nil
	}
	var names []string
	for _, f := range tomlFields(t) {
		names = append(names, f.name)
	}
	return names
}

// tableType is the struct type a TOML table decodes into through pointers and slices, or
// nil when it is not decoded into a struct.
func tableType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || isTextType(t) {
		return nil
	}
	return t
}

type schemaField struct {
	name string
	typ  reflect.Type
}

// tomlFields lists the keys of a struct as the toml package sees them: the tag name,
// embedded structs without a tag flattened into their parent.
func tomlFields(t reflect.Type) []schemaField {
	var fields []schemaField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			fields = append(fields, tomlFields(f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields = append(fields, schemaField{name: name, typ: f.Type})
	}
	return fields
}

// fieldFor finds the field for key. The toml package also accepts a key that differs
// only in case; exact is false then, so that the type check can refuse it.
func fieldFor(t reflect.Type, key string) (f *schemaField, exact bool) {
	fields := tomlFields(t)
	for i := range fields {
		if fields[i].name == key {
			return &fields[i], true
		}
	}
	for i := range fields {
		if strings.EqualFold(fields[i].name, key) {
			return &fields[i], false
		}
	}
	return nil, false
}

var (
	durationType = reflect.TypeFor[Duration]()
	timeoutType  = reflect.TypeFor[Timeout]()
)

func isTextType(t reflect.Type) bool { return t == durationType || t == timeoutType }

// zeroDurationAllowed lists the durations where "0s" means something (off).
var zeroDurationAllowed = map[string]bool{"exporters.stdout.summary": true}

// checkTypes compares the generic decoding of the file with the Go types it will be
// decoded into. The toml package stops at the first mismatch and names it without array
// indexes; this walk reports all of them with their full paths, checks every duration
// (a bare number is the classic mistake), and notes which keys the file sets. Keys with
// no field are left to MetaData.Undecoded.
func (l *loader) checkTypes(path string, v any, t reflect.Type) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isTextType(t) {
		l.defined[path] = true
		l.checkDuration(path, v, t)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		table, ok := v.(map[string]any)
		if !ok {
			l.errAt(path, "must be a table, not %s", describe(v))
			return
		}
		for _, key := range sortedKeys(table) {
			f, exact := fieldFor(t, key)
			if f == nil {
				continue
			}
			p := joinKey(path, key)
			if !exact {
				l.errAt(p, "unknown key; keys are case-sensitive: did you mean %q?", f.name)
				continue
			}
			l.checkTypes(p, table[key], f.typ)
		}
	case reflect.Map:
		table, ok := v.(map[string]any)
		if !ok {
			l.errAt(path, "must be a table of key = value pairs, not %s", describe(v))
			return
		}
		l.defined[path] = true
		for _, key := range sortedKeys(table) {
			l.checkTypes(joinKey(path, key), table[key], t.Elem())
		}
	case reflect.Slice:
		switch items := v.(type) {
		case []map[string]any:
			for i, item := range items {
				l.checkTypes(indexPath(path, i), item, t.Elem())
			}
		case []any:
			l.defined[path] = true
			for i, item := range items {
				l.checkTypes(indexPath(path, i), item, t.Elem())
			}
		default:
			l.errAt(path, "must be an array, not %s", describe(v))
		}
	case reflect.String:
		l.defined[path] = true
		if _, ok := v.(string); !ok {
			l.errAt(path, "must be a string, not %s", describe(v))
		}
	case reflect.Bool:
		l.defined[path] = true
		if _, ok := v.(bool); !ok {
			l.errAt(path, "must be true or false, not %s", describe(v))
		}
	case reflect.Int, reflect.Int64:
		l.defined[path] = true
		n, ok := v.(int64)
		if !ok {
			l.errAt(path, "must be an integer, not %s", describe(v))
		} else if reflect.Zero(t).OverflowInt(n) {
			l.errAt(path, "%d is too large", n)
		}
	default:
		l.errAt(path, "has a type the config loader does not handle (%s)", t)
	}
}

// checkDuration checks one Duration or Timeout value.
func (l *loader) checkDuration(path string, v any, t reflect.Type) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case int64, float64:
		l.errAt(path, "bare number %v is not a duration; use a string with a unit, e.g. \"500ms\"", x)
		return
	default:
		l.errAt(path, "must be a string with a unit, e.g. \"500ms\", not %s", describe(v))
		return
	}
	var d Duration
	var err error
	if t == timeoutType {
		var to Timeout
		err = to.UnmarshalText([]byte(s))
		d.Duration = to.Fixed
		if to.Auto {
			return
		}
	} else {
		err = d.UnmarshalText([]byte(s))
	}
	switch {
	case err != nil:
		l.errAt(path, "%v", err)
	case d.Duration < 0 || d.Duration == 0 && !zeroDurationAllowed[path]:
		l.errAt(path, "%q is not positive; allowed: a duration above zero", s)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// describe names a decoded TOML value for a message.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return fmt.Sprintf("the float %v", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case map[string]any:
		return "a table"
	case []map[string]any, []any:
		return "an array"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// Warnings lists what the configuration allows but puts at risk: secrets that every user
// on the machine can read. A secret file named in the config (a remote_write bearer token
// or basic auth password, a TLS client key, the Prometheus exporter's web config and the
// TLS key it names) that is readable by others, and the config file itself when it holds
// inline header values (which often carry tokens), each give one warning naming the file
// and the fix. Nothing here is an error: the agent starts all the same. Call it on a
// Config from Load, whose file names are absolute.
func (c *Config) Warnings() []string {
	var out []string
	seen := map[string]bool{}
	secret := func(path, what string) {
		if path == "" || seen[path] || !worldReadable(path) {
			return
		}
		seen[path] = true
		out = append(out, fmt.Sprintf("%s (%s) is readable by every user; chmod o-r %s", path, what, path))
	}
	var inline []string
	tlsKey := func(key string, t probes.TLSSpec) {
		secret(t.KeyFile, key+".key_file")
	}
	type keyedSet struct {
		key string
		set *TargetSet
	}
	var sets []keyedSet
	for i := range c.Sites {
		sets = append(sets, keyedSet{fmt.Sprintf("site[%d]", i), &c.Sites[i].TargetSet})
	}
	if c.Control != nil {
		sets = append(sets, keyedSet{"control", c.Control})
	}
	for _, s := range sets {
		for i, t := range s.set.DNS {
			tlsKey(fmt.Sprintf("%s.dns[%d].tls", s.key, i), t.TLS)
		}
		for i, t := range s.set.HTTP {
			key := fmt.Sprintf("%s.http[%d]", s.key, i)
			tlsKey(key+".tls", t.TLS)
			if len(t.Headers) > 0 {
				inline = append(inline, key+".headers")
			}
		}
		for i, t := range s.set.TCP {
			tlsKey(fmt.Sprintf("%s.tcp[%d].tls", s.key, i), t.TLS)
		}
	}
	for i, rw := range c.Exporters.RemoteWrite {
		key := fmt.Sprintf("exporters.remote_write[%d]", i)
		secret(rw.BearerTokenFile, key+".bearer_token_file")
		if rw.BasicAuth != nil {
			secret(rw.BasicAuth.PasswordFile, key+".basic_auth.password_file")
		}
		tlsKey(key+".tls", rw.TLS)
		if len(rw.Headers) > 0 {
			inline = append(inline, key+".headers")
		}
	}
	if p := c.Exporters.Prometheus; p != nil && p.WebConfig != "" {
		secret(p.WebConfig, "exporters.prometheus.web_config")
		for _, key := range webConfigKeyFiles(p.WebConfig) {
			secret(key, "key_file of "+p.WebConfig)
		}
	}
	if len(inline) > 0 && c.Path != "" && worldReadable(c.Path) {
		out = append(out, fmt.Sprintf("%s holds header values (%s) and is readable by every user; chmod o-r %s",
			c.Path, strings.Join(inline, ", "), c.Path))
	}
	return out
}

// worldReadable says whether every user may read the file (its "other" read bit is set).
// A file that cannot be examined gives no warning: Load has already checked the files it
// needs.
func worldReadable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o004 != 0
}

// webConfigKeyRE finds the TLS key of an exporter-toolkit web config (YAML):
// `key_file: /path` under tls_server_config.
var webConfigKeyRE = regexp.MustCompile(`(?m)^\s*key_file:\s*["']?([^"'#\s]+)`)

// webConfigKeyFiles lists the key files a web config names, relative names resolved
// against the web config's directory as exporter-toolkit does. A file that cannot be read
// names none: the exporter reports it at start.
func webConfigKeyFiles(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var keys []string
	for _, m := range webConfigKeyRE.FindAllStringSubmatch(string(data), -1) {
		k := m[1]
		if !filepath.IsAbs(k) {
			k = filepath.Join(filepath.Dir(path), k)
		}
		keys = append(keys, k)
	}
	return keys
}
