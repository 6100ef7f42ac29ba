package view

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/edgeprobe/edgeprobe/contract"
)

// Bounds on one push, so that a hostile body cannot make the view allocate without end.
const (
	// decodedPerCompressed sets the decoded limit, max(minDecodedLimit,
	// decodedPerCompressed x max_body_bytes): real pushes, label-heavy text, expand
	// about 5 to 13 times.
	decodedPerCompressed = 16
	minDecodedLimit      = 1 << 20
	maxSitesPerAgent     = 10000
	maxAgentsPerPush     = 10000
	// A snappy block cannot expand more than 64/3 times: its densest element is a
	// 3-byte copy of 64 bytes. A header that claims more is a lie, refused before
	// anything is allocated for it.
	snappyMaxExpansionNum, snappyMaxExpansionDen = 64, 3
	// Reports cost what they hold plus these, in bytes (the maps, slices and headers
	// around an agent's and a site's report); decodeWrite refuses a push whose reports
	// would cost more than its decoded size plus reportSlack, which no real push comes
	// near: every site of one carries six series, some 600 bytes.
	agentReportCost = 512
	siteReportCost  = 256
	reportSlack     = 64 << 10
)

// pushError is a push refused as a whole; reason labels the rejection counter.
type pushError struct {
	reason string
	err    error
}

func (e *pushError) Error() string { return e.err.Error() }
func (e *pushError) Unwrap() error { return e.err }

func rejectf(reason, format string, args ...any) error {
	return &pushError{reason: reason, err: fmt.Errorf(format, args...)}
}

// decodedLimit is the largest decoded push a view with max_body_bytes maxBody accepts.
func decodedLimit(maxBody int64) int64 {
	return max(int64(minDecodedLimit), maxBody*decodedPerCompressed)
}

// DecodeWrite turns a remote_write 1.0 body (snappy block + protobuf WriteRequest, the
// exporters/prompb messages the agents encode with) into per-agent reports. maxBody
// bounds the compressed size the caller read; the decoded size is bounded too, so a small
// body cannot expand into an unbounded allocation. Any error refuses the whole push: a
// view never applies half of one.
//
// The protobuf is read in place (protowire) rather than unmarshalled into prompb
// messages: a push of 20 sites is some 250 series of 5 labels, and the view needs only a
// few of them, so building every label as a heap object was most of the decode's cost.
// It accepts and refuses exactly what proto.Unmarshal does (FuzzDecodeWrite checks this
// against it), strings included: label names and values must be valid UTF-8.
func DecodeWrite(body []byte, maxBody int64) ([]AgentReport, error) {
	n, err := snappyClaim(body, int(min(decodedLimit(maxBody), math.MaxInt32)))
	if err != nil {
		return nil, err
	}
	reports, _, err := decodeWrite(body, n, nil)
	return reports, err
}

// snappyClaim reads the decoded size a snappy block's header claims and checks it
// before anything is allocated: against limit (413), and against what the block's
// length can expand to at all (a lie, 400).
func snappyClaim(body []byte, limit int) (int, error) {
	claim, hl := binary.Uvarint(body)
	if hl <= 0 || hl > 5 || claim > math.MaxUint32 {
		return 0, rejectf("bad_snappy", "decode snappy block: %v", snappy.ErrCorrupt)
	}
	if claim > uint64(limit) {
		return 0, rejectf("too_large", "decoded body would be %d bytes, more than the limit of %d", claim, limit)
	}
	if most := uint64(len(body)-hl) * snappyMaxExpansionNum / snappyMaxExpansionDen; claim > most {
		return 0, rejectf("bad_snappy", "decode snappy block: the header claims %d bytes, more than %d compressed bytes can hold (%d)", claim, len(body)-hl, most)
	}
	return int(claim), nil
}

