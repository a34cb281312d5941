package alerts

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The PromQL of the alerts a component page shows, and of the SLI recording rules the burn-rate
// alerts are built on, is written once, here: the Prometheus rule template calls these functions
// with no extra matchers, and the Grafana-managed rules (grafana.go) with the component's
// matcher, inlining the recording rules because Grafana cannot read Prometheus' recorded series
// unless the Prometheus rules are loaded too.
//
// sel is a list of label matchers ANDed into every selector of a raw exporter metric, e.g.
// `component="shop"`; empty for the Prometheus rules.

// exprs binds the expressions to the thresholds of one render.
type exprs struct{ p Params }

// matchers joins the selector's matchers with a selector's own.
func matchers(sel, own string) string {
	switch {
	case sel == "":
		return own
	case own == "":
		return sel
	}
	return sel + "," + own
}

// braces is a selector's {…}, or nothing when it has no matchers.
func braces(m string) string {
	if m == "" {
		return ""
	}
	return "{" + m + "}"
}

// leRegex matches the duration SLO's bucket: 2.x keeps le="900" as exposed, 3.x normalises it
// to le="900.0".
func (e exprs) leRegex() string {
	return strconv.Quote(strconv.FormatInt(int64(e.p.DurationThreshold/time.Second), 10) + `(\.0)?`)
}

// deployments is the number of deployments an SLO counts over rng, by (component, environment).
func (e exprs) deployments(slo, rng, sel string) string {
	switch slo {
	case "success":
		return fmt.Sprintf(`sum by (component, environment) (increase(buildkite_deployments_total{%s}[%s]))`, matchers(sel, `state=~"passed|failed"`), rng)
	case "duration":
		return fmt.Sprintf(`sum by (component, environment) (increase(buildkite_deployment_duration_seconds_count{%s}[%s]))`, matchers(sel, `state="passed"`), rng)
	}
	panic("alerts: unknown SLO " + slo)
}

// errors is the number of bad deployments of an SLO over rng, by (component, environment);
// multi-line, indented relative to its first line.
func (e exprs) errors(slo, rng, sel string) string {
	switch slo {
	case "success":
		return fmt.Sprintf(`sum by (component, environment) (increase(buildkite_deployments_total{%s}[%s]))`, matchers(sel, `state="failed"`), rng)
	case "duration":
		return "clamp_min(\n  " + e.deployments("duration", rng, sel) + "\n  -\n  " +
			fmt.Sprintf(`sum by (component, environment) (increase(buildkite_deployment_duration_seconds_bucket{%s,le=~%s}[%s])),`, matchers(sel, `state="passed"`), e.leRegex(), rng) +
			"\n  0\n)"
	}
	panic("alerts: unknown SLO " + slo)
}

// errorBudget is 1 - objective by (component, environment, slo), held through an exporter
// outage.
func (e exprs) errorBudget(sel string) string {
	return fmt.Sprintf(`1 - max by (component, environment, slo) (last_over_time(buildkite_deployment_slo_objective_ratio%s[%s]))`, braces(sel), promDuration(e.p.StateHold))
}

// failed is BuildkiteDeploymentFailed's condition before the owner join.
func (e exprs) failed(sel string) string {
	return fmt.Sprintf(`sum by (component, environment, pipeline) (increase(buildkite_deployments_total{%s}[15m])) > 0`, matchers(sel, `state="failed"`))
}

// failing is BuildkiteDeploymentFailing's condition before the owner join.
func (e exprs) failing(sel string) string {
	return fmt.Sprintf(`max by (component, environment) (last_over_time(buildkite_deployment_failing{%s}[%s])) == 1`,
		matchers(sel, "environment=~"+strconv.Quote(e.p.ProductionEnvironments)), promDuration(e.p.StateHold))
}

// stuck is BuildkiteDeploymentStuck's condition before the owner join.
func (e exprs) stuck(sel string) string {
	return fmt.Sprintf(`time() - min by (component, environment) (buildkite_deployment_running_since_timestamp_seconds%s) > %s`,
		braces(sel), strconv.FormatFloat(e.p.StuckAfter.Seconds(), 'f', -1, 64))
}

// burnRate is an SLO's error-budget burn rate over rng for one window, inlined: the expression
// of the recording rule component_environment_slo:buildkite_deployment_error_budget:burnrate<rng>
// without the slo label (the caller names the SLO in sel's objective matcher).
func (e exprs) burnRate(slo, rng, sel string) string {
	return "(\n  (\n    " + indent(e.errors(slo, rng, sel), 4) + "\n    /\n    " + e.deployments(slo, rng, sel) +
		"\n  )\n  / on (component, environment)\n  (" + e.errorBudget(matchers(sel, `slo="`+slo+`"`)) + ")\n)"
}

// budgetBurn is the condition of an SLO's burn-rate alert over every ticket tier, for one
// component: a tier fires when both its windows burn faster than its factor and its long window
// has at least MinDeployments deployments; the tiers are or-ed into one rule.
func (e exprs) budgetBurn(slo string, tiers []tier, sel string) string {
	var parts []string
	for _, t := range tiers {
		f := strconv.FormatFloat(t.Factor, 'f', -1, 64)
		parts = append(parts, "(\n  "+indent(e.burnRate(slo, t.Long, sel), 2)+" > "+f+
			"\n  and on (component, environment)\n  "+indent(e.burnRate(slo, t.Short, sel), 2)+" > "+f+
			"\n  and on (component, environment)\n  "+e.deployments(slo, t.Long, sel)+" >= "+strconv.Itoa(e.p.MinDeployments)+"\n)")
	}
	return strings.Join(parts, "\nor\n")
}

// indent prefixes every line of s but the first with n spaces, for a multi-line expression
// placed after text already indented.
func indent(s string, n int) string {
	return strings.ReplaceAll(s, "\n", "\n"+strings.Repeat(" ", n))
}
