package view

import (
	"context"
	"hash/maphash"
	"maps"
	"math"
	"net"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/edgeprobe/edgeprobe/contract"
)

// An agent's pushes differ only in their samples: the same series, with the same labels,
// in the same order, every second. The view keeps, per connection, the shape of the last
// push it accepted there: the offsets of its samples, a hash of every other byte, and
// what each series meant (which agent, site or target, which field). A push of the same
// size whose other bytes hash the same is read from its samples alone; anything else
// (the first push, a changed label, a staleness marker, a second agent, an error) is
// decoded in full, and that decoding records the next shape. view/README.md,
// "Performance", has what it saves; FuzzDecodeShape checks that both ways decode alike.
//
// The hash is a 64-bit maphash sum under a seed drawn when the view starts: nobody
// outside sees it (it never leaves the view, nor does any hash), so two pushes of one
// size that differ outside their samples share it by chance alone, 2^-64.

// maxShapeBytes bounds what one connection's shape keeps; connMemory counts it. A push
// whose shape would take more (about 1000 series and up) is always decoded in full.
const maxShapeBytes = 16 << 10

var shapeSeed = maphash.MakeSeed()

// shapeOp is what one series' sample sets in the report.
type shapeOp uint8

const (
	opTime    shapeOp = iota // only the agent's sample time (a series the view does not read)
	opStateUp                // edgeprobe_site_state{state=...}, by state
	opStateDegraded
	opStateDown
	opStateUnknown
	opStateBad // a state the set cannot hold: the push is refused
	opChange   // edgeprobe_site_state_change_timestamp_seconds
	opDetect   // edgeprobe_site_detect_seconds
	opIsolated // edgeprobe_agent_isolated
	opImpaired
	opInterval
	opTargetUp // a target's four series
	opProbeSuccess
	opProbeDuration
	opReason
)

// opState is the state a state op reads.
var opState = [...]string{opStateUp: siteUp, opStateDegraded: siteDegraded, opStateDown: siteDown, opStateUnknown: siteUnknown}

// seriesOp is the op of the series named name: one of the push contract's, or opTime
// for any other; state is a site state series' state label.
func seriesOp(name, state []byte) shapeOp {
	switch string(name) {
	case contract.MetricSiteState:
		for op := opStateUp; op <= opStateUnknown; op++ {
			if opState[op] == string(state) {
				return op
			}
		}
		return opStateBad
	case contract.MetricSiteStateChange:
		return opChange
	case contract.MetricSiteDetect:
		return opDetect
	case contract.MetricAgentIsolated:
		return opIsolated
	case contract.MetricAgentImpaired:
		return opImpaired
	case contract.MetricPushInterval:
		return opInterval
	case contract.MetricTargetUp:
		return opTargetUp
	case contract.MetricProbeSuccess:
		return opProbeSuccess
	case contract.MetricProbeDuration:
		return opProbeDuration
	case contract.MetricTargetFailureReason:
		return opReason
	}
	return opTime
}

// shapeSample is one series' only sample: where its message's contents are in the
// decoded push, and what it sets (slot: the site or target, in the order the push
// named them).
type shapeSample struct {
	off  uint32
	n    uint8
	op   shapeOp
	slot uint16
}

// pushShape is the shape of one accepted push of one agent. It keeps what the push
// named, and no values: a connection's shape lives as long as its connection, 10,000 of
// them at 10,000 agents, and every byte of them with pointers is marked by every
// collection (view/README.md, "What the collector marks"). What a replay reads goes to a
// replayed, which a push holds only while it is applied.
type pushShape struct {
	size    int
	sum     uint64
	samples []shapeSample
	agent   string
	labels  map[string]string // the agent's own labels, nil when it sent no agent-wide series
	// sites and targets in the order the push named them: the sites' names, the targets'
	// site, name and kind; nil when it named none. sortTargets: not in the report's order
	// (finishTargets sorts them).
	sites       []string
	targets     []TargetReport
	sortTargets bool
}

// replayed is what a replay reads a push into: the sites and targets with their values,
// the report's map of sites, and the report. Pushes take one from replayedPool for as
// long as their reports are in use (shapeSlot.release), so there are as many as pushes
// being decoded and applied at once, not one a connection.
type replayed struct {
	sites   []namedSite
	targets []TargetReport
	siteMap map[string]SiteReport
	out     [1]AgentReport
}

