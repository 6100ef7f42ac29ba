// Package prometheus writes edgeprobe's verdict rules for Prometheus and VictoriaMetrics
// (vmalert): edgeprobe.rules.yml and its variants are its output (docs/architecture.md, "At
// scale: the same rule on a TSDB"). rulesgen/ is its command line; go generate in this
// directory rewrites the shipped files, and TestRulesGenerated keeps them equal to what
// the generator writes.
//
// Every alert and the verdict state set are computed from the pushed series in one
// query each, never from another rule's recording: a chain of recordings costs a query
// delay per level on VictoriaMetrics (its recordings come back through remote_write), and
// separate queries for the members of a state set can see different pushes.
package prometheus

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/edgeprobe/edgeprobe/contract"
	"github.com/edgeprobe/edgeprobe/view"
)

//go:generate go run ./rulesgen -o edgeprobe.rules.yml
//go:generate go run ./rulesgen -quorum-by region -o edgeprobe.rules.region.yml
//go:generate go run ./rulesgen -quorum 3 -o testdata/quorum3.rules.yml
//go:generate go run ./rulesgen -quorum 1 -o testdata/quorum1.rules.yml

// Params are the view settings the rules apply (view.toml's names).
type Params struct {
	Quorum        int     // quorum: a fixed number of witnesses (failure domains with QuorumBy)
	MaxUpFraction float64 // max_up_fraction
	QuorumBy      string  // quorum_by: an agent label, or "" to count agents
}

// ParamsFromConfig takes the verdict settings of a view's config, which has checked them.
// A majority quorum has no rule form: it counts the domains the view remembers over
// forget_after, which a TSDB query sees only through an expensive range.
func ParamsFromConfig(c *view.Config) (Params, error) {
	if c.Quorum.Majority {
		return Params{}, errors.New(`quorum = "majority" has no rule form; the rules need a fixed quorum (a number)`)
	}
	return Params{Quorum: c.Quorum.N, MaxUpFraction: c.MaxUpFraction, QuorumBy: c.QuorumBy}, nil
}

// DefaultParams are those of a view without a config file.
func DefaultParams() Params {
	p, _ := ParamsFromConfig(view.DefaultConfig())
	return p
}

