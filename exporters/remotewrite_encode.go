package exporters

import (
	"bytes"
	"math"
	"slices"
	"sort"

	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/exporters/prompb"
	"github.com/edgeprobe/edgeprobe/probes"
)

// snapEncoder writes remote_write snapshots without building them as messages.
//
// A snapshot is every series of the agent's state, and at 1000 targets that is some 3000
// series: building a prompb.TimeSeries with sorted Label messages for each one per push
// cost about 10 ms and 38,000 allocations. The label set of a series never changes, so
// each one is encoded once (sorted, as the protobuf Label messages of the TimeSeries) when
// the site or target first appears, and kept beside its state; a snapshot copies the
// values under the state's lock, then appends, per series, the cached label bytes and one
// Sample into a reused buffer and compresses it into another. The bytes are those
// proto.Marshal produces for the same WriteRequest (TestSnapshotEncodingMatchesProto).
type snapEncoder struct {
	agentName string
	extra     []labelPair

	isolated, impaired, pushInterval []byte // the agent-wide series' labels

	series     []snapSeries // this snapshot's series, reused
	raw        []byte       // the WriteRequest, reused
	compressed []byte       // snappy of raw, reused
}

type snapSeries struct {
	labels []byte // encoded Label fields of the TimeSeries; never modified once built
	value  float64
}

// siteLabels are a site's series, in the order snapshot writes them. The states are in
// every snapshot from the first; since and detect once timesSent.
type siteLabels struct {
	states        [4][]byte // edgeprobe_site_state per contract.SiteStates
	since, detect []byte
	timesSent     bool
}

// targetLabels are a target's series, built for one kind. certExpiry is built on the
// first snapshot that has one, so that the targets without TLS (most) do without it.
// sent says which of them the last snapshot carried.
type targetLabels struct {
	kind                          probes.Kind
	up, success, duration, reason []byte
	certExpiry                    []byte
	sent                          seriesBits
}

// seriesBits name a target's series.
type seriesBits uint8

const (
	bitUp seriesBits = 1 << iota
	bitSuccess
	bitDuration
	bitReason
	bitCertExpiry
)

// of lists the label sets of the series in bits.
func (l *targetLabels) of(bits seriesBits) [][]byte {
	var out [][]byte
	for _, s := range []struct {
		bit    seriesBits
		labels []byte
	}{{bitUp, l.up}, {bitSuccess, l.success}, {bitDuration, l.duration}, {bitReason, l.reason}, {bitCertExpiry, l.certExpiry}} {
		if bits&s.bit != 0 {
			out = append(out, s.labels)
		}
	}
	return out
}

// Staleness markers (docs/architecture.md, "The push contract"). A series the last snapshot
// carried and the next one does not (its target or site removed by a reload, a kind
// changed, a target's state gone) would stay in a Prometheus-compatible receiver for its
// lookback, 5 minutes by default, as if still reported. So the next snapshot sends each
// such series once more with the staleness marker, which ends it at once: what
// Prometheus's own scrape loop does for a series that leaves a target's page. The view
// reads a NaN as no state (view/receiver.go). A marker is lost with its batch if the
// batch is dropped; the lookback then ends the series as before.

// staleNaN is the Prometheus staleness marker as a sample value.
var staleNaN = math.Float64frombits(contract.StaleNaN)

// goneSeries is one series to end in the next snapshot. key names its target (or, with
// key.target "", its site), so that one that is back by then is not ended: a marker and a
// value at the same timestamp would make the receiver refuse the whole batch.
type goneSeries struct {
	key    promTargetKey
	labels []byte
}

// endTarget queues the markers of every series of t's encoding that the last snapshot
// carried. s.mu is held.
func (s *promState) endTarget(t *promTargetState) {
	if t.enc == nil {
		return
	}
	for _, labels := range t.enc.of(t.enc.sent) {
		s.gone = append(s.gone, goneSeries{t.key, labels})
	}
	t.enc.sent = 0
}

// endSite queues the markers of a removed site's series. s.mu is held.
func (s *promState) endSite(site *promSiteState) {
	if site.enc == nil {
		return
	}
	key := promTargetKey{site: site.name}
	for _, labels := range site.enc.states {
		s.gone = append(s.gone, goneSeries{key, labels})
	}
	if site.enc.timesSent {
		s.gone = append(s.gone, goneSeries{key, site.enc.since}, goneSeries{key, site.enc.detect})
	}
}

// carries reports whether this snapshot carries the series labels of the target or site
// key (back after its removal). s.mu is held.
func (s *promState) carries(key promTargetKey, labels []byte) bool {
	if key.target == "" {
		site := s.sites[key.site]
		if site == nil || site.enc == nil {
			return false
		}
		for _, l := range site.enc.states {
			if bytes.Equal(l, labels) {
				return true
			}
		}
		return site.enc.timesSent && (bytes.Equal(site.enc.since, labels) || bytes.Equal(site.enc.detect, labels))
	}
	t := s.targets[key]
	if t == nil || t.enc == nil {
		return false
	}
	return slices.ContainsFunc(t.enc.of(t.enc.sent), func(l []byte) bool { return bytes.Equal(l, labels) })
}

func newSnapEncoder(agentName string, extra []labelPair) *snapEncoder {
	e := &snapEncoder{agentName: agentName, extra: extra}
	e.isolated = e.labels(contract.MetricAgentIsolated)
	e.impaired = e.labels(contract.MetricAgentImpaired)
	e.pushInterval = e.labels(contract.MetricPushInterval)
	return e
}

