package config

import (
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/edgeprobe/edgeprobe/probes"
)

// Targets lists every target ready to schedule: each site's targets in file order (ICMP,
// DNS, HTTP, then TCP within a site), then the control targets with Site "". Labels are
// merged agent < site < target. Spec values share their slices and maps with c, so
// callers treat them as read-only.
//
// Names, intervals and timeouts that Load would fill are resolved here too, so that a
// Config built in code (in tests) yields the same targets as one loaded from a file.
func (c *Config) Targets() []Target {
	var out []Target
	for i := range c.Sites {
		s := &c.Sites[i]
		out = c.appendTargets(out, s.Name, s.Labels, &s.TargetSet)
	}
	if c.Control != nil {
		out = c.appendTargets(out, "", nil, c.Control)
	}
	return out
}

func (c *Config) appendTargets(out []Target, site string, siteLabels map[string]string, ts *TargetSet) []Target {
	add := func(o TargetOptions, kind probes.Kind, value any, named spec) {
		t := Target{
			Site:     site,
			Name:     o.Name,
			Kind:     kind,
			Interval: o.Interval.Duration,
			Timeout:  o.Timeout,
			Labels:   mergeLabels(c.Agent.Labels, siteLabels, o.Labels),
			Spec:     value,
		}
		if t.Name == "" {
			t.Name = defaultTargetName(named)
		}
		if t.Interval == 0 {
			t.Interval = c.Agent.Interval.Duration
		}
		if !t.Timeout.isSet() {
			t.Timeout = c.Agent.Timeout
		}
		out = append(out, t)
	}
	for _, t := range ts.ICMP {
		add(t.TargetOptions, probes.KindICMP, t.ICMPSpec, &t.ICMPSpec)
	}
	for _, t := range ts.DNS {
		add(t.TargetOptions, probes.KindDNS, t.DNSSpec, &t.DNSSpec)
	}
	for _, t := range ts.HTTP {
		add(t.TargetOptions, probes.KindHTTP, t.HTTPSpec, &t.HTTPSpec)
	}
	for _, t := range ts.TCP {
		add(t.TargetOptions, probes.KindTCP, t.TCPSpec, &t.TCPSpec)
	}
	return out
}

// mergeLabels layers label sets, later ones winning; nil when there are none.
func mergeLabels(layers ...map[string]string) map[string]string {
	var merged map[string]string
	for _, layer := range layers {
		if len(layer) == 0 {
			continue
		}
		if merged == nil {
			merged = make(map[string]string)
		}
		maps.Copy(merged, layer)
	}
	return merged
}

// WriteEffective writes the configuration as the agent runs it, every default spelled
// out, as TOML that Parse accepts again. The sites of included files are written out
// with the others, and include is left out, so the output is one whole file.
func (c *Config) WriteEffective(w io.Writer) error {
	if c.Path != "" {
		header := fmt.Sprintf("# Effective configuration of %s, defaults filled in.\n", c.Path)
		if files := c.IncludedFiles(); len(files) > 0 {
			header += fmt.Sprintf("# With the sites of %s.\n", strings.Join(files, ", "))
		}
		if _, err := fmt.Fprintf(w, "%s\n", header); err != nil {
			return fmt.Errorf("write effective config: %w", err)
		}
	}
	whole := *c
	whole.Include = nil
	if err := toml.NewEncoder(w).Encode(&whole); err != nil {
		return fmt.Errorf("write effective config: %w", err)
	}
	return nil
}
