package tomlconf

import (
	"fmt"
	"path/filepath"

	"go.yaml.in/yaml/v2"
)

// ReadSecretFile resolves a secret's file name written at path (a token file) and reads
// it, a regular file of at most MaxSecretBytes; a problem is recorded at path and ok is
// false.
func (d *Doc) ReadSecretFile(path string, name *string) (data []byte, ok bool) {
	*name = d.Resolve(*name)
	data, err := ReadFileLimit(*name, MaxSecretBytes)
	if err != nil {
		d.Errf(path, "%v; allowed: an existing, readable regular file", err)
		return nil, false
	}
	return data, true
}

// WebConfigFile is ReadableFile for an exporter-toolkit web config (TLS and basic auth
// of an HTTP server), which names files of its own: the certificate, its key and the CA
// of client certificates. Those are checked the same way (regular files, read with a
// size cap: the key as a secret) before exporter-toolkit reads them, since it reads
// whatever it is given: a FIFO would hang the program's start, /dev/zero exhaust its
// memory. It does not judge the rest of the file: web.Validate does.
func (d *Doc) WebConfigFile(path string, name *string) {
	d.ReadableFile(path, name)
	if *name == "" || !d.OK() {
		return
	}
	files, err := WebConfigFiles(*name)
	if err != nil {
		return // not YAML: web.Validate says so, with its own words
	}
	for _, f := range files {
		if _, err := ReadFileLimit(f.Path, f.Limit); err != nil {
			d.Errf(path, "%s: %s: %v; allowed: an existing, readable regular file", *name, f.Key, err)
		}
	}
}

// WebConfigFileRef is a file a web config names.
type WebConfigFileRef struct {
	Key   string // e.g. tls_server_config.cert_file
	Path  string // resolved against the web config's directory, as exporter-toolkit does
	Limit int64  // the size cap it is read with
}

// WebConfigFiles lists the files an exporter-toolkit web config names, read from the
// regular file name (at most MaxFileBytes).
func WebConfigFiles(name string) ([]WebConfigFileRef, error) {
	data, err := ReadFile(name)
	if err != nil {
		return nil, err
	}
	return webConfigFiles(data, filepath.Dir(name))
}

func webConfigFiles(data []byte, dir string) ([]WebConfigFileRef, error) {
	var wc struct {
		TLS struct {
			Cert     string `yaml:"cert_file"`
			Key      string `yaml:"key_file"`
			ClientCA string `yaml:"client_ca_file"`
		} `yaml:"tls_server_config"`
	}
	if err := yaml.Unmarshal(data, &wc); err != nil {
		return nil, fmt.Errorf("web config: %w", err)
	}
	var out []WebConfigFileRef
	for _, f := range []WebConfigFileRef{
		{"tls_server_config.cert_file", wc.TLS.Cert, MaxFileBytes},
		{"tls_server_config.key_file", wc.TLS.Key, MaxSecretBytes},
		{"tls_server_config.client_ca_file", wc.TLS.ClientCA, MaxFileBytes},
	} {
		if f.Path == "" {
			continue
		}
		if !filepath.IsAbs(f.Path) {
			f.Path = filepath.Join(dir, f.Path)
		}
		out = append(out, f)
	}
	return out, nil
}