// labels encodes the sorted label set of one series: __name__, agent, the agent labels and
// pairs; an empty value means no label (the site of a control target).
func (e *snapEncoder) labels(name string, pairs ...labelPair) []byte {
	all := make([]labelPair, 0, 2+len(e.extra)+len(pairs))
	all = append(all, labelPair{contract.LabelName, name}, labelPair{contract.LabelAgent, e.agentName})
	all = append(all, e.extra...)
	for _, p := range pairs {
		if p.value != "" {
			all = append(all, p)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].name < all[j].name })
	var b []byte
	for _, l := range all {
		size := protowire.SizeTag(1) + protowire.SizeBytes(len(l.name)) + protowire.SizeTag(2) + protowire.SizeBytes(len(l.value))
		b = protowire.AppendTag(b, 1, protowire.BytesType) // TimeSeries.labels
		b = protowire.AppendVarint(b, uint64(size))
		b = protowire.AppendTag(b, 1, protowire.BytesType) // Label.name
		b = protowire.AppendString(b, l.name)
		b = protowire.AppendTag(b, 2, protowire.BytesType) // Label.value
		b = protowire.AppendString(b, l.value)
	}
	return b
}

func (e *snapEncoder) siteLabels(site string) *siteLabels {
	l := &siteLabels{}
	for i, state := range contract.SiteStates {
		l.states[i] = e.labels(contract.MetricSiteState, labelPair{contract.LabelSite, site}, labelPair{contract.LabelState, state})
	}
	l.since = e.labels(contract.MetricSiteStateChange, labelPair{contract.LabelSite, site})
	l.detect = e.labels(contract.MetricSiteDetect, labelPair{contract.LabelSite, site})
	return l
}

func targetPairs(key promTargetKey, kind probes.Kind) []labelPair {
	return []labelPair{{contract.LabelSite, key.site}, {contract.LabelTarget, key.target}, {contract.LabelKind, string(kind)}}
}

func (e *snapEncoder) targetLabels(key promTargetKey, kind probes.Kind) *targetLabels {
	pairs := targetPairs(key, kind)
	return &targetLabels{
		kind:     kind,
		up:       e.labels(contract.MetricTargetUp, pairs...),
		success:  e.labels(contract.MetricProbeSuccess, pairs...),
		duration: e.labels(contract.MetricProbeDuration, pairs...),
		reason:   e.labels(contract.MetricTargetFailureReason, pairs...),
	}
}

// collect copies the current state's series into e.series (the same series, in the same
// order, as promState.series).
func (e *snapEncoder) collect(s *promState, pushInterval float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append(e.series[:0],
		snapSeries{e.isolated, boolValue(s.isolated)},
		snapSeries{e.impaired, boolValue(s.impaired)},
		snapSeries{e.pushInterval, pushInterval})
	for _, site := range s.siteList {
		if site.enc == nil {
			site.enc = e.siteLabels(site.name)
		}
		for i, state := range contract.SiteStates {
			out = append(out, snapSeries{site.enc.states[i], boolValue(site.state == state)})
		}
		if !site.since.IsZero() {
			out = append(out,
				snapSeries{site.enc.since, float64(site.since.UnixNano()) / 1e9},
				snapSeries{site.enc.detect, site.detect.Seconds()})
			site.enc.timesSent = true
		}
	}
	for _, t := range s.targetList {
		if t.enc != nil && t.enc.kind != t.kind {
			s.endTarget(t) // a kind changed without a removal (sinks fed by hand)
			t.enc = nil
		}
		if t.enc == nil {
			t.enc = e.targetLabels(t.key, t.kind)
		}
		var sent seriesBits
		switch t.state {
		case agent.TargetUp, agent.TargetSuspect:
			out = append(out, snapSeries{t.enc.up, 1})
			sent |= bitUp
		case agent.TargetDown:
			out = append(out, snapSeries{t.enc.up, 0})
			sent |= bitUp
		}
		if t.probed {
			out = append(out,
				snapSeries{t.enc.success, boolValue(t.ok)},
				snapSeries{t.enc.duration, t.rtt.Seconds()},
				snapSeries{t.enc.reason, float64(contract.FailureReasonCode(string(t.reason)))})
			sent |= bitSuccess | bitDuration | bitReason
		}
		if !t.certExpiry.IsZero() {
			if t.enc.certExpiry == nil {
				t.enc.certExpiry = e.labels(contract.MetricProbeCertExpiry, targetPairs(t.key, t.kind)...)
			}
			out = append(out, snapSeries{t.enc.certExpiry, float64(t.certExpiry.Unix())})
			sent |= bitCertExpiry
		}
		if ended := t.enc.sent &^ sent; ended != 0 {
			for _, labels := range t.enc.of(ended) {
				s.gone = append(s.gone, goneSeries{t.key, labels})
			}
		}
		t.enc.sent = sent
	}
	for _, g := range s.gone {
		if !s.carries(g.key, g.labels) {
			out = append(out, snapSeries{g.labels, staleNaN})
		}
	}
	clear(s.gone)
	s.gone = s.gone[:0]
	e.series = out
}

// encode returns the snappy-compressed WriteRequest of the current state with every sample
// at ms. The result is valid until the next call.
func (e *snapEncoder) encode(s *promState, pushInterval float64, ms int64) []byte {
	e.collect(s, pushInterval)
	raw := e.raw[:0]
	for _, ser := range e.series {
		raw, _ = prompb.AppendTimeSeries(raw, ser.labels, ser.value, ms)
	}
	e.raw = raw
	if n := snappy.MaxEncodedLen(len(raw)); cap(e.compressed) < n {
		e.compressed = make([]byte, n)
	}
	e.compressed = e.compressed[:cap(e.compressed)]
	return snappy.Encode(e.compressed, raw)
}
