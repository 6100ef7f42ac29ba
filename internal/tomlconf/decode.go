// Package tomlconf is the config layer the agent's and the view's configuration share:
// decoding TOML into Go types with every problem reported as FILE:LINE: KEY: what is
// allowed, durations that must carry a unit, and the scan that knows on which line each
// key is written. One dialect of errors for both files, written once.
//
// The toml package stops at the first type mismatch, names keys without array indexes,
// accepts keys that differ only in case and does not export key positions. So Decode
// first decodes into generic values and walks them beside the Go type (every mismatch,
// with its indexed path), then decodes for real and reports every key the type has no
// field for, with the keys allowed in its place. The caller validates the values it got
// and records further problems with Errf; Err returns them all in file order.
package tomlconf

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// MaxFileBytes bounds what ReadFile reads of a configuration or a file it names (a
// secret, a key file): a link to /dev/zero must not fill the memory.
const MaxFileBytes = 1 << 20

// Options tune a Decode.
type Options struct {
	// ZeroAllowed says which keys (indexed paths) may hold a zero duration, where zero
	// means "off"; every other duration must be positive.
	ZeroAllowed func(path string) bool
}

// Doc is one decoded document and the problems found in it so far.
type Doc struct {
	file    string
	dir     string          // relative file names in the document are relative to this
	lines   *keyLines       // nil until the syntax is known to be valid
	defined map[string]bool // indexed paths of every known key the document sets
	opts    Options
	errs    []Error
}

// Decode decodes data, read from path (for messages, and as the directory relative file
// names are resolved against; "" for none), into v, a pointer to a struct with toml tags.
// It reports false when v could not be decoded (bad syntax or types); doc.Err then says
// why. Otherwise v holds the values and doc may already hold unknown-key errors; the
// caller adds its own checks with Errf and ends with Err.
func Decode(data []byte, path string, v any, opts Options) (doc *Doc, ok bool) {
	d := &Doc{file: path, dir: filepath.Dir(path), defined: map[string]bool{}, opts: opts}
	if path == "" {
		d.dir = "."
	}
	text := string(data)
	lines := scanKeyLines(text)
	if lines.tooDeep {
		d.errs = append(d.errs, Error{File: path,
			Msg: fmt.Sprintf("arrays or inline tables nest more than %d levels deep", maxNesting)})
		return d, false
	}
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		d.decodeError(err)
		return d, false
	}
	d.lines = lines
	root := reflect.TypeOf(v).Elem()
	d.checkTypes("", raw, root)
	if len(d.errs) > 0 {
		return d, false
	}
	md, err := toml.Decode(text, v)
	if err != nil {
		d.decodeError(err)
		return d, false
	}
	d.unknownKeys(root, md.Undecoded())
	return d, true
}

// Errf records a problem with the key at path (an indexed path such as site[1].name).
func (d *Doc) Errf(path, format string, args ...any) {
	line := 0
	if d.lines != nil {
		line = d.lines.lineOf(path)
	}
	d.errs = append(d.errs, Error{File: d.file, Line: line, Key: path, Msg: fmt.Sprintf(format, args...)})
}

// Line is the line the key at path is written on (or, when it is not written, its
// closest enclosing key or table), 0 when unknown: for a message that names another
// place in the document, such as the first of two duplicates.
func (d *Doc) Line(path string) int {
	if d.lines == nil {
		return 0
	}
	return d.lines.lineOf(path)
}

// Defined reports whether the document sets the key at path.
func (d *Doc) Defined(path string) bool { return d.defined[path] }

// File is the path the document was read from, as given to Decode.
func (d *Doc) File() string { return d.file }

// OK reports whether no problem has been recorded.
func (d *Doc) OK() bool { return len(d.errs) == 0 }

