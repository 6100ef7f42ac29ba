package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// Target files. `include = ["sites.d/*.toml"]` at the top of agent.toml names files
// that hold [[site]] entries and nothing else, so that sites can be added and removed by
// dropping a file (config management, one file per datacenter) without touching the
// agent's own settings. Patterns are filepath.Match globs, relative to agent.toml's
// directory like every file name in it (docs/architecture.md, "Configuration"); a pattern
// without wildcards names a file that must exist. Each file is decoded on its own, so
// that its errors carry its own FILE:LINE, and its sites join the main file's in order:
// the main file's first, then each pattern's files in name order. The agent re-reads
// them when they change (cmd/edgeprobe/agent.go); IncludeStamp and StatIncludes tell
// it when.

// siteFile is what an included file may hold.
type siteFile struct {
	Sites []SiteConfig `toml:"site"`
}

// siteSource is where an included site was written: its file and its index there.
type siteSource struct {
	file  string
	index int
}

// sitePlace is where a site name was first seen, for the duplicate's message.
type sitePlace struct {
	file string // "" for the main file
	path string // site[i] in that file
	line int
}

// agentOnly are the top-level keys of agent.toml, which an included file may not hold.
var agentOnly = []string{"include", "agent", "control", "exporters"}

// includes resolves c.Include, reads every file it names and checks and appends their
// sites; seen holds the site names of the main file. Problems with a pattern are the
// main file's; problems inside a file are that file's (l.included).
func (l *loader) includes(c *Config, seen map[string]sitePlace) {
	for i, pattern := range c.Include {
		path := tomlconf.IndexPath("include", i)
		if pattern == "" {
			l.Errf(path, "empty; allowed: a file name or a glob pattern such as \"sites.d/*.toml\"")
			continue
		}
		c.Include[i] = l.Resolve(pattern)
		if _, err := filepath.Match(c.Include[i], ""); err != nil {
			l.Errf(path, "%q is not a valid pattern: %v", pattern, err)
			continue
		}
		if !hasMeta(pattern) {
			if _, err := os.Stat(c.Include[i]); err != nil {
				l.Errf(path, "%v; allowed: an existing file, or a glob pattern (which may match none)", err)
			}
		}
	}
	var stamp strings.Builder
	for _, name := range includeFiles(c.Include, c.Path) {
		// The stamp is taken before the file is read: a change in between shows as a
		// stamp that differs, and the file is read again.
		fi, err := os.Stat(name)
		stampFile(&stamp, name, fi, err)
		data, err := tomlconf.ReadFile(name)
		if err != nil {
			l.Errf("include", "%v; allowed: a readable regular file of at most %d bytes", err, tomlconf.MaxFileBytes)
			continue
		}
		l.includeFile(c, name, data, seen)
	}
	c.stamp = stamp.String()
}

// includeFile checks one included file and appends its sites to c.
func (l *loader) includeFile(c *Config, name string, data []byte, seen map[string]sitePlace) {
	var f siteFile
	doc, ok := tomlconf.Decode(data, name, &f, tomlconf.Options{ZeroAllowed: zeroDurationAllowed})
	inc := &loader{Doc: doc}
	l.included = append(l.included, inc)
	if !ok {
		return
	}
	for j := range f.Sites {
		s := &f.Sites[j]
		s.from = siteSource{file: name, index: j}
		inc.site(s, tomlconf.IndexPath("site", j), &c.Agent, seen)
	}
	c.Sites = append(c.Sites, f.Sites...)
}

// includedErr returns the problems of the main file and of every included file in one
// *tomlconf.Errors, or nil; an included file's keys that belong in the main file are
// said to be so.
func (l *loader) includedErr() error {
	var all []tomlconf.Error
	add := func(err error, included bool) {
		errs, _ := err.(*tomlconf.Errors)
		if errs == nil {
			return
		}
		for _, e := range errs.Errors {
			if top := topKey(e.Key); included && top != "site" && strings.HasPrefix(e.Msg, "unknown key") {
				e.Key, e.Msg = top, "not allowed in an included file, which holds only [[site]] entries"
				if slices.Contains(agentOnly, top) {
					e.Msg += fmt.Sprintf("; %s belongs in %s", top, l.File())
				}
			}
			all = append(all, e)
		}
	}
	add(l.Err(), false)
	for _, inc := range l.included {
		add(inc.Err(), true)
	}
	if len(all) == 0 {
		return nil
	}
	return &tomlconf.Errors{Errors: all}
}

// topKey is the top-level key of an indexed key path: exporters of exporters.stdout,
// sites of sites[0].name.
func topKey(path string) string {
	if i := strings.IndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return path
}

// hasMeta says whether a pattern has glob wildcards.
func hasMeta(pattern string) bool { return strings.ContainsAny(pattern, `*?[\`) }

// includeFiles lists the files the resolved patterns match now: each pattern's matches
// in name order, each file once, without the main file itself (a "*.toml" beside it).
// As in a shell, a wildcard matches no leading dot unless the pattern writes one, so
// editors' hidden lock and swap files are not read.
func includeFiles(patterns []string, self string) []string {
	selfAbs, _ := filepath.Abs(self)
	seen := map[string]bool{selfAbs: true}
	var files []string
	for _, p := range patterns {
		matches, err := filepath.Glob(p)
		if err != nil {
			continue // a bad pattern is reported by Load
		}
		dotOK := strings.HasPrefix(filepath.Base(p), ".")
		for _, m := range matches {
			if seen[m] || !dotOK && strings.HasPrefix(filepath.Base(m), ".") {
				continue
			}
			seen[m] = true
			files = append(files, m)
		}
	}
	return files
}

// stampFile appends what tells one file's versions apart: its name, size and
// modification time (nanoseconds on the file systems an agent runs on), or that it could
// not be examined.
func stampFile(b *strings.Builder, name string, fi os.FileInfo, err error) {
	b.WriteString(strconv.Quote(name))
	if err != nil {
		b.WriteString(" ?\n")
		return
	}
	fmt.Fprintf(b, " %d %d\n", fi.Size(), fi.ModTime().UnixNano())
}

// IncludeStamp describes the included files as Load read them: their names, sizes and
// modification times. "" without include.
func (c *Config) IncludeStamp() string { return c.stamp }

// StatIncludes describes the files c's include patterns match now, as IncludeStamp
// does: a different value means a file was added, removed or changed since. It costs a
// directory read per pattern and a stat per file.
func (c *Config) StatIncludes() string {
	var b strings.Builder
	for _, name := range includeFiles(c.Include, c.Path) {
		fi, err := os.Stat(name)
		stampFile(&b, name, fi, err)
	}
	return b.String()
}

// IncludedFiles lists the files the sites came from besides Config.Path, in order.
func (c *Config) IncludedFiles() []string {
	var files []string
	for _, s := range c.Sites {
		if f := s.from.file; f != "" && (len(files) == 0 || files[len(files)-1] != f) {
			files = append(files, f)
		}
	}
	return files
}