// decodeWrite decodes a body whose header claims n bytes (checked by snappyClaim). The
// block must be snappy exactly as github.com/golang/snappy (the format's Go reference)
// writes and reads it, and that is the decoder: it writes into exactly n bytes and fails
// the moment the block would write more, or fewer. klauspost/compress's snappy.Decode
// also takes the S2 extensions, whose repeat codes let 28 bytes expand to 64 MiB; its
// DecodeStrict does not, but is pure Go, where the reference decodes in assembly on
// amd64 and arm64: 9 against 14 µs for a push of 20 sites (BenchmarkSnappyDecode).
// FuzzSnappyStrict holds the two to the same blocks.
//
// slot, when not nil, holds the shape of the connection's previous push (shape.go): a
// push of that shape is read from its samples alone, and one decoded in full leaves its
// own shape there; replayed says which it was. The caller holds slot's lock for as long
// as it reads the reports, and releases it after: a replayed report lives in the slot.
func decodeWrite(body []byte, n int, slot *shapeSlot) (reports []AgentReport, replayed bool, err error) {
	bufp := rawPool.Get().(*[]byte)
	defer func() {
		if cap(*bufp) <= maxPooledRaw {
			rawPool.Put(bufp)
		}
	}()
	if cap(*bufp) < n {
		*bufp = make([]byte, n)
	}
	raw, err := snappy.Decode((*bufp)[:cap(*bufp)], body)
	if err != nil {
		return nil, false, rejectf("bad_snappy", "decode snappy block: %v", err)
	}
	if slot == nil {
		reports, _, err := decodeWriteRequest(raw, int64(n)+reportSlack, false)
		return reports, false, err
	}
	reports, ok, touched := slot.replay(raw)
	if ok {
		return reports, true, nil
	}
	if touched {
		if raw, err = snappy.Decode(raw, body); err != nil {
			return nil, false, rejectf("bad_snappy", "decode snappy block: %v", err)
		}
	}
	reports, shape, err := decodeWriteRequest(raw, int64(n)+reportSlack, true)
	if err != nil {
		return nil, false, err // the shape before it still holds
	}
	slot.shape = shape
	return reports, false, nil
}

// rawPool keeps decode buffers of up to maxPooledRaw bytes between pushes.
var rawPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

const maxPooledRaw = 1 << 20

// errCodeFieldNumber is protowire's (unexported) code for an invalid field number, so
// that ParseError names it.
const errCodeFieldNumber = -2

// decodeWriteRequest reads a WriteRequest whose reports may cost up to budget bytes and,
// if record, its shape (nil when it has none). Nothing it returns points into raw, whose
// samples it may zero once read.
func decodeWriteRequest(raw []byte, budget int64, record bool) ([]AgentReport, *pushShape, error) {
	d := pushDecoder{budget: budget}
	if record {
		d.rec = &shapeRecorder{rawCap: cap(raw), ok: true}
	}
	i := 0
	for b := raw; len(b) > 0; {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return nil, nil, badProto(protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType { // repeated TimeSeries timeseries = 1
			ts, n := consumeBytes(b)
			if n < 0 {
				return nil, nil, badProto(protowire.ParseError(n))
			}
			b = b[n:]
			if err := d.series(i, ts); err != nil {
				return nil, nil, err
			}
			i++
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, nil, badProto(protowire.ParseError(n))
		}
		b = b[n:]
	}
	if d.err != nil {
		return nil, nil, d.err
	}
	shape := d.shape(raw) // before reports(), which may sort the targets in place
	return d.reports(), shape, nil
}

// consumeTag is protowire.ConsumeTag that, like proto.Unmarshal, also refuses field
// numbers above the largest valid one. Every tag of the push contract is one byte (field
// numbers 1 to 15), read here without protowire's varint loop; field number 0 is
// protowire's error.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] >= 1<<3 && b[0] < 0x80 {
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && !num.IsValid() {
		return 0, 0, errCodeFieldNumber
	}
	return num, typ, n
}

// consumeBytes is protowire.ConsumeBytes with the common case first: a length under 128
// (one byte) that the buffer holds. Anything else, errors included, is protowire's.
func consumeBytes(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
		m := 1 + int(b[0])
		return b[1:m], m
	}
	return protowire.ConsumeBytes(b)
}

func badProto(err error) error {
	return rejectf("bad_protobuf", "decode protobuf WriteRequest: %v", err)
}

