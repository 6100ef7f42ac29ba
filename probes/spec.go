package probes

// The specs below describe one endpoint each. They carry toml tags because the agent's
// configuration embeds them directly; the probes package itself never reads files.
// Zero values mean "the default" wherever a default exists.

// ICMPSpec is an echo request target.
type ICMPSpec struct {
	Address string `toml:"address"` // IP literal or host name
	// Family restricts name resolution: "" (prefer IPv4, fall back to IPv6), "ip4", "ip6".
	Family string `toml:"family"`
	// Size is the echo payload size in bytes (default 56, as ping).
	Size int `toml:"size"`
}

// DNSSpec is a query sent to one server.
type DNSSpec struct {
	Server    string `toml:"server"`    // host or host:port (port defaults to 53, 853 for tls)
	Transport string `toml:"transport"` // "udp" (default, retried over TCP when truncated), "tcp", "tls"
	Query     string `toml:"query"`     // name to ask for (made fully qualified)
	Type      string `toml:"type"`      // RR type mnemonic, default "A"
	// Rcodes accepted as success, as mnemonics ("NOERROR", "NXDOMAIN"); default ["NOERROR"].
	Rcodes []string `toml:"rcodes"`
	// Answers, when set, must each match (as a regular expression) at least one RR of the
	// answer section in its zone-file text form, e.g. "\\tA\\t198\\.51\\.100\\.12$".
	Answers []string `toml:"answers"`
	// Recursion sets the RD bit; default true.
	Recursion *bool   `toml:"recursion"`
	TLS       TLSSpec `toml:"tls"` // for transport "tls"
}

// HTTPSpec is a request to one URL.
type HTTPSpec struct {
	URL     string            `toml:"url"`
	Method  string            `toml:"method"` // default GET
	Headers map[string]string `toml:"headers"`
	Body    string            `toml:"body"` // request body
	// Status lists accepted codes: exact ("204") or classes ("2xx"); default ["2xx", "3xx"]
	// when redirects are not followed, ["2xx"] when they are.
	Status []string `toml:"status"`
	// BodyMatch, when set, is a regular expression the response body must match.
	BodyMatch string `toml:"body_match"`
	// BodyLimit caps how many bytes of body are read (default 1 MiB); a larger body fails
	// with ReasonBody when BodyMatch is set, and is cut off (not an error) otherwise.
	BodyLimit int64 `toml:"body_limit"`
	// Redirects is how many redirects are followed; default 0 (the first answer counts).
	Redirects int `toml:"redirects"`
	// KeepAlive reuses connections between probes; default false: every probe opens a
	// fresh connection so that a dead path cannot hide behind a live pooled one.
	KeepAlive bool    `toml:"keep_alive"`
	Family    string  `toml:"family"` // "", "ip4", "ip6"
	TLS       TLSSpec `toml:"tls"`
}

// TCPSpec is a TCP connect, optionally followed by a TLS handshake.
type TCPSpec struct {
	Address string  `toml:"address"` // host:port
	Family  string  `toml:"family"`  // "", "ip4", "ip6"
	TLS     TLSSpec `toml:"tls"`     // handshake only when TLS.Enable
}

// TLSSpec configures certificate verification. Verification is on unless Insecure.
type TLSSpec struct {
	Enable     bool   `toml:"enable"`      // TCP only: do a TLS handshake after connect
	CAFile     string `toml:"ca_file"`     // PEM bundle; default the system roots
	CertFile   string `toml:"cert_file"`   // client certificate (PEM)
	KeyFile    string `toml:"key_file"`    // client key (PEM)
	ServerName string `toml:"server_name"` // SNI and name to verify; default the target host
	Insecure   bool   `toml:"insecure"`    // skip verification; only when asked
}

// ICMPMode chooses the socket type of the ICMP engine.
type ICMPMode string

// ICMP socket modes. Auto tries raw, then datagram.
const (
	ICMPAuto     ICMPMode = "auto"
	ICMPRaw      ICMPMode = "raw"      // SOCK_RAW: root or CAP_NET_RAW
	ICMPDatagram ICMPMode = "datagram" // SOCK_DGRAM "ping socket": gid within net.ipv4.ping_group_range
)

// DefaultBodyLimit is HTTPSpec.BodyLimit's default.
const DefaultBodyLimit = 1 << 20
