// Package snapshot defines the structured, immutable value a poll cycle publishes: the components
// of the catalog, their pipelines and, per (component, environment), the deployment aggregates and
// live gauges. Every surface reads it and none writes it: the /metrics exposition is derived from
// it, and so will be the status page, badges and reports. It holds no exporter health (poll status,
// storage errors): that is read live, at scrape time.
//
// A Snapshot and everything it points to must not be modified once published; the collector
// builds a new one per poll cycle and swaps it in atomically.
package snapshot

import "time"

// Deployment states, the values of the state label, in the order surfaces list them.
const (
	StatePassed   = "passed"
	StateFailed   = "failed"
	StateCanceled = "canceled"
)

// States are every deployment state, in the order of the arrays indexed by state.
var States = [NumStates]string{StatePassed, StateFailed, StateCanceled}

// NumStates is the number of deployment states.
const NumStates = 3

// StateIndex is the index of state in States, or -1.
func StateIndex(state string) int {
	for i, s := range States {
		if s == state {
			return i
		}
	}
	return -1
}

// Snapshot is what one poll cycle (or, before the first, the replay of the deployment log) knows.
type Snapshot struct {
	// Taken is when it was built.
	Taken time.Time
	// Polled is set once a poll cycle of every organization of the catalog has ended; the
	// snapshot replayed at start, before any poll, has it false.
	Polled bool
	// Components are the catalog's components, sorted by Label.
	Components []Component
	// UnknownEnvironments are the environment names in use that the alias table does not
	// know, sorted.
	UnknownEnvironments []string
	// PipelineProblems are the annotated pipelines the exporter cannot follow, or follows with a
	// fallback, sorted by Pipeline then Reason.
	PipelineProblems []PipelineProblem
}

// Pipeline problem reasons, the reason label of buildkite_exporter_pipeline_errors.
const (
	ReasonNotFound        = "not_found"
	ReasonForbidden       = "forbidden"
	ReasonNoDeployments   = "no_deployments_in_window"
	ReasonNoEnvironmentMD = "no_environment_metadata"
	ReasonFutureTimestamp = "future_timestamp"
	// ReasonAnnotationMismatch: a deployment annotation (deployment-<env>) disagrees with the
	// build's meta-data or outcome, or was read after the build was counted elsewhere.
	ReasonAnnotationMismatch = "annotation_mismatch"
)

// PipelineReasons are every reason, sorted: each is exported, 0 or 1, for every linked pipeline.
var PipelineReasons = []string{ReasonAnnotationMismatch, ReasonForbidden, ReasonFutureTimestamp, ReasonNoDeployments, ReasonNoEnvironmentMD, ReasonNotFound}

// PipelineProblem is one annotated pipeline the exporter cannot count, or counts only with a
// fallback: the metric buildkite_exporter_pipeline_errors{pipeline,reason}, with words.
type PipelineProblem struct {
	Pipeline string // "<org>/<pipeline>"
	Reason   string // not_found, forbidden, no_deployments_in_window, no_environment_metadata, …
	// Severity is "error" (nothing of it is counted) or "warning" (a fallback applies).
	Severity string
	// Message says what is wrong and how to fix it, in one sentence or two.
	Message string
	// Since is when the problem was first seen.
	Since time.Time
}

// Component is one Backstage component and what its pipelines deployed.
type Component struct {
	// Label is the value of the component label: the entity name, or namespace/name outside the
	// default namespace.
	Label     string
	Ref       string // entity ref, e.g. component:default/shop
	Owner     string
	System    string
	Lifecycle string
	// Pipelines are the annotated pipelines, "<org>/<pipeline>", in annotation order.
	Pipelines []string
	// Environments are sorted by Name. Every environment a record names is there, and for a
	// pipeline without any record the environment its slug names (or the default one).
	Environments []Environment
}

// Environment is the deployment state of one (component, environment).
type Environment struct {
	Name string
	// Deployments are the finished deployments per pipeline, sorted by Pipeline; every
	// pipeline that deployed here, or would by its slug, is listed, with zeros.
	Deployments []PipelineDeployments
	// Duration is indexed like States (passed, failed; canceled never has one); nil until one
	// is observed. Arrays rather than maps: a snapshot holds tens of thousands of environments.
	Duration [NumStates]*Histogram
	// LeadTime, Recovery and ApprovalWait are nil until observed.
	LeadTime     *Histogram
	Recovery     *Histogram
	ApprovalWait *Histogram
	// LastFinished is indexed like States: when the latest deployment in that state finished
	// (zero: never).
	LastFinished [NumStates]time.Time
	// Failing is set while the latest finished, non-canceled deployment failed.
	Failing bool
	// Deployed is the latest passed deployment; nil before one.
	Deployed *Deployed
	// Running counts deployments scheduled, running, failing or canceling now; RunningSince is
	// the start of the oldest (zero when none runs).
	Running      int
	RunningSince time.Time
	// Awaiting counts deployments waiting on a block step, not older than the configured age;
	// AwaitingSince is when the oldest blocked (zero when none waits).
	Awaiting      int
	AwaitingSince time.Time
	// Objectives are the SLO objectives that apply, in the order config.SLOSuccess,
	// config.SLODuration; an SLO without an objective here is absent.
	Objectives []Objective
}

// Objective is one SLO objective that applies to an environment.
type Objective struct {
	SLO   string // config.SLOSuccess or config.SLODuration
	Ratio float64
}

// PipelineDeployments counts the finished deployments of one pipeline, by state.
type PipelineDeployments struct {
	Pipeline string            // "<org>/<pipeline>"
	Total    [NumStates]uint64 // indexed like States
	// Last is indexed like States: the latest finished deployment build in that state (zero
	// Number: none known).
	Last [NumStates]LastBuild
}

// LastBuild is the latest finished deployment build of a pipeline in one state.
type LastBuild struct {
	Number     int // the build number, > 0; 0 when none is known
	FinishedAt time.Time
	Version    string
}

// Deployed describes what an environment runs now: its latest passed deployment.
type Deployed struct {
	Version     string
	Commit      string
	FinishedAt  time.Time
	Pipeline    string // "<org>/<pipeline>"
	BuildNumber int
	// WebURL is the build's page on Buildkite; empty when the log predates it.
	WebURL string
	// DeployedBy and ReleaseNotes: who deployed it and its release notes, with
	// keep_people_and_notes; empty otherwise. Never labels.
	DeployedBy   string
	ReleaseNotes string
}

// Histogram is a fixed-bucket histogram.
type Histogram struct {
	// Bounds are the upper bounds, ascending, without +Inf. They are shared; never modify them.
	Bounds []float64
	// Counts are per bucket, not cumulative, len(Bounds)+1 long: the last counts the
	// observations above the highest bound.
	Counts []uint64
	Sum    float64
	Count  uint64
}

// Cumulative returns the count of observations ≤ Bounds[i], for each i.
func (h *Histogram) Cumulative() []uint64 {
	out := make([]uint64, len(h.Bounds))
	var acc uint64
	for i := range h.Bounds {
		if i < len(h.Counts) {
			acc += h.Counts[i]
		}
		out[i] = acc
	}
	return out
}