var replayedPool = sync.Pool{New: func() any { return new(replayed) }}

// shapeRecorder notes, while a push is decoded in full, what its series meant.
type shapeRecorder struct {
	rawCap  int // cap of the decoded push: a sample's offset is rawCap - cap(its slice)
	ok      bool
	samples []shapeSample
	// the series being read: its sample's place, and what apply made of it
	off, n int
	op     shapeOp
	slot   int
}

// note says what the series being read sets; a no-op when nothing is recorded.
func (d *pushDecoder) note(op shapeOp, slot int) {
	if d.rec != nil {
		d.rec.op, d.rec.slot = op, slot
	}
}

// noShape says the push's meaning depends on its values (a staleness marker), or is
// more than a shape holds: the next push is decoded in full.
func (d *pushDecoder) noShape() {
	if d.rec != nil {
		d.rec.ok = false
	}
}

// sampleRead notes where the series' sample is.
func (d *pushDecoder) sampleRead(sb []byte) {
	if d.rec != nil {
		d.rec.off, d.rec.n = d.rec.rawCap-cap(sb), len(sb)
		d.rec.op, d.rec.slot = opTime, 0
	}
}

// seriesDone records the series just applied, which had samples samples.
func (d *pushDecoder) seriesDone(samples int) {
	r := d.rec
	if r == nil || !r.ok || samples == 0 {
		return
	}
	if samples > 1 || r.n > math.MaxUint8 || r.slot > math.MaxUint16 || uint64(r.off) > math.MaxUint32 {
		r.ok = false
		return
	}
	r.samples = append(r.samples, shapeSample{off: uint32(r.off), n: uint8(r.n), op: r.op, slot: uint16(r.slot)})
}

// shape is the shape of the push just decoded from raw, or nil when it has none. It
// zeroes the samples' contents in raw, which the reports no longer need.
func (d *pushDecoder) shape(raw []byte) *pushShape {
	r := d.rec
	if r == nil || !r.ok || len(d.agents) != 1 || len(r.samples) == 0 {
		return nil
	}
	p := &d.agents[0]
	sh := &pushShape{
		size:        len(raw),
		samples:     slices.Clone(r.samples),
		agent:       p.report.Agent,
		labels:      maps.Clone(p.report.Labels),
		sortTargets: p.targetIndex != nil,
	}
	if len(p.sites) > 0 {
		sh.sites = make([]string, len(p.sites))
		for i, s := range p.sites {
			sh.sites[i] = s.name
		}
	}
	if len(p.targets) > 0 {
		sh.targets = make([]TargetReport, len(p.targets))
		for i, t := range p.targets {
			sh.targets[i] = TargetReport{Site: t.Site, Name: t.Name, Kind: t.Kind}
		}
	}
	if sh.cost() > maxShapeBytes {
		return nil
	}
	sh.sum = sh.hash(raw)
	return sh
}

// cost is about what sh keeps and a replay of it reads into, in bytes: its sites twice
// (a list with values and the map), its targets once, its samples and names.
func (sh *pushShape) cost() int {
	n := 256 + len(sh.agent) + len(sh.samples)*int(unsafe.Sizeof(shapeSample{})) +
		2*len(sh.sites)*int(unsafe.Sizeof(namedSite{})) + len(sh.targets)*int(unsafe.Sizeof(TargetReport{}))
	for _, s := range sh.sites {
		n += len(s)
	}
	for k, v := range sh.labels {
		n += 64 + len(k) + len(v)
	}
	return n
}

// hash zeroes the contents of sh's samples in raw and hashes all of it.
func (sh *pushShape) hash(raw []byte) uint64 {
	for _, s := range sh.samples {
		clear(raw[s.off : int(s.off)+int(s.n)])
	}
	return maphash.Bytes(shapeSeed, raw)
}

