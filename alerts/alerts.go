// Package alerts renders the Prometheus recording and alerting rules shipped with the exporter and
// holds the example Alertmanager configuration. The rules are a template because their thresholds
// (for: durations, the duration SLO's histogram bucket, the SLO window, the minimum number of
// deployments) are configuration; objectives are not: the rules read them from the exporter's
// buildkite_deployment_slo_objective_ratio series, so changing an objective needs no new rules.
package alerts

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"

	"github.com/prometheus/common/model"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

//go:embed rules.yml.tmpl
var rulesTemplate string

// AlertmanagerExample is alerts/alertmanager.yml: routing by owner, an info feed, and inhibition of
// component alerts while the exporter is down. Its webhook URLs are placeholders under
// ExampleWebhookBase.
//
//go:embed alertmanager.yml
var AlertmanagerExample []byte

// ExampleWebhookBase prefixes every webhook URL of AlertmanagerExample; replace it to point the
// example at real receivers.
const ExampleWebhookBase = "https://alerts.example.com/hooks"

// DefaultRunbookURL is the runbook the rules link to; each alert appends "#<alertname in lower case>",
// the anchor GitHub gives the alert's section heading.
const DefaultRunbookURL = "https://github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/blob/main/docs/runbook.md"

// Params are the thresholds rendered into the rules. DefaultParams matches the defaults of the
// exporter's configuration file.
type Params struct {
	// RunbookURL is the runbook document; alerts link to RunbookURL + "#" + lower-case alert name.
	RunbookURL string
	// ExporterSelector selects the exporter's scrape target in `up`, e.g. job="buildkite_deployments_exporter".
	ExporterSelector string
	// ProductionEnvironments is a regular expression (fully anchored, as in PromQL) of the
	// environments whose failing or slow deployments warn.
	ProductionEnvironments string

	FailingFor            time.Duration // latest deployment failed and none passed since, for this long
	SlowThreshold         time.Duration // p90 of passed deployments over 1d above this
	StuckAfter            time.Duration // a deployment running longer than this
	AwaitingApprovalAfter time.Duration // a deployment blocked at a gate longer than this
	// MinDeployments is the fewest deployments a window needs before its ratios may alert.
	MinDeployments    int
	PollingStaleAfter time.Duration // no successful poll of an organization for this long
	RateLimitLowRatio float64       // remaining / limit below this
	// WebhooksSilentAfter: deployments were counted, but no webhook accepted, for this long.
	WebhooksSilentAfter time.Duration

	// DurationThreshold is the duration SLO's threshold; it must be a bucket bound (whole seconds)
	// of buildkite_deployment_duration_seconds.
	DurationThreshold time.Duration
	// SLOWindow is the period over which the error budget is counted.
	SLOWindow time.Duration
	// SLOWindowInterval is the evaluation interval of the whole-window recording rules.
	SLOWindowInterval time.Duration
	// StateHold is how long rules keep the last reported state of a series that vanished (owners,
	// objectives, failing), so an exporter outage mutes alerts (Alertmanager inhibition) instead
	// of resolving them.
	StateHold time.Duration

	ExporterDownFor  time.Duration
	APIErrorRatio    float64 // share of failed API requests over 10m
	APIErrorsFor     time.Duration
	RateLimitLowFor  time.Duration
	CatalogErrorsFor time.Duration
}

// DefaultParams returns the thresholds of the default configuration.
func DefaultParams() Params {
	return Params{
		RunbookURL:             DefaultRunbookURL,
		ExporterSelector:       `job="buildkite_deployments_exporter"`,
		ProductionEnvironments: "production",
		FailingFor:             15 * time.Minute,
		SlowThreshold:          30 * time.Minute,
		StuckAfter:             2 * time.Hour,
		AwaitingApprovalAfter:  24 * time.Hour,
		MinDeployments:         3,
		PollingStaleAfter:      10 * time.Minute,
		RateLimitLowRatio:      0.1,
		WebhooksSilentAfter:    time.Hour,
		DurationThreshold:      15 * time.Minute,
		SLOWindow:              28 * 24 * time.Hour,
		SLOWindowInterval:      5 * time.Minute,
		StateHold:              time.Hour,
		ExporterDownFor:        5 * time.Minute,
		APIErrorRatio:          0.1,
		APIErrorsFor:           15 * time.Minute,
		RateLimitLowFor:        10 * time.Minute,
		CatalogErrorsFor:       15 * time.Minute,
	}
}

