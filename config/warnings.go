package config

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
	"github.com/edgeprobe/edgeprobe/probes"
)

// Warnings lists what the configuration allows but puts at risk: secrets that every user
// on the machine can read. A secret file named in the config (a remote_write bearer token
// or basic auth password, a TLS client key, the Prometheus exporter's web config and the
// TLS key it names) that is readable by others, and the config file itself when it holds
// secrets inline (header values, which often carry tokens, and passwords or query
// strings in URLs), each give one warning naming the file and the fix. Nothing here is
// an error: the agent starts all the same. Call it on a Config from Load, whose file
// names are absolute.
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
	// Inline secrets by the file they are written in: the main one, then included ones.
	inline := map[string][]string{}
	files := []string{c.Path}
	addInline := func(file, key string) {
		if _, ok := inline[file]; !ok && file != c.Path {
			files = append(files, file)
		}
		inline[file] = append(inline[file], key)
	}
	tlsKey := func(key string, t probes.TLSSpec) {
		secret(t.KeyFile, key+".key_file")
	}
	inlineURL := func(file, key, raw string) {
		if urlHoldsSecret(raw) {
			addInline(file, key)
		}
	}
	for _, s := range c.targetSets() {
		for i, t := range s.set.DNS {
			tlsKey(fmt.Sprintf("%s.dns[%d].tls", s.key, i), t.TLS)
		}
		for i, t := range s.set.HTTP {
			key := fmt.Sprintf("%s.http[%d]", s.key, i)
			tlsKey(key+".tls", t.TLS)
			if len(t.Headers) > 0 {
				addInline(s.file, key+".headers")
			}
			inlineURL(s.file, key+".url", t.URL)
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
			addInline(c.Path, key+".headers")
		}
		inlineURL(c.Path, key+".url", rw.URL)
	}
	if p := c.Exporters.Prometheus; p != nil && p.WebConfig != "" {
		secret(p.WebConfig, "exporters.prometheus.web_config")
		for _, key := range webConfigKeyFiles(p.WebConfig) {
			secret(key, "key_file of "+p.WebConfig)
		}
	}
	for _, file := range files {
		if keys := inline[file]; len(keys) > 0 && file != "" && worldReadable(file) {
			out = append(out, fmt.Sprintf("%s holds secrets inline (%s) and is readable by every user; chmod o-r %s",
				file, strings.Join(keys, ", "), file))
		}
	}
	return out
}

// keyedSet is a site's (or the control set's) targets with their key in the file they
// are written in.
type keyedSet struct {
	file, key string
	set       *TargetSet
}

func (c *Config) targetSets() []keyedSet {
	var sets []keyedSet
	for i := range c.Sites {
		s := &c.Sites[i]
		file, index := c.Path, i
		if s.from.file != "" {
			file, index = s.from.file, s.from.index
		}
		sets = append(sets, keyedSet{file, fmt.Sprintf("site[%d]", index), &s.TargetSet})
	}
	if c.Control != nil {
		sets = append(sets, keyedSet{c.Path, "control", c.Control})
	}
	return sets
}

// urlHoldsSecret reports a URL with a password or a query string: either may carry a
// credential (user:password@, ?api_key=).
func urlHoldsSecret(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	_, hasPassword := u.User.Password()
	return hasPassword || u.RawQuery != ""
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
	data, err := tomlconf.ReadFile(path)
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
