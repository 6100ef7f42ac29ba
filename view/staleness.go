package view

// StaleFactor and MinStaleAfter are the default staleness of an agent (docs/architecture.md,
// "Verdicts at the view"): it stops being a witness StaleFactor of its push intervals
// after its last push, never sooner than MinStaleAfter. The shipped Prometheus rules
// (packaging/prometheus) are generated with the same figures.
const (
	StaleFactor   = defaultStaleFactor
	MinStaleAfter = minStaleAfter
)