// ParamsFromConfig returns DefaultParams with the objectives and thresholds of cfg and the given
// runbook URL. The parameters the configuration file does not have (the exporter selector, the
// production environments, the exporter's own alerts) keep their defaults.
func ParamsFromConfig(cfg *config.Config, runbookURL string) Params {
	p := DefaultParams()
	p.RunbookURL = runbookURL
	p.FailingFor = cfg.Alerts.FailingFor.Std()
	p.SlowThreshold = cfg.Alerts.SlowThreshold.Std()
	p.StuckAfter = cfg.Alerts.StuckAfter.Std()
	p.AwaitingApprovalAfter = cfg.Alerts.AwaitingApprovalAfter.Std()
	p.MinDeployments = cfg.Alerts.MinDeployments
	p.PollingStaleAfter = cfg.Alerts.PollingStaleAfter.Std()
	p.RateLimitLowRatio = cfg.Alerts.RateLimitLowRatio
	p.WebhooksSilentAfter = cfg.Alerts.WebhooksSilentAfter.Std()
	p.DurationThreshold = cfg.SLOs.DurationThreshold.Std()
	p.SLOWindow = cfg.SLOs.Window.Std()
	return p
}

// selectorRE is a comma-separated list of PromQL label matchers with double-quoted values.
var selectorRE = regexp.MustCompile(`^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*(?:,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*)*,?\s*$`)

// Validate reports the first parameter that would render broken or meaningless rules, naming it.
func (p Params) Validate() error {
	u, err := url.Parse(p.RunbookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("runbook URL %q must be an absolute http(s) URL without #fragment", p.RunbookURL)
	}
	if strings.ContainsAny(p.RunbookURL, "'\"{} \n") {
		return fmt.Errorf("runbook URL %q must not contain quotes, braces or spaces", p.RunbookURL)
	}
	if !selectorRE.MatchString(p.ExporterSelector) || strings.Contains(p.ExporterSelector, "\n") {
		return fmt.Errorf(`exporter selector %q is not a list of label matchers such as job="buildkite_deployments_exporter"`, p.ExporterSelector)
	}
	if p.ProductionEnvironments == "" {
		return errors.New("production environments regex must not be empty")
	}
	if _, err := regexp.Compile("^(?:" + p.ProductionEnvironments + ")$"); err != nil {
		return fmt.Errorf("production environments regex %q: %w", p.ProductionEnvironments, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"failing_for", p.FailingFor}, {"slow_threshold", p.SlowThreshold}, {"stuck_after", p.StuckAfter},
		{"awaiting_approval_after", p.AwaitingApprovalAfter}, {"polling_stale_after", p.PollingStaleAfter},
		{"webhooks_silent_after", p.WebhooksSilentAfter},
		{"slos.duration_threshold", p.DurationThreshold}, {"slos.window", p.SLOWindow},
		{"SLO window evaluation interval", p.SLOWindowInterval}, {"state hold", p.StateHold},
		{"exporter down for", p.ExporterDownFor}, {"API errors for", p.APIErrorsFor},
		{"rate limit low for", p.RateLimitLowFor}, {"catalog errors for", p.CatalogErrorsFor},
	} {
		// Rules take Prometheus durations, which have millisecond resolution.
		if d.v <= 0 || d.v%time.Millisecond != 0 {
			return fmt.Errorf("%s: %s must be positive and a whole number of milliseconds", d.name, d.v)
		}
	}
	if p.DurationThreshold%time.Second != 0 || p.DurationThreshold >= 1e6*time.Second {
		// The bucket's le label is the threshold in seconds; above 1e6 s it is printed in
		// exponent notation and the regex below would not match it.
		return fmt.Errorf("slos.duration_threshold: %s must be whole seconds below 1e6 s (a bucket bound of buildkite_deployment_duration_seconds)", p.DurationThreshold)
	}
	if p.SLOWindow <= 3*24*time.Hour {
		return fmt.Errorf("slos.window: %s must be longer than the 3d long burn-rate window", p.SLOWindow)
	}
	if p.MinDeployments < 1 {
		return fmt.Errorf("min_deployments: %d must be at least 1", p.MinDeployments)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"rate_limit_low_ratio", p.RateLimitLowRatio}, {"API error ratio", p.APIErrorRatio}} {
		if !(r.v > 0 && r.v < 1) {
			return fmt.Errorf("%s: %v must be between 0 and 1", r.name, r.v)
		}
	}
	return nil
}

