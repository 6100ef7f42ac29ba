// Package view is edgeprobe's central view: it receives the agents' pushes, decides per
// site whether it is up, degraded, lost or unknown, and tells people (JSON API,
// server-sent events, a live page, webhooks, Alertmanager).
//
// Why it is built this way:
//
//   - The agents speak Prometheus remote_write 1.0, so the view decodes the same bytes
//     Prometheus, Mimir or VictoriaMetrics would receive: a snappy block holding a
//     WriteRequest, decoded with exporters/prompb, the very messages the agents' exporter
//     encodes with. One agent config feeds the view and a TSDB alike.
//   - Every push carries an agent's complete state, so the view keeps no history and no
//     disk: a restarted view rebuilds every verdict from one push per agent.
//   - A verdict is computed in the push's own request handler, before the response, and
//     staleness by a timer armed for the next agent's deadline: a site loss shows up the
//     moment the second witness reports it, not on the next tick.
//   - One agent is never enough: it may be its own uplink that failed. A site is lost only
//     when a quorum of fresh, non-isolated agents say so (Engine).
//   - The engine takes the time as an argument instead of reading a clock, so tests walk
//     it through staleness and recoveries with exact times.
//   - The view imports nothing of agent/ or probes/: data flows one way, and the push
//     contract (README.md) is the only thing both sides share.
package view
