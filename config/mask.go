package config

import (
	"maps"
	"slices"

	"github.com/edgeprobe/edgeprobe/internal/netcheck"
)

// Mask is what a masked secret reads as, as in a URL that netcheck.Redact shows.
const Mask = netcheck.Mask

// Masked is a copy of c for printing (edgeprobe check): the secrets a config can hold
// inline are replaced by Mask, namely the passwords and query values of URLs
// (netcheck.Redact), the values of request headers, which often carry tokens, and HTTP
// probes' request bodies. Secrets
// kept in files are named by their paths only and need nothing. The agent runs with c
// itself; c is not changed. Masked reports whether anything was masked.
func (c *Config) Masked() (*Config, bool) {
	m := *c
	masked := false
	url := func(raw string) string {
		if !urlHoldsSecret(raw) {
			return raw
		}
		masked = true
		return netcheck.Redact(raw)
	}
	headers := func(h map[string]string) map[string]string {
		if len(h) == 0 {
			return h
		}
		masked = true
		out := maps.Clone(h)
		for k := range out {
			out[k] = Mask
		}
		return out
	}
	maskSet := func(ts TargetSet) TargetSet {
		ts.HTTP = slices.Clone(ts.HTTP)
		for i := range ts.HTTP {
			ts.HTTP[i].URL = url(ts.HTTP[i].URL)
			ts.HTTP[i].Headers = headers(ts.HTTP[i].Headers)
			// A request body (a login form, a JSON query) may carry a credential as
			// surely as a header does.
			if ts.HTTP[i].Body != "" {
				ts.HTTP[i].Body, masked = Mask, true
			}
		}
		return ts
	}
	m.Sites = slices.Clone(c.Sites)
	for i := range m.Sites {
		m.Sites[i].TargetSet = maskSet(m.Sites[i].TargetSet)
	}
	if c.Control != nil {
		ctl := maskSet(*c.Control)
		m.Control = &ctl
	}
	m.Exporters.RemoteWrite = slices.Clone(c.Exporters.RemoteWrite)
	for i := range m.Exporters.RemoteWrite {
		rw := &m.Exporters.RemoteWrite[i]
		rw.URL = url(rw.URL)
		rw.Headers = headers(rw.Headers)
	}
	return &m, masked
}