// pushDecoder collects the reports of one push while its series are read.
type pushDecoder struct {
	labels  [][2][]byte // the current series' labels other than the contract's, reused
	agents  []agentInProgress
	byAgent map[string]int // built once a push names more than a few agents
	cur     int            // the agent of the previous series, or -1
	err     error          // a content error, reported once the protobuf is known to be whole
	budget  int64          // bytes the reports may still cost
	rec     *shapeRecorder // what the series meant, for the push's shape; nil: not recorded
}

// spend charges the cost of a new report to the push's budget.
func (d *pushDecoder) spend(cost int) error {
	if d.budget -= int64(cost); d.budget < 0 {
		return rejectf("too_large", "the push's reports would take more memory than its decoded size allows")
	}
	return nil
}

type agentInProgress struct {
	report AgentReport
	sites  []namedSite
	index  map[string]int // by site name, into sites
	// targets as pushed, and an index of them once a push lists them out of order
	// (targets.go).
	targets     []TargetReport
	targetIndex map[targetKey]int
	siteMap     map[string]SiteReport // if not nil, what finish fills (cleared) as the report's Sites
}

type namedSite struct {
	name string
	rep  SiteReport
}

// series reads TimeSeries number i: its labels, then the latest of its samples.
func (d *pushDecoder) series(i int, b []byte) error {
	var name, agent, site, state []byte
	d.labels = d.labels[:0]
	var latest struct {
		value float64
		ts    int64
	}
	samples := 0
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return badProto(protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType: // repeated Label labels = 1
			lb, n := consumeBytes(b)
			if n < 0 {
				return badProto(protowire.ParseError(n))
			}
			b = b[n:]
			k, v, err := readLabel(lb)
			if err != nil {
				return err
			}
			switch string(k) {
			case contract.LabelName:
				name = v
			case contract.LabelAgent:
				agent = v
			case contract.LabelSite:
				site = v
			case contract.LabelState:
				state = v
			default:
				d.labels = append(d.labels, [2][]byte{k, v})
			}
		case num == 2 && typ == protowire.BytesType: // repeated Sample samples = 2
			sb, n := consumeBytes(b)
			if n < 0 {
				return badProto(protowire.ParseError(n))
			}
			b = b[n:]
			v, ts, err := readSample(sb)
			if err != nil {
				return err
			}
			d.sampleRead(sb)
			if samples == 0 || ts >= latest.ts {
				latest.value, latest.ts = v, ts
			}
			samples++
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return badProto(protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	if d.err != nil {
		return nil // the push is refused already; only the protobuf's own errors still count
	}
	if len(agent) > contract.MaxNameBytes || len(site) > contract.MaxNameBytes {
		d.err = rejectf("bad_content", "series %s names an agent or site of more than %d bytes", name, contract.MaxNameBytes)
		return nil
	}
	d.err = d.apply(i, name, agent, site, state, samples, latest.value, latest.ts)
	d.seriesDone(samples)
	return nil
}

// readLabel reads a Label message: name = 1, value = 2, both proto3 strings.
func readLabel(b []byte) (name, value []byte, err error) {
	// First the layout every encoder writes when both strings are under 128 bytes:
	// 0a len name 12 len value, nothing else. Its four framing bytes are ASCII, which no
	// UTF-8 sequence spans, so one check of the whole message checks both strings.
	if len(b) >= 4 && b[0] == 0x0a && b[1] < 0x80 {
		v := 2 + int(b[1])
		if v+2 <= len(b) && b[v] == 0x12 && b[v+1] < 0x80 && v+2+int(b[v+1]) == len(b) && utf8.Valid(b) {
			return b[2:v], b[v+2:], nil
		}
	}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return nil, nil, badProto(protowire.ParseError(n))
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			v, n := consumeBytes(b)
			if n < 0 {
				return nil, nil, badProto(protowire.ParseError(n))
			}
			b = b[n:]
			if !utf8.Valid(v) {
				return nil, nil, badProto(errors.New("label string is not valid UTF-8"))
			}
			if num == 1 {
				name = v
			} else {
				value = v
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, nil, badProto(protowire.ParseError(n))
		}
		b = b[n:]
	}
	return name, value, nil
}

// readSample reads a Sample message: double value = 1, int64 timestamp = 2.
func readSample(b []byte) (value float64, ts int64, err error) {
	// First the two layouts every encoder writes: 09 value 10 timestamp, and 10
	// timestamp alone (a value of 0 is left out).
	if len(b) >= 11 && b[0] == 0x09 && b[9] == 0x10 {
		if t, n := protowire.ConsumeVarint(b[10:]); n == len(b)-10 {
			return math.Float64frombits(binary.LittleEndian.Uint64(b[1:9])), int64(t), nil
		}
	} else if len(b) >= 2 && b[0] == 0x10 {
		if t, n := protowire.ConsumeVarint(b[1:]); n == len(b)-1 {
			return 0, int64(t), nil
		}
	}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return 0, 0, badProto(protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return 0, 0, badProto(protowire.ParseError(n))
			}
			b, value = b[n:], math.Float64frombits(v)
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, 0, badProto(protowire.ParseError(n))
			}
			b, ts = b[n:], int64(v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return 0, 0, badProto(protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return value, ts, nil
}

// agentIndex finds (or adds) the report of the agent named a.
func (d *pushDecoder) agentIndex(a []byte) (int, error) {
	if d.cur >= 0 && d.cur < len(d.agents) && d.agents[d.cur].report.Agent == string(a) {
		return d.cur, nil
	}
	if d.byAgent != nil {
		if k, ok := d.byAgent[string(a)]; ok {
			return k, nil
		}
	} else {
		for k := range d.agents {
			if d.agents[k].report.Agent == string(a) {
				return k, nil
			}
		}
	}
	if len(d.agents) >= maxAgentsPerPush {
		return 0, rejectf("bad_content", "more than %d agents in one push", maxAgentsPerPush)
	}
	if err := d.spend(agentReportCost + len(a)); err != nil {
		return 0, err
	}
	name := string(a)
	d.agents = append(d.agents, agentInProgress{report: AgentReport{Agent: name}})
	k := len(d.agents) - 1
	if d.byAgent == nil && len(d.agents) > 8 {
		d.byAgent = make(map[string]int, 16)
		for j := range d.agents {
			d.byAgent[d.agents[j].report.Agent] = j
		}
	} else if d.byAgent != nil {
		d.byAgent[name] = k
	}
	return k, nil
}

// site finds (or adds) the site named s in agent p's report: its index in p.sites.
func (p *agentInProgress) site(d *pushDecoder, s []byte, agent string) (int, error) {
	if n := len(p.sites); n > 0 && p.sites[n-1].name == string(s) {
		return n - 1, nil
	}
	if p.index == nil {
		p.index = make(map[string]int, 32)
	}
	if k, ok := p.index[string(s)]; ok {
		return k, nil
	}
	if len(p.sites) >= maxSitesPerAgent {
		return 0, rejectf("bad_content", "agent %q reports more than %d sites", agent, maxSitesPerAgent)
	}
	if err := d.spend(siteReportCost + len(s)); err != nil {
		return 0, err
	}
	name := string(s)
	p.index[name] = len(p.sites)
	p.sites = append(p.sites, namedSite{name: name, rep: SiteReport{Detect: -1}})
	return len(p.sites) - 1, nil
}

// apply records one series of the push contract.
func (d *pushDecoder) apply(i int, name, agent, site, state []byte, samples int, v float64, ts int64) error {
	if len(agent) == 0 {
		return rejectf("no_agent", "series %d (%q) has no agent label", i, name)
	}
	if samples == 0 {
		return nil
	}
	k, err := d.agentIndex(agent)
	if err != nil {
		return err
	}
	if k != 0 {
		d.noShape() // shapes are of one agent's pushes
	}
	d.cur = k
	p := &d.agents[k]
	r := &p.report
	if t := time.UnixMilli(ts); !r.HasSamples || t.After(r.SampleTime) {
		r.SampleTime, r.HasSamples = t, true
	}
	switch op := seriesOp(name, state); op {
	case opStateUp, opStateDegraded, opStateDown, opStateUnknown, opStateBad, opChange, opDetect:
		if len(site) == 0 {
			return rejectf("bad_content", "series %s of agent %q has no site label", name, r.Agent)
		}
		if math.IsNaN(v) {
			// A staleness marker: the agent ended the site's series (a reload removed
			// it; docs/architecture.md, "The push contract"). No state, and no site: the push
			// still counts as one with site state, so the site leaves the agent's report.
			if p.sites == nil {
				p.sites = []namedSite{}
			}
			d.noShape()
			return nil
		}
		slot, err := p.site(d, site, r.Agent)
		if err != nil {
			return err
		}
		d.note(op, slot)
		if err := readSiteSeries(&p.sites[slot].rep, op, state, v); err != nil {
			return rejectf("bad_content", "agent %q site %q: %v", r.Agent, site, err)
		}
	case opIsolated, opImpaired, opInterval:
		readAgentSeries(r, op, v)
		if op == opIsolated {
			r.Labels = d.agentLabels(r.Labels)
		}
		d.note(op, 0)
	case opTargetUp, opProbeSuccess, opProbeDuration, opReason:
		return p.target(d, op, site, v, r.Agent)
	}
	return nil
}

// readAgentSeries sets the field of r that one of the agent-wide series carries.
func readAgentSeries(r *AgentReport, op shapeOp, v float64) {
	switch op {
	case opIsolated:
		r.Isolated = v == 1
	case opImpaired:
		r.Impaired = v == 1
	case opInterval:
		if !math.IsNaN(v) && v > 0 && v < 86400 {
			r.PushInterval = time.Duration(v * float64(time.Second))
		}
	}
}

// agentLabels is the agent's own labels, from the labels of its agent-wide series being
// read (every label but __name__ and agent), in one map per agent of the push.
func (d *pushDecoder) agentLabels(m map[string]string) map[string]string {
	if m == nil {
		m = make(map[string]string, len(d.labels))
	}
	for _, l := range d.labels {
		m[string(l[0])] = string(l[1])
	}
	return m
}

// reports finishes the push's reports, in the order their agents first appeared.
func (d *pushDecoder) reports() []AgentReport {
	out := make([]AgentReport, 0, len(d.agents))
	for k := range d.agents {
		p := &d.agents[k]
		out = append(out, p.finish(p.targetIndex != nil))
	}
	return out
}

// finish is p's report: its sites (unknown where the push set no state) and its targets,
// sorted if unsorted.
func (p *agentInProgress) finish(unsorted bool) AgentReport {
	r := p.report
	if p.sites != nil {
		if r.Sites = p.siteMap; r.Sites == nil {
			r.Sites = make(map[string]SiteReport, len(p.sites))
		}
		clear(r.Sites)
		for _, s := range p.sites {
			if s.rep.State == "" {
				s.rep.State = siteUnknown
			}
			r.Sites[s.name] = s.rep
		}
	}
	r.Targets = p.finishTargets(unsorted)
	return r
}

// readSiteSeries sets the field of sr that one of a site's series (op) carries; state
// is the series' state label, named when it is not one of the four.
func readSiteSeries(sr *SiteReport, op shapeOp, state []byte, v float64) error {
	finite := !math.IsNaN(v) && !math.IsInf(v, 0)
	switch op {
	case opStateBad:
		return fmt.Errorf("%s has state %q, want up, degraded, down or unknown", contract.MetricSiteState, state)
	case opStateUp, opStateDegraded, opStateDown, opStateUnknown:
		if v != 1 {
			return nil
		}
		st := opState[op]
		if sr.State != "" && sr.State != st {
			return errors.New("state set has both " + sr.State + " and " + st + " at 1")
		}
		sr.State = st
	case opChange:
		if finite && v > 0 && v < 1e11 {
			sec, frac := math.Modf(v)
			sr.Since = time.Unix(int64(sec), int64(frac*1e9))
		}
	case opDetect:
		if finite && v >= 0 && v < 86400 {
			sr.Detect = v
		}
	}
	return nil
}
