package config

import (
	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// Load reads, checks and completes the agent configuration in the file at path and the
// files its include names. Errors reading the file come back as the *fs.PathError the os
// package gives (it names the file and the cause); problems with its content, or with an
// included file, come back as *tomlconf.Errors, each naming its own file.
func Load(path string) (*Config, error) {
	data, err := tomlconf.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse checks and completes a configuration read from path (used in messages, and as
// the directory relative file names in it are resolved against). The returned Config has
// every default filled in; on any problem it returns nil and a *tomlconf.Errors.
func Parse(data []byte, path string) (*Config, error) {
	cfg := &Config{Path: path}
	doc, ok := tomlconf.Decode(data, path, cfg, tomlconf.Options{ZeroAllowed: zeroDurationAllowed})
	if !ok {
		return nil, doc.Err()
	}
	l := &loader{Doc: doc}
	l.normalize(cfg)
	if err := l.includedErr(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// zeroDurationAllowed names the durations where "0s" means something (off).
func zeroDurationAllowed(path string) bool {
	return path == "exporters.stdout.summary" || path == "agent.lateness_allowance"
}

// loader checks one decoded configuration, recording problems in its Doc; the main
// file's loader also holds those of the files it includes.
type loader struct {
	*tomlconf.Doc
	included []*loader
}