// window is a range the SLI recording rules are computed over.
type window struct{ Name, Range string }

// tier is a multi-window burn-rate alert: both windows must burn faster than Factor.
type tier struct {
	Long, Short string
	longDur     time.Duration
	Factor      float64
}

// slo describes one of the two deployment SLOs for the burn-rate alerts.
type slo struct{ Name, Alert, Summary, What string }

// Render returns the rule file for p, ready for `promtool check rules` and Prometheus'
// rule_files. It fails, naming the parameter, when p is invalid.
func Render(p Params) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("alert rules: %w", err)
	}
	tiers := ticketTiers(p)
	e := exprs{p}
	data := struct {
		Params
		Windows                     []window
		SLOWindowRange              string
		Tiers                       []tier
		SLOs                        []slo
		ProductionEnvironmentsRegex string
	}{
		Params: p,
		Windows: []window{
			{"2h", "2h"}, {"6h", "6h"}, {"1d", "1d"}, {"3d", "3d"},
		},
		SLOWindowRange: promDuration(p.SLOWindow),
		Tiers:          tiers,
		SLOs: []slo{
			{"success", "BuildkiteDeploymentSuccessBudgetBurn", "Deployments fail faster than the success objective allows.",
				"too many deployments fail"},
			{"duration", "BuildkiteDeploymentDurationBudgetBurn", "Deployments are slower than the duration objective allows.",
				"too many passed deployments take longer than " + promDuration(p.DurationThreshold)},
		},
		ProductionEnvironmentsRegex: strconv.Quote(p.ProductionEnvironments),
	}
	t, err := template.New("rules").Delims("<%", "%>").Option("missingkey=error").Funcs(template.FuncMap{
		"dur":     promDuration,
		"secs":    func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) },
		"num":     func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		"runbook": func(alert string) string { return p.RunbookURL + "#" + strings.ToLower(alert) },
		// The shared expressions (expr.go).
		"deployments": e.deployments,
		"errors":      e.errors,
		"errorBudget": e.errorBudget,
		"failed":      e.failed,
		"failing":     e.failing,
		"stuck":       e.stuck,
		"indent":      func(n int, s string) string { return indent(s, n) },
	}).Parse(rulesTemplate)
	if err != nil {
		return nil, fmt.Errorf("alert rules template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("alert rules template: %w", err)
	}
	return b.Bytes(), nil
}

// ticketTiers are the ticket tiers of the SRE workbook: 10% of the budget spent within 1d (seen
// over 2h too) or within 3d (seen over 6h too). The factor scales with the SLO window.
func ticketTiers(p Params) []tier {
	tiers := []tier{
		{Long: "1d", Short: "2h", longDur: 24 * time.Hour},
		{Long: "3d", Short: "6h", longDur: 72 * time.Hour},
	}
	for i := range tiers {
		f := 0.1 * float64(p.SLOWindow) / float64(tiers[i].longDur)
		tiers[i].Factor = math.Round(f*1000) / 1000
	}
	return tiers
}

// RunbookAnchor is the anchor of an alert's section in docs/runbook.md.
func RunbookAnchor(alert string) string { return strings.ToLower(alert) }

// promDuration formats d as a Prometheus duration, in days rather than weeks ("28d", not "4w")
// because SLO windows are usually spoken of in days.
func promDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return model.Duration(d).String()
}

// GitHubAnchor returns the anchor GitHub gives a Markdown heading: lower case, spaces to hyphens,
// punctuation other than hyphens and underscores dropped.
func GitHubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