// replay reads raw as a push of shape sh into rd: its reports, and true, when raw has
// sh's size, every sample reads as one and raw's other bytes hash as sh's did; otherwise
// false, and raw may have been changed (touched) and must be decoded again before it is
// read in full. A sample whose value would change the push's meaning (NaN, a state the
// set cannot hold) also answers false: the full decoding says what it means.
//
// The reports live in rd, until its next replay: the slot that holds rd stays locked
// while they are in use (decodeWrite, shapeSlot.release).
func (sh *pushShape) replay(raw []byte, rd *replayed) (reports []AgentReport, ok, touched bool) {
	if len(raw) != sh.size {
		return nil, false, false
	}
	rd.sites = rd.sites[:0]
	for _, name := range sh.sites {
		rd.sites = append(rd.sites, namedSite{name: name, rep: SiteReport{Detect: -1}})
	}
	rd.targets = rd.targets[:0]
	for _, t := range sh.targets {
		tr := newTargetReport(t.Site, t.Name)
		tr.Kind = t.Kind
		rd.targets = append(rd.targets, tr)
	}
	if rd.siteMap == nil && len(rd.sites) > 0 {
		rd.siteMap = make(map[string]SiteReport, len(rd.sites))
	}
	// The targets without spare room: finishTargets would copy them to let go of it,
	// but they are rd's, and the engine copies them anyway.
	p := agentInProgress{report: AgentReport{Agent: sh.agent}, sites: rd.sites, targets: slices.Clip(rd.targets), siteMap: rd.siteMap}
	if len(rd.sites) == 0 {
		p.sites, p.siteMap = nil, nil
	}
	if len(rd.targets) == 0 {
		p.targets = nil
	}
	r := &p.report
	var latest int64 // ms
	for _, s := range sh.samples {
		v, ts, err := readSample(raw[s.off : int(s.off)+int(s.n)])
		if err != nil {
			return nil, false, false
		}
		if !r.HasSamples || ts > latest {
			latest, r.HasSamples = ts, true
		}
		switch op := s.op; op {
		case opTime:
		case opStateUp, opStateDegraded, opStateDown, opStateUnknown, opStateBad, opChange, opDetect:
			if math.IsNaN(v) || readSiteSeries(&p.sites[s.slot].rep, op, nil, v) != nil {
				return nil, false, false
			}
		case opIsolated, opImpaired, opInterval:
			readAgentSeries(r, op, v)
		default:
			if math.IsNaN(v) {
				return nil, false, false
			}
			readTargetSeries(&p.targets[s.slot], op, v)
		}
	}
	if r.HasSamples {
		r.SampleTime = time.UnixMilli(latest)
	}
	if sh.hash(raw) != sh.sum {
		return nil, false, true
	}
	r.Labels = sh.labels
	rd.out[0] = p.finish(sh.sortTargets) // may sort rd.targets: the next replay refills them
	return rd.out[:], true, true
}

// shapeSlot holds a connection's shape between its pushes, and while a push is decoded
// and applied, what a replay read it into.
type shapeSlot struct {
	mu    sync.Mutex
	shape *pushShape
	read  *replayed
}

// replay is the slot's shape's replay of raw, into the slot's replayed.
func (s *shapeSlot) replay(raw []byte) (reports []AgentReport, ok, touched bool) {
	if s.shape == nil {
		return nil, false, false
	}
	if s.read == nil {
		s.read = replayedPool.Get().(*replayed)
	}
	return s.shape.replay(raw, s.read)
}

// release unlocks the slot once the reports of its push are no longer read, and gives
// what a replay read them into back to the pool, without the names it points to.
func (s *shapeSlot) release() {
	if rd := s.read; rd != nil {
		s.read = nil
		clear(rd.siteMap)
		clear(rd.sites)
		clear(rd.targets)
		rd.out = [1]AgentReport{}
		replayedPool.Put(rd)
	}
	s.mu.Unlock()
}

type shapeSlotKey struct{}

// withShapeSlot is the http.Server's ConnContext: every connection gets its slot.
func withShapeSlot(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, shapeSlotKey{}, new(shapeSlot))
}

// connShapeSlot is the slot of the connection ctx serves, or nil.
func connShapeSlot(ctx context.Context) *shapeSlot {
	s, _ := ctx.Value(shapeSlotKey{}).(*shapeSlot)
	return s
}