// ParseArgs reads rulesgen's command line: -config VIEW.TOML, or -quorum, -quorum-by and
// -max-up-fraction (checked by the view's own config rules), and -o FILE ("" for stdout).
func ParseArgs(args []string, stderr io.Writer) (p Params, out string, err error) {
	fs := flag.NewFlagSet("rulesgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "take quorum, quorum_by and max_up_fraction from this view.toml")
	quorum := fs.String("quorum", "", fmt.Sprintf("witnesses (failure domains) that must see a site down (default %d)", view.DefaultQuorum))
	quorumBy := fs.String("quorum-by", "", "count witnesses by the distinct values of this agent label (default: by agent)")
	maxUp := fs.String("max-up-fraction", "", fmt.Sprintf("share of witnesses that may see a lost site up (default %g)", view.DefaultMaxUpFraction))
	fs.StringVar(&out, "o", "", "write the rules to this file instead of stdout")
	if err := fs.Parse(args); err != nil {
		return Params{}, "", err
	}
	if fs.NArg() > 0 {
		return Params{}, "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var c *view.Config
	if *config != "" {
		if *quorum != "" || *quorumBy != "" || *maxUp != "" {
			return Params{}, "", errors.New("-config and -quorum, -quorum-by or -max-up-fraction are exclusive: set them in the file")
		}
		if c, err = view.LoadConfig(*config); err != nil {
			return Params{}, "", err
		}
	} else {
		// The flags are checked as the view checks its file, so that a rule file can
		// never hold a setting the view would refuse.
		var doc strings.Builder
		if *quorum != "" {
			if _, err := strconv.Atoi(*quorum); err == nil {
				fmt.Fprintf(&doc, "quorum = %s\n", *quorum)
			} else {
				fmt.Fprintf(&doc, "quorum = %q\n", *quorum)
			}
		}
		if *quorumBy != "" {
			fmt.Fprintf(&doc, "quorum_by = %q\n", *quorumBy)
		}
		if *maxUp != "" {
			f, err := strconv.ParseFloat(*maxUp, 64)
			if err != nil {
				return Params{}, "", fmt.Errorf("-max-up-fraction %q: not a number", *maxUp)
			}
			fmt.Fprintf(&doc, "max_up_fraction = %s\n", strconv.FormatFloat(f, 'f', -1, 64))
		}
		if c, err = view.ParseConfig([]byte(doc.String()), "flags"); err != nil {
			return Params{}, "", err
		}
	}
	p, err = ParamsFromConfig(c)
	return p, out, err
}

// Series and labels the rules read, from the push contract.
const (
	siteState    = contract.MetricSiteState
	isolated     = contract.MetricAgentIsolated
	impaired     = contract.MetricAgentImpaired
	pushInterval = contract.MetricPushInterval
	labelAgent   = contract.LabelAgent
	labelSite    = contract.LabelSite
	labelState   = contract.LabelState
)

// Names of what the rules write.
const (
	RecordVerdict       = "edgeprobe:site_verdict"
	RecordWitnesses     = "edgeprobe:site_witnesses:sum"
	RecordWitnessesUp   = "edgeprobe:site_witnesses_up:sum"
	RecordWitnessesDown = "edgeprobe:site_witnesses_down:sum"
	RecordQuorum        = "edgeprobe:site_quorum_witnesses:count"
	RecordQuorumDown    = "edgeprobe:site_quorum_down:count"
	RecordAgentFresh    = "edgeprobe:agent_fresh:bool"
	RecordInfo          = "edgeprobe:rules_info"

	AlertLost        = "EdgeprobeSiteLost"
	AlertPartitioned = "EdgeprobeSitePartitioned"
	AlertDegraded    = "EdgeprobeSiteDegraded"
	AlertIsolated    = "EdgeprobeAgentIsolated"
	AlertImpaired    = "EdgeprobeAgentImpaired"
	AlertSilent      = "EdgeprobeAgentSilent"

	// LabelVerdict is the state set label of RecordVerdict.
	LabelVerdict = "verdict"
	// labelDomain is the failure domain the rules attach with quorum_by.
	labelDomain = "domain"
)

// Group names and intervals. The site group runs every second so that a loss is declared
// within a second or two; the agent group reads an hour of pushes and has no such hurry.
const (
	GroupSites     = "edgeprobe"
	GroupAgents    = "edgeprobe-agents"
	silentLookback = "1h"
	agentsInterval = "15s"
	silentFor      = "1m"
	degradedFor    = "10s"
	sitesInterval  = "1s"
)

// gen writes the expressions of one parameter set.
type gen struct{ p Params }

func (g gen) quorum() string { return strconv.Itoa(g.p.Quorum) + " # QUORUM" }
func (g gen) fraction() string {
	return strconv.FormatFloat(g.p.MaxUpFraction, 'f', -1, 64) + " # MAX_UP_FRACTION"
}

// stale is each agent's staleness period in seconds, from its announced push interval.
func (g gen) stale() string {
	return fmt.Sprintf("max by (%s) (clamp_min(%d * %s, %g))", labelAgent, view.StaleFactor, pushInterval, view.MinStaleAfter.Seconds())
}

// freshOne selects the series of metric{matcher} whose last sample is 1 and fresh (its
// own timestamp within the agent's staleness period). Freshness comes from sample
// timestamps because remote-written series are never marked stale: without it an agent
// that died would vote for the whole query lookback. Both factors carry the series'
// labels without the name, so they match one to one.
func (g gen) freshOne(metric, matcher string) string {
	sel := metric + matcher
	return fmt.Sprintf("(%s == bool 1)\n  * (time() - timestamp(%s) < bool on (%s) group_left () %s)\n  == 1",
		sel, sel, labelAgent, g.stale())
}

// notCounted are the agents whose fresh push says isolated or impaired (an agent that
// never sends edgeprobe_agent_impaired is not impaired).
func (g gen) notCounted() string {
	return fmt.Sprintf("unless on (%s) (\n%s\n  or\n%s\n)", labelAgent,
		indent(g.freshOne(isolated, ""), 2), indent(g.freshOne(impaired, ""), 2))
}

// witnesses is one series per witness (fresh, neither isolated nor impaired) and state
// matched by states, labelled agent, site, state and, with quorum_by, its domain; value 1.
// Copies of a series (two receivers, a changed label set) count once.
func (g gen) witnesses(states string) string {
	matcher := fmt.Sprintf(`{%s="%s"}`, labelState, states)
	if strings.Contains(states, "|") {
		matcher = fmt.Sprintf(`{%s=~"%s"}`, labelState, states)
	}
	inner := g.freshOne(siteState, matcher) + "\n" + g.notCounted()
	if g.p.QuorumBy == "" {
		return fmt.Sprintf("max by (%s, %s, %s) (\n%s\n)", labelAgent, labelSite, labelState, indent(inner, 2))
	}
	// An agent without the label is a domain of its own: the domain is first its name,
	// then the label's value where it has one ("(.+)" does not match an empty value).
	by := g.p.QuorumBy
	return fmt.Sprintf("max by (%s, %s, %s, %s) (\n  label_replace(label_replace(\n%s\n  , %q, \"agent:$1\", %q, \"(.*)\"), %q, \"%s:$1\", %q, \"(.+)\") # QUORUM_BY\n)",
		labelAgent, labelSite, labelState, labelDomain, indent(inner, 4), labelDomain, labelAgent, labelDomain, by, by)
}

// agents counts witnesses (agents) per site.
func (g gen) agents(states string) string {
	return fmt.Sprintf("count by (%s) (\n%s\n)", labelSite, indent(g.witnesses(states), 2))
}

// domains counts the failure domains of the witnesses per site (the agents themselves
// without quorum_by): the number compared with the quorum.
func (g gen) domains(states string) string {
	if g.p.QuorumBy == "" {
		return g.agents(states)
	}
	return fmt.Sprintf("count by (%s) (\n  count by (%s, %s) (\n%s\n  )\n)", labelSite, labelSite, labelDomain, indent(g.witnesses(states), 4))
}

// fewUp holds for sites where at most max_up_fraction of the witnesses report up (the
// up count is 0 rather than absent for a site without up witnesses).
func (g gen) fewUp() string {
	ups := fmt.Sprintf("sum by (%s) (\n%s\n  or\n%s * 0\n)", labelSite, indent(g.witnesses("up"), 2), indent(g.witnesses(allStates), 2))
	return fmt.Sprintf("%s\n<=\n%s\n* %s", ups, g.agents(allStates), g.fraction())
}

const allStates = contract.SiteUp + "|" + contract.SiteDegraded + "|" + contract.SiteDown

func (g gen) lost() string {
	return fmt.Sprintf("%s >= %s\nand on (%s)\n%s", g.domains(contract.SiteDown), g.quorum(), labelSite, g.fewUp())
}

func (g gen) partitioned() string {
	return fmt.Sprintf("%s >= %s\nunless on (%s)\n%s", g.domains(contract.SiteDown), g.quorum(), labelSite, g.fewUp())
}

// degraded: enough witnesses, too few down domains for a loss, and some see trouble.
func (g gen) degraded() string {
	return fmt.Sprintf("%s >= %s\nunless on (%s)\n%s >= %s\nand on (%s)\n%s",
		g.domains(allStates), g.quorum(), labelSite, g.domains(contract.SiteDown), g.quorum(), labelSite,
		g.agents(contract.SiteDegraded+"|"+contract.SiteDown))
}

// sites is one series per site that some agent's push within the query lookback carries
// (every push carries the whole state set, so its unknown member marks each site).
func (g gen) sites() string {
	return fmt.Sprintf(`max by (%s) (%s{%s="%s"})`, labelSite, siteState, labelState, contract.SiteUnknown)
}

// verdictCode is one series per site whose value is the index of its verdict in
// view.Verdicts, by the rule's first match: lost, partitioned, unknown, degraded, up.
// Lost and partitioned come first because enough down domains imply enough witnesses.
func (g gen) verdictCode() string {
	code := func(v string) int {
		for i, name := range view.Verdicts {
			if name == v {
				return i
			}
		}
		panic("no verdict " + v)
	}
	branch := func(expr, verdict string) string {
		return fmt.Sprintf("(\n%s\n) * 0 + %d", indent(expr, 2), code(verdict))
	}
	return strings.Join([]string{
		branch(g.lost(), view.VerdictLost),
		branch(fmt.Sprintf("%s >= %s", g.domains(contract.SiteDown), g.quorum()), view.VerdictPartitioned),
		branch(fmt.Sprintf("%s\nunless on (%s)\n%s >= %s", g.sites(), labelSite, g.domains(allStates), g.quorum()), view.VerdictUnknown),
		branch(g.agents(contract.SiteDegraded+"|"+contract.SiteDown), view.VerdictDegraded),
		branch(g.sites(), view.VerdictUp),
	}, "\nor on ("+labelSite+")\n")
}

// verdict is the state set: per site one series per verdict, 1 for the site's and 0 for
// the others. The verdict is computed once, as a code, and compared with a table of the
// codes per site, so the set sums to 1 whatever pushes arrive while the query runs; a
// site that the two parts do not both see (one that appears at that instant) is left
// out of that evaluation rather than given a wrong sum.
func (g gen) verdict() string {
	var table []string
	for i, v := range view.Verdicts {
		table = append(table, fmt.Sprintf(`label_replace(%s * 0 + %d, "%s", "%s", "", "")`, g.sites(), i, LabelVerdict, v))
	}
	return fmt.Sprintf("(\n%s\n)\n== bool on (%s) group_left ()\n(\n%s\n)", indent(strings.Join(table, "\nor "), 2), labelSite, indent(g.verdictCode(), 2))
}

// orZero gives sites that have none of expr 0 instead of no series, for graphs.
func (g gen) orZero(expr string) string {
	return fmt.Sprintf("%s\nor on (%s)\n%s * 0", expr, labelSite, g.sites())
}

func (g gen) fresh() string {
	return fmt.Sprintf("max by (%s) (time() - timestamp(%s) < bool on (%s) group_left () %s)", labelAgent, pushInterval, labelAgent, g.stale())
}

// agentOne is the fresh agents whose metric is 1.
func (g gen) agentOne(metric string) string {
	return fmt.Sprintf("max by (%s) (\n%s\n)", labelAgent, indent(g.freshOne(metric, ""), 2))
}

// silent is the agents seen within silentLookback that have no fresh push.
func (g gen) silent() string {
	return fmt.Sprintf("count by (%s) (max_over_time(%s[%s]))\nunless on (%s)\n(time() - timestamp(%s) < on (%s) group_left () %s)",
		labelAgent, pushInterval, silentLookback, labelAgent, pushInterval, labelAgent, g.stale())
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// Generate writes the rule file for p.
func Generate(p Params) []byte {
	g := gen{p}
	var b strings.Builder
	by := "agent (no quorum_by)"
	if p.QuorumBy != "" {
		by = fmt.Sprintf("the distinct values of the agent label %q (quorum_by, marked QUORUM_BY)", p.QuorumBy)
	}
	args := ""
	if p.Quorum != view.DefaultQuorum {
		args += fmt.Sprintf(" -quorum %d", p.Quorum)
	}
	if p.QuorumBy != "" {
		args += " -quorum-by " + p.QuorumBy
	}
	if p.MaxUpFraction != view.DefaultMaxUpFraction {
		args += " -max-up-fraction " + strconv.FormatFloat(p.MaxUpFraction, 'f', -1, 64)
	}
	fmt.Fprintf(&b, header, p.Quorum, strconv.FormatFloat(p.MaxUpFraction, 'f', -1, 64), by, args)
	rule := func(kind, name, expr string, extra ...string) {
		fmt.Fprintf(&b, "      - %s: %s\n        expr: |\n%s\n", kind, name, indent(expr, 10))
		for _, e := range extra {
			b.WriteString(e)
		}
	}
	fmt.Fprintf(&b, "groups:\n  - name: %s\n    interval: %s\n    rules:\n", GroupSites, sitesInterval)

	b.WriteString(comment(`The verdict as a state set (dashboards): per site one series per verdict, 1 for the
current one, 0 for the others; it sums to exactly 1 per site at every evaluation.`))
	rule("record", RecordVerdict, g.verdict())

	b.WriteString(comment(`Counts for dashboards: witnesses (agents), those reporting up and down, and the
numbers the quorum is compared with (failure domains with quorum_by, else agents).`))
	rule("record", RecordWitnesses, g.orZero(g.agents(allStates)))
	rule("record", RecordWitnessesUp, g.orZero(g.agents(contract.SiteUp)))
	rule("record", RecordWitnessesDown, g.orZero(g.agents(contract.SiteDown)))
	rule("record", RecordQuorum, g.orZero(g.domains(allStates)))
	rule("record", RecordQuorumDown, g.orZero(g.domains(contract.SiteDown)))
	rule("record", RecordAgentFresh, g.fresh())
	b.WriteString(comment(`The settings these rules were generated with.`))
	fmt.Fprintf(&b, "      - record: %s\n        expr: vector(1)\n        labels: {quorum: %q, quorum_by: %q, max_up_fraction: %q}\n",
		RecordInfo, strconv.Itoa(p.Quorum), p.QuorumBy, strconv.FormatFloat(p.MaxUpFraction, 'f', -1, 64))

	alert := func(severity, summary, description string, forDur string) string {
		s := ""
		if forDur != "" {
			s += "        for: " + forDur + "\n"
		}
		return s + fmt.Sprintf("        labels:\n          severity: %s\n        annotations:\n          summary: %q\n          description: %q\n", severity, summary, description)
	}
	b.WriteString(comment(`Fires at the first evaluation that finds the site lost: the quorum already rules
out one agent's bad uplink. Its resolution is the recovery notice (Alertmanager sends it,
send_resolved being its default). The value is the number of down witnesses (domains).`))
	rule("alert", AlertLost, g.lost(), alert("critical", "Site {{ $labels.site }} is lost",
		"{{ $value }} witnesses (fresh agents, neither isolated nor impaired; failure domains with quorum_by) see every target of site {{ $labels.site }} down, and at most the max_up_fraction of them see it up.", ""))
	b.WriteString(comment(`Enough witnesses see the site down, but more than max_up_fraction see it up:
reachable from some vantage points and not from others. A warning, never a failover.`))
	rule("alert", AlertPartitioned, g.partitioned(), alert("warning", "Site {{ $labels.site }} is partitioned",
		"{{ $value }} witnesses see site {{ $labels.site }} down while more than the max_up_fraction of them see it up: a network partition, not a lost site.", ""))
	b.WriteString(comment(`Some witnesses see targets of the site down, too few for a loss. It reads the
pushed series at each evaluation, so it resolves at the first one after the site is up.`))
	rule("alert", AlertDegraded, g.degraded(), alert("warning", "Site {{ $labels.site }} is degraded",
		"Some edgeprobe witnesses see targets of site {{ $labels.site }} down, fewer than the quorum see all of them down.", degradedFor))
	rule("alert", AlertIsolated, g.agentOne(isolated), alert("warning", "edgeprobe agent {{ $labels.agent }} is isolated",
		"Agent {{ $labels.agent }} sees every site down at once or its control targets fail: its own uplink is the likely cause; its votes are not counted.", ""))
	rule("alert", AlertImpaired, g.agentOne(impaired), alert("warning", "edgeprobe agent {{ $labels.agent }} is impaired",
		"Agent {{ $labels.agent }} runs too late to judge its probes' timeouts (its host is starved of CPU); its votes are not counted.", ""))

	fmt.Fprintf(&b, "\n  - name: %s\n    interval: %s\n    rules:\n", GroupAgents, agentsInterval)
	b.WriteString(comment(fmt.Sprintf(`An agent that pushed within the last %s and has no fresh push now: it is no
witness. It resolves when the agent pushes again, or %s after its last push.`, silentLookback, silentLookback)))
	rule("alert", AlertSilent, g.silent(), alert("warning", "edgeprobe agent {{ $labels.agent }} stopped pushing",
		"No push from agent {{ $labels.agent }} for more than 3 push intervals; it is not counted as a witness.", silentFor))
	b.WriteString(GeneratedEnd)
	return []byte(b.String())
}

// GeneratedEnd ends the generated part of a rule file. Groups written after it by hand
// (rules on other series, such as certificate expiry) are kept when rulesgen rewrites
// the file, and TestRulesGenerated compares only what comes before.
const GeneratedEnd = "\n# End of the generated groups. Groups below this line are not generated: rulesgen keeps\n# them when it rewrites the file.\n"

// Merge returns generated followed by what existing (the file being rewritten) holds
// after its GeneratedEnd, if anything.
func Merge(generated, existing []byte) []byte {
	_, tail, ok := strings.Cut(string(existing), GeneratedEnd)
	if !ok {
		return generated
	}
	return append(generated[:len(generated):len(generated)], tail...)
}

// GeneratedPart is the part of a rule file up to and including GeneratedEnd (all of it
// if it has none).
func GeneratedPart(file []byte) []byte {
	head, _, ok := strings.Cut(string(file), GeneratedEnd)
	if !ok {
		return file
	}
	return []byte(head + GeneratedEnd)
}

func comment(s string) string {
	return "\n      # " + strings.ReplaceAll(s, "\n", "\n      # ") + "\n"
}

const header = `# edgeprobe's site verdicts as Prometheus rules, for Prometheus and VictoriaMetrics (vmalert)
# fed by the agents' remote_write pushes; one file for both (README.md says what each
# engine needs). Generated by packaging/prometheus/rulesgen; do not edit by hand.
#
# The rule is the view's (docs/architecture.md, "Verdicts at the view"). A site's witnesses are
# the agents whose last push is fresh (its samples' timestamps within 3 push intervals, at
# least 1 s), that are neither isolated nor impaired, and that report the site up,
# degraded or down. First match wins:
#   lost         the witnesses reporting down span at least the quorum, and at most
#                max_up_fraction of the witnesses report up
#   partitioned  as lost, but more of them report up
#   unknown      fewer witnesses than the quorum
#   degraded     some witness reports down or degraded
#   up           every witness reports up
#
# Settings: quorum %d (marked QUORUM), max_up_fraction %s (marked MAX_UP_FRACTION),
# witnesses counted by %s.
# This file is "rulesgen%s". Change the settings by generating the file anew rather
# than by hand (each appears in several expressions, since no alert reads another rule's
# recording), from the view's own config or from flags:
#   go run ./packaging/prometheus/rulesgen -config /etc/edgeprobe/view.toml -o FILE
#   go run ./packaging/prometheus/rulesgen -quorum 3 -quorum-by region -max-up-fraction 0.18 -o FILE
#
# Freshness is read from sample timestamps, because remote-written series are never
# marked stale: agents need a synchronised clock (NTP).
`