// Err returns the problems in file order as an *Errors, or nil when there are none;
// those without a line (a missing section, say) come last.
func (d *Doc) Err() error {
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool {
		a, b := d.errs[i].Line, d.errs[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	return &Errors{Errors: d.errs}
}

// Resolve makes a file name from the document absolute, relative to the document's
// directory, so that the effective config means the same files wherever it is read from.
func (d *Doc) Resolve(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	if abs, err := filepath.Abs(filepath.Join(d.dir, name)); err == nil {
		return abs
	}
	return filepath.Join(d.dir, name)
}

// ReadableFile resolves a file name written at path and checks that the file can be
// read now, so that a missing CA bundle or password file is a config error at check
// time rather than a failure in the middle of the night. It rewrites *name to the
// resolved name, so that the rest of the program need not know where the document was.
// Only regular files are accepted: a FIFO would hang the check and a device could be
// read for ever.
func (d *Doc) ReadableFile(path string, name *string) {
	if *name == "" {
		return
	}
	*name = d.Resolve(*name)
	f, err := OpenRegular(*name)
	if err != nil {
		d.Errf(path, "%v; allowed: an existing, readable regular file", err)
		return
	}
	f.Close()
}

// ReadFile reads a regular file of at most MaxFileBytes.
func ReadFile(name string) ([]byte, error) {
	return ReadFileLimit(name, MaxFileBytes)
}

// ReadFileLimit reads a regular file of at most limit bytes. The file is opened without
// blocking, so that a FIFO or a device named by mistake (or by an attacker who can
// write a link) gives an error instead of a hang or an endless read.
func ReadFileLimit(name string, limit int64) ([]byte, error) {
	f, err := OpenRegular(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return data, nil
}

// errNotRegular says that a name is not a regular file.
var errNotRegular = errors.New("not a regular file")

// OpenRegular opens a regular file for reading; anything else (a directory, a FIFO, a
// device, a socket) is refused without reading from it.
func OpenRegular(name string) (*os.File, error) {
	f, err := openNonBlocking(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w (%s)", errNotRegular, fileKind(fi.Mode()))}
	}
	return f, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

// decodeError turns an error of the toml package into an Error. Syntax errors carry a
// position; others (which the type check should have caught first) carry only text.
func (d *Doc) decodeError(err error) {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		d.errs = append(d.errs, Error{File: d.file, Line: pe.Position.Line, Msg: "invalid TOML: " + pe.Message})
		return
	}
	d.errs = append(d.errs, Error{File: d.file, Msg: err.Error()})
}

// unknownKeys reports keys the decoder had no field for. toml names them without array
// indexes; the line scan finds each place they are written. Keys inside an unknown table
// are not repeated.
func (d *Doc) unknownKeys(root reflect.Type, keys []toml.Key) {
	unknown := make(map[string]bool, len(keys))
	for _, k := range keys {
		unknown[strings.Join(k, ".")] = true
	}
	for _, k := range keys {
		if len(k) > 1 && unknown[strings.Join(k[:len(k)-1], ".")] {
			continue
		}
		msg := "unknown key"
		if allowed := schemaKeys(root, k[:len(k)-1]); len(allowed) > 0 {
			msg += "; allowed here: " + strings.Join(allowed, ", ")
		}
		paths := d.lines.plain[strings.Join(k, ".")]
		if len(paths) == 0 {
			d.errs = append(d.errs, Error{File: d.file, Key: k.String(), Msg: msg})
		}
		for _, p := range paths {
			d.Errf(p, "%s", msg)
		}
	}
}

// schemaKeys lists the keys accepted in the table at the unindexed path below root.
func schemaKeys(root reflect.Type, path []string) []string {
	t := root
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
	if t.Kind() != reflect.Struct || isScalar(t) {
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
	timeType        = reflect.TypeFor[time.Time]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	tomlUnmarshaler = reflect.TypeFor[toml.Unmarshaler]()
)

// isScalar reports types that decode themselves from one TOML value: text types such as
// Duration, and types with their own UnmarshalTOML.
func isScalar(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(textUnmarshaler) || p.Implements(tomlUnmarshaler)
}

// checkTypes compares the generic decoding of the file with the Go types it will be
// decoded into. The toml package stops at the first mismatch and names it without array
// indexes; this walk reports all of them with their full paths, checks every value a
// type decodes itself (a bare number for a duration is the classic mistake), and notes
// which keys the file sets. Keys with no field are left to MetaData.Undecoded.
func (d *Doc) checkTypes(path string, v any, t reflect.Type) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isScalar(t) {
		d.defined[path] = true
		d.checkScalar(path, v, t)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		table, ok := v.(map[string]any)
		if !ok {
			d.Errf(path, "must be a table, not %s", describe(v))
			return
		}
		for _, key := range sortedKeys(table) {
			f, exact := fieldFor(t, key)
			if f == nil {
				continue
			}
			p := JoinKey(path, key)
			if !exact {
				d.Errf(p, "unknown key; keys are case-sensitive: did you mean %q?", f.name)
				continue
			}
			d.checkTypes(p, table[key], f.typ)
		}
	case reflect.Map:
		table, ok := v.(map[string]any)
		if !ok {
			d.Errf(path, "must be a table of key = value pairs, not %s", describe(v))
			return
		}
		d.defined[path] = true
		for _, key := range sortedKeys(table) {
			d.checkTypes(JoinKey(path, key), table[key], t.Elem())
		}
	case reflect.Slice:
		switch items := v.(type) {
		case []map[string]any:
			for i, item := range items {
				d.checkTypes(IndexPath(path, i), item, t.Elem())
			}
		case []any:
			d.defined[path] = true
			for i, item := range items {
				d.checkTypes(IndexPath(path, i), item, t.Elem())
			}
		default:
			d.Errf(path, "must be an array, not %s", describe(v))
		}
	case reflect.String:
		d.defined[path] = true
		if _, ok := v.(string); !ok {
			d.Errf(path, "must be a string, not %s", describe(v))
		}
	case reflect.Bool:
		d.defined[path] = true
		if _, ok := v.(bool); !ok {
			d.Errf(path, "must be true or false, not %s", describe(v))
		}
	case reflect.Int, reflect.Int64:
		d.defined[path] = true
		n, ok := v.(int64)
		if !ok {
			d.Errf(path, "must be an integer, not %s", describe(v))
		} else if reflect.Zero(t).OverflowInt(n) {
			d.Errf(path, "%d is too large", n)
		}
	case reflect.Float64:
		d.defined[path] = true
		switch v.(type) {
		case int64, float64:
		default:
			d.Errf(path, "must be a number, not %s", describe(v))
		}
	default:
		d.Errf(path, "has a type the config loader does not handle (%s)", t)
	}
}

// signed is a decoded value that can be negative or zero (Duration, and the agent's
// Timeout): Decode refuses both unless Options.ZeroAllowed names the key, which then
// allows zero.
type signed interface{ Sign() int }

// checkScalar checks one value of a type that decodes itself, by decoding it into a
// fresh value of that type: the type's own error says what is wrong.
func (d *Doc) checkScalar(path string, v any, t reflect.Type) {
	val := reflect.New(t)
	var err error
	switch u := val.Interface().(type) {
	case toml.Unmarshaler:
		err = u.UnmarshalTOML(v)
	case encoding.TextUnmarshaler:
		switch x := v.(type) {
		case time.Time:
			if t != timeType {
				d.Errf(path, "must be a string, not the date-time %s", x.Format(time.RFC3339))
			}
			return
		case string:
			err = u.UnmarshalText([]byte(x))
		case int64, float64:
			// Its text, so that a duration says "bare number 5 is not a duration".
			err = u.UnmarshalText(fmt.Appendf(nil, "%v", x))
		default:
			if _, isDuration := val.Elem().Interface().(signed); isDuration {
				d.Errf(path, "must be a string with a unit, e.g. \"500ms\", not %s", describe(v))
			} else {
				d.Errf(path, "must be a string, not %s", describe(v))
			}
			return
		}
	}
	if err != nil {
		d.Errf(path, "%v", err)
		return
	}
	s, ok := val.Elem().Interface().(signed)
	if !ok {
		return
	}
	zeroOK := d.opts.ZeroAllowed != nil && d.opts.ZeroAllowed(path)
	if sign := s.Sign(); sign < 0 || sign == 0 && !zeroOK {
		allowed := "a duration above zero"
		if zeroOK {
			allowed = "zero (off) or a positive duration"
		}
		d.Errf(path, "%q is not positive; allowed: %s", v, allowed)
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

// WrittenKeys lists the dotted keys, without array indexes, that a TOML document writes
// (tables included), for tests that a documented example shows every option.
func WrittenKeys(src string) []string {
	kl := scanKeyLines(src)
	seen := map[string]bool{}
	for k := range kl.plain {
		// A table is written when a key in it is.
		for p := k; p != ""; p = parentPath(p) {
			seen[p] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SchemaKeys lists every dotted key, without array indexes, that the type of v (a struct
// or a pointer to one) accepts, tables included, in field order.
func SchemaKeys(v any) []string {
	var keys []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		tt := tableType(t)
		if tt == nil {
			return
		}
		for _, f := range tomlFields(tt) {
			p := joinPlain(path, f.name)
			keys = append(keys, p)
			walk(f.typ, p)
		}
	}
	walk(reflect.TypeOf(v), "")
	return keys
}
