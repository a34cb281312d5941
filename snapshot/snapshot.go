// Package snapshot defines the structured, immutable value a poll cycle publishes: the components
// of the catalog, their pipelines and, per (component, environment), the deployment aggregates and
// live gauges. Every surface reads it and none writes it: the /metrics exposition is derived from
// it, and so will be the status page, badges and reports. It holds no exporter health (poll status,
// storage errors): that is read live, at scrape time.
//
// A Snapshot and everything it points to must not be modified once published; the collector
// builds a new one per poll cycle and swaps it in atomically.
package snapshot

import (
	"math"
	"time"
)

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
	// ExemplarsDropped counts, indexed like ExemplarDropReasons, the observations whose
	// exemplar lost its commit label or was left out to keep within ExemplarMaxRunes, over the
	// whole deployment log (compaction keeps the counts).
	ExemplarsDropped [2]uint64
}

// Exemplar drop reasons, the reason label of buildkite_exporter_exemplars_dropped_total.
const (
	// ExemplarDroppedCommit: the exemplar went out without its commit label.
	ExemplarDroppedCommit = "commit_label"
	// ExemplarDroppedAll: even the build label alone exceeds the limit; no exemplar.
	ExemplarDroppedAll = "label_limit"
)

// ExemplarDropReasons are the reasons, sorted, in the order of Snapshot.ExemplarsDropped.
var ExemplarDropReasons = [2]string{ExemplarDroppedCommit, ExemplarDroppedAll}

// ExemplarMaxRunes is OpenMetrics' limit on an exemplar's label names and values together,
// counted in runes as client_golang's prometheus.ExemplarMaxRunes is.
const ExemplarMaxRunes = 128

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
	// Created is when the three counters started counting: the finished_at of the earliest
	// record of (component, environment, pipeline); zero when unknown (no record yet, or the
	// counts come from a compacted base written before created timestamps were kept).
	Created time.Time
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
	// Exemplars are nil, or len(Counts) long: per bucket, the latest observation (by its
	// finish time), nil where none is known. Shared with the aggregate, which replaces
	// rather than modifies them: never modify them.
	Exemplars []*Exemplar
	// Native is the same observations in exponential buckets (NativeSchema); nil when
	// unknown (counts compacted before native counts were kept). Shared: never modify it.
	Native *Native
	// Created is the finished_at of the earliest observation in Unix nanoseconds (8 bytes,
	// not a time.Time's 24: a large catalog has hundreds of thousands of histograms); 0 when
	// unknown.
	Created int64
}

// Exemplar is one observation and the build that made it. Its JSON is part of the compaction
// base's format (deployment.Aggregate, version 3): changing a tag is a store format change.
type Exemplar struct {
	Value float64 `json:"value"`
	// Time is the build's finished_at in Unix nanoseconds (At): 8 bytes instead of a
	// time.Time's 24, for the hundreds of thousands a large catalog keeps.
	Time int64 `json:"time"`
	// Build is the path of the build's web page, "<org>/<pipeline>/builds/<number>": Grafana
	// links https://buildkite.com/${__value.raw}.
	Build string `json:"build"`
	// Commit is the short sha (ShortCommit); empty when unknown or when it did not fit.
	Commit string `json:"commit,omitempty"`
}

// At is e.Time as a time.Time.
func (e *Exemplar) At() time.Time { return time.Unix(0, e.Time).UTC() }

// Exemplar label names, sorted: the order the exposition writes them in.
const (
	ExemplarBuildLabel  = "build"
	ExemplarCommitLabel = "commit"
)

// ShortCommitLength is how many hex digits of a sha an exemplar carries: 12, as the Linux
// kernel's and Git's guidance for unambiguous abbreviations in large repositories suggests
// (7, Git's minimum, collides in repositories with millions of objects), and short enough
// that build and commit fit 128 runes with pipeline slugs of up to ~90 characters.
const ShortCommitLength = 12

// Native histograms: the exponential schema and zero bucket every native form uses.
//
// Schema 4 has 16 buckets per power of two (each bucket's upper bound is 4.4 % above its lower
// one). It puts a bucket boundary at 2^(157/16) = 899.20 s, 0.09 % under the 900 s duration
// SLO (and at 3597 s under an hour), so histogram_fraction(0, 900, …) misplaces at most the
// deployments that took 899.20–900 s plus 2 % of those that took 900–939 s; schema 3 would put
// the boundary at 861 s and interpolate over 861–939 s. The zero bucket holds observations
// of at most 1 s (a zero wait, a build that did nothing): with it, a histogram has at most 16
// buckets per doubling between 1 s and its largest observation, at most 400 up to a year.
const (
	NativeSchema        = 4
	NativeZeroThreshold = 1.0
)

// Native is a native histogram's buckets: counts per exponential bucket, not deltas.
type Native struct {
	ZeroCount uint64 `json:"zero_count,omitempty"`
	// Buckets are the populated buckets, sorted by Index.
	Buckets []NativeBucket `json:"buckets,omitempty"`
}

// NativeBucket is one populated exponential bucket: it holds the observations v with
// 2^((Index-1)/16) < v ≤ 2^(Index/16). 8 bytes: a snapshot of 10,000 components holds
// millions; a count that would pass 32 bits drops the native form (deployment package).
type NativeBucket struct {
	Index int32  `json:"i"`
	Count uint32 `json:"n"`
}

// nativeBounds are the fractions 2^(i/16 - 1), i = 0…15, as math.Frexp returns them.
var nativeBounds = func() [1 << NativeSchema]float64 {
	var b [1 << NativeSchema]float64
	for i := range b {
		b[i] = math.Exp2(float64(i)/(1<<NativeSchema) - 1)
	}
	return b
}()

// NativeIndex is the exponential bucket of v > NativeZeroThreshold, computed as
// client_golang does (from math.Frexp, exact at powers of two).
func NativeIndex(v float64) int32 {
	frac, exp := math.Frexp(v)
	i := 0
	for i < len(nativeBounds) && nativeBounds[i] < frac {
		i++
	}
	return int32(i + (exp-1)*len(nativeBounds))
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
