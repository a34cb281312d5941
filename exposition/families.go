package exposition

import (
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// refreshed ends every HELP string: the values come from the last poll, not from the scrape.
const refreshed = " Refreshed every poll interval."

// family is one deployment metric family: what its header says and which series a snapshot has.
// It is the single description both the chunked encoder and the const-metric Collector read.
type family struct {
	name, help string
	typ        dto.MetricType
	// labels are sorted by name, the order client_golang keeps label pairs in; every series
	// gives its values in this order.
	labels []string
	// each calls emit for every series of s, in the order the registry's Gather sorts them
	// (by label values, in label-name order), reusing sr between calls.
	each func(s *snapshot.Snapshot, sr *series, emit func())
}

// maxLabels is the most labels a deployment family has.
const maxLabels = 5

// series is one series of a family as each produces it. emit's consumer copies what it keeps.
type series struct {
	values [maxLabels]string // valid UTF-8, in the family's label order
	value  float64           // gauges and counters
	hist   *snapshot.Histogram
	// created is a counter's created timestamp; zero: none.
	created time.Time
}

var (
	labelsCE    = []string{"component", "environment"}
	labelsState = []string{"component", "environment", "state"}
)

const (
	gaugeType     = dto.MetricType_GAUGE
	counterType   = dto.MetricType_COUNTER
	histogramType = dto.MetricType_HISTOGRAM
)

// families are the deployment families in name order, the order Gather returns families in.
var families = []*family{
	{
		name: "buildkite_component_info", typ: gaugeType,
		labels: []string{"component", "lifecycle", "owner", "pipeline", "system"},
		help:   "Backstage component linked to a Buildkite pipeline by its annotation; one series per (component, pipeline), value 1." + refreshed,
		each:   eachComponentInfo,
	},
	{
		name: "buildkite_deployment_approval_wait_seconds", typ: histogramType, labels: labelsCE,
		help: "Time deployments waited on block steps (job runnable_at to unblocked_at)." + refreshed,
		each: envHistogram(func(e *snapshot.Environment) *snapshot.Histogram { return e.ApprovalWait }),
	},
	{
		name: "buildkite_deployment_awaiting_approval_since_timestamp_seconds", typ: gaugeType, labels: labelsCE,
		help: "When the oldest deployment awaiting approval blocked; absent when none waits." + refreshed,
		each: envGauge(func(e *snapshot.Environment) (float64, bool) {
			return unixSeconds(e.AwaitingSince), e.Awaiting > 0
		}),
	},
	{
		name: "buildkite_deployment_duration_seconds", typ: histogramType, labels: labelsState,
		help: "Time from a passed or failed deployment's start to its finish." + refreshed,
		each: eachDuration,
	},
	{
		name: "buildkite_deployment_failing", typ: gaugeType, labels: labelsCE,
		help: "1 while the latest finished, non-canceled deployment of the environment failed." + refreshed,
		each: envGauge(func(e *snapshot.Environment) (float64, bool) {
			if e.Failing {
				return 1, true
			}
			return 0, true
		}),
	},
	{
		name: "buildkite_deployment_info", typ: gaugeType,
		labels: []string{"commit", "component", "environment", "version"},
		help:   "What is deployed now: version and commit of the latest passed deployment." + refreshed,
		each:   eachInfo,
	},
	{
		name: "buildkite_deployment_last_build_number", typ: gaugeType,
		labels: []string{"component", "environment", "pipeline", "state"},
		help:   "Number of the latest finished deployment build in this state; alerts link to https://buildkite.com/<pipeline>/builds/<value>." + refreshed,
		each:   eachLastBuildNumber,
	},
	{
		name: "buildkite_deployment_last_finished_timestamp_seconds", typ: gaugeType, labels: labelsState,
		help: "When the latest deployment in this state finished." + refreshed,
		each: eachLastFinished,
	},
	{
		name: "buildkite_deployment_lead_time_seconds", typ: histogramType, labels: labelsCE,
		help: "Time from a commit's first build in the component's pipelines to its passed deployment." + refreshed,
		each: envHistogram(func(e *snapshot.Environment) *snapshot.Histogram { return e.LeadTime }),
	},
	{
		name: "buildkite_deployment_recovery_seconds", typ: histogramType, labels: labelsCE,
		help: "Time from a failed deployment to the next passed deployment of the environment." + refreshed,
		each: envHistogram(func(e *snapshot.Environment) *snapshot.Histogram { return e.Recovery }),
	},
	{
		name: "buildkite_deployment_running_since_timestamp_seconds", typ: gaugeType, labels: labelsCE,
		help: "Start of the oldest deployment still running; absent when none runs." + refreshed,
		each: envGauge(func(e *snapshot.Environment) (float64, bool) {
			return unixSeconds(e.RunningSince), e.Running > 0
		}),
	},
	{
		name: "buildkite_deployment_slo_objective_ratio", typ: gaugeType,
		labels: []string{"component", "environment", "slo"},
		help:   "The SLO objective that applies to the environment, from the configuration." + refreshed,
		each:   eachObjective,
	},
	{
		name: "buildkite_deployments_awaiting_approval", typ: gaugeType, labels: labelsCE,
		help: "Deployments waiting on a block step, not older than awaiting_approval_max_age." + refreshed,
		each: envGauge(func(e *snapshot.Environment) (float64, bool) { return float64(e.Awaiting), true }),
	},
	{
		name: "buildkite_deployments_running", typ: gaugeType, labels: labelsCE,
		help: "Deployments scheduled, running, failing or canceling." + refreshed,
		each: envGauge(func(e *snapshot.Environment) (float64, bool) { return float64(e.Running), true }),
	},
	{
		name: "buildkite_deployments_total", typ: counterType,
		labels: []string{"component", "environment", "pipeline", "state"},
		help:   "Finished deployments by state (passed, failed, canceled)." + refreshed,
		each:   eachDeployments,
	},
	{
		name: "buildkite_exporter_exemplars_dropped_total", typ: counterType, labels: []string{"reason"},
		help: "Deployment observations whose exemplar lost its commit label (commit_label) or was left out (label_limit) to keep within OpenMetrics' 128 runes of exemplar labels, over the deployment log: a pipeline slug too long for the build link." + refreshed,
		each: eachExemplarDropped,
	},
	{
		name: "buildkite_exporter_pipeline_errors", typ: gaugeType, labels: []string{"pipeline", "reason"},
		help: "1 when the exporter cannot follow an annotated pipeline, or follows it with a fallback, by reason (annotation_mismatch, forbidden, future_timestamp, no_deployments_in_window, no_environment_metadata, not_found); /status and the log say how to fix it." + refreshed,
		each: eachPipelineError,
	},
}

// familyNames are the names of families, for the handler to refuse exporter families that
// would repeat one.
var familyNames = func() map[string]bool {
	m := make(map[string]bool, len(families))
	for _, f := range families {
		m[f.name] = true
	}
	return m
}()
