// Package config is the agent's configuration: the TOML model of agent.toml, loading it
// with every problem reported as FILE:LINE: KEY: what is allowed, its defaults, and the
// resolved list of targets the scheduler runs. A probe spec's own defaults and bounds
// live beside the spec in probes/; this package calls them and adds where in the file
// a problem is. The exporters read their settings from here too, so that nothing
// downstream of the agent imports the agent to learn how it is configured.
package config

import (
	"time"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
	"github.com/edgeprobe/edgeprobe/probes"
)

// Config is the whole agent configuration as read from TOML. Load fills defaults and
// validates it; code that receives a *Config from Load may trust every field.
type Config struct {
	Path string `toml:"-"` // file it was read from, for messages
	// Include names files of [[site]] entries (glob patterns, relative to this file's
	// directory; include.go). Load reads them into Sites and resolves the patterns.
	Include   []string        `toml:"include,omitempty"`
	Agent     AgentConfig     `toml:"agent"`
	Sites     []SiteConfig    `toml:"site"`
	Control   *TargetSet      `toml:"control"` // optional: targets that prove our own uplink
	Exporters ExportersConfig `toml:"exporters"`

	stamp string // the included files as Load read them (IncludeStamp)
}

// AgentConfig holds the agent-wide settings and the defaults targets inherit.
type AgentConfig struct {
	Name            string   `toml:"name"`             // default: hostname
	Interval        Duration `toml:"interval"`         // default 1s
	Timeout         Timeout  `toml:"timeout"`          // "auto" (default) or a duration
	TimeoutMin      Duration `toml:"timeout_min"`      // floor for auto, default 20ms
	TimeoutMax      Duration `toml:"timeout_max"`      // ceiling for auto, default min(interval, 1s)
	ConfirmInterval Duration `toml:"confirm_interval"` // re-probe spacing while suspect, default 100ms
	FailThreshold   int      `toml:"fail_threshold"`   // consecutive failures to down, default 3
	// LatenessAllowance is how late the agent may handle a probe's deadline and still
	// judge its timeout (docs/architecture.md, "Lateness"); default 5ms, "0s" turns the guard off.
	LatenessAllowance Duration          `toml:"lateness_allowance"`
	ICMPMode          probes.ICMPMode   `toml:"icmp_mode"` // auto (default), raw, datagram
	StateDir          string            `toml:"state_dir"` // default /var/lib/edgeprobe
	Labels            map[string]string `toml:"labels"`
}

// SiteConfig is one datacenter and the endpoints that live in it.
type SiteConfig struct {
	Name   string            `toml:"name"`
	Labels map[string]string `toml:"labels"`
	TargetSet

	from siteSource // where an included site was written; zero for Config.Path's
}

// TargetSet is the lists of targets by kind, shared by sites and the control set.
type TargetSet struct {
	ICMP []ICMPTarget `toml:"icmp"`
	DNS  []DNSTarget  `toml:"dns"`
	HTTP []HTTPTarget `toml:"http"`
	TCP  []TCPTarget  `toml:"tcp"`
}

// TargetOptions are the per-target overrides every kind accepts.
type TargetOptions struct {
	Name     string            `toml:"name"`     // default derived from the endpoint, unique within a site
	Interval Duration          `toml:"interval"` // default the agent's
	Timeout  Timeout           `toml:"timeout"`  // default the agent's
	Labels   map[string]string `toml:"labels"`
}

// ICMPTarget is an [[site.icmp]] entry.
type ICMPTarget struct {
	TargetOptions
	probes.ICMPSpec
}

// DNSTarget is a [[site.dns]] entry.
type DNSTarget struct {
	TargetOptions
	probes.DNSSpec
}

// HTTPTarget is a [[site.http]] entry.
type HTTPTarget struct {
	TargetOptions
	probes.HTTPSpec
}

// TCPTarget is a [[site.tcp]] entry.
type TCPTarget struct {
	TargetOptions
	probes.TCPSpec
}

// ExportersConfig configures where results go.
type ExportersConfig struct {
	Stdout      *StdoutConfig       `toml:"stdout"`       // default: text format, changes only
	Prometheus  *PrometheusConfig   `toml:"prometheus"`   // absent: no /metrics endpoint
	RemoteWrite []RemoteWriteConfig `toml:"remote_write"` // one entry per receiver
}

// PrometheusConfig configures the /metrics endpoint.
type PrometheusConfig struct {
	Listen    string `toml:"listen"`     // default "127.0.0.1:9469"
	Path      string `toml:"path"`       // default "/metrics"
	WebConfig string `toml:"web_config"` // exporter-toolkit web config file (TLS, basic auth)
}

// RemoteWriteConfig is one Prometheus remote_write 1.0 receiver (the view, Prometheus,
// Mimir, VictoriaMetrics, ...).
type RemoteWriteConfig struct {
	URL             string            `toml:"url"`
	Name            string            `toml:"name"`              // default the URL's host:port
	PushInterval    Duration          `toml:"push_interval"`     // snapshot/heartbeat period, default 1s
	Timeout         Duration          `toml:"timeout"`           // per request, default 5s
	QueueSize       int               `toml:"queue_size"`        // batches held in memory, default 1000
	Headers         map[string]string `toml:"headers"`           // extra request headers
	BearerTokenFile string            `toml:"bearer_token_file"` // token sent as Authorization: Bearer
	BasicAuth       *BasicAuthConfig  `toml:"basic_auth"`
	TLS             probes.TLSSpec    `toml:"tls"`   // enable is ignored; https URLs use TLS
	Spool           *SpoolConfig      `toml:"spool"` // absent: memory queue only
}

// BasicAuthConfig is HTTP basic authentication with the password kept in a file.
type BasicAuthConfig struct {
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"`
}

// SpoolConfig bounds the on-disk spool kept under agent.state_dir while a receiver is down.
type SpoolConfig struct {
	MaxBytes int64    `toml:"max_bytes"` // default 64 MiB
	MaxAge   Duration `toml:"max_age"`   // default 1h; older batches are dropped and counted
}

// StdoutConfig configures the stdout exporter.
type StdoutConfig struct {
	Format  string   `toml:"format"`  // "text" (default) or "json"
	Results string   `toml:"results"` // "changes" (default: state changes only) or "all" (every probe)
	Summary Duration `toml:"summary"` // text format: one summary line this often, default 10s, "0s" off
}

// Target is one fully resolved probe target: defaults applied, ready to schedule.
type Target struct {
	Site     string // site name, or "" for a control target
	Name     string // unique within its site
	Kind     probes.Kind
	Interval time.Duration
	Timeout  Timeout // Auto or Fixed
	Labels   map[string]string
	Spec     any // probes.ICMPSpec, DNSSpec, HTTPSpec or TCPSpec (value, not pointer)
}

// Duration is a time.Duration written in TOML as a string with a unit ("250ms", "1s").
// A bare number is an error, never nanoseconds.
type Duration = tomlconf.Duration
