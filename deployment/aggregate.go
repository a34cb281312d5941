package deployment

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// Histogram bucket layouts, kept short because every bucket is a series per (component,
// environment). Lead time and recovery have exactly the DORA performance boundaries (1h, 1d, 1w,
// 30d); duration buckets come from config because the duration SLO threshold must be one of them.
var (
	leadTimeBuckets     = []float64{3600, 86400, 604800, 2592000}
	recoveryBuckets     = []float64{3600, 86400, 604800, 2592000}
	approvalWaitBuckets = []float64{300, 3600, 86400}
)

// Histogram kinds: the keys of Aggregate.Bounds.
const (
	histDuration     = "duration"
	histLeadTime     = "lead_time"
	histRecovery     = "recovery"
	histApprovalWait = "approval_wait"
)

// histogramMetrics names the metric each kind is exposed as.
var histogramMetrics = map[string]string{
	histDuration:     "buildkite_deployment_duration_seconds",
	histLeadTime:     "buildkite_deployment_lead_time_seconds",
	histRecovery:     "buildkite_deployment_recovery_seconds",
	histApprovalWait: "buildkite_deployment_approval_wait_seconds",
}

// currentBounds returns this binary's bucket bounds by histogram kind, read when called
// (config.DurationBuckets is a variable).
func currentBounds() map[string][]float64 {
	return map[string][]float64{
		histDuration:     slices.Clone(config.DurationBuckets),
		histLeadTime:     slices.Clone(leadTimeBuckets),
		histRecovery:     slices.Clone(recoveryBuckets),
		histApprovalWait: slices.Clone(approvalWaitBuckets),
	}
}

// histograms returns the aggregate's histograms of kind.
func (a *Aggregate) histograms(kind string) map[string]*histogram {
	switch kind {
	case histDuration:
		return a.Duration
	case histLeadTime:
		return a.LeadTime
	case histRecovery:
		return a.Recovery
	case histApprovalWait:
		return a.ApprovalWait
	}
	return nil
}

// BucketsChangedError is UnmarshalAggregate's error for a compacted base whose histogram
// counts were aggregated with other bucket bounds than this binary's: a count cannot be moved
// from one bucket to another, so such a base cannot be added to. The caller decides: when
// nothing was ever compacted (store.State.Compacted is 0) the records alone rebuild every
// histogram with the new bounds; otherwise it has to refuse to start.
type BucketsChangedError struct {
	Histogram string    // the metric, e.g. buildkite_deployment_duration_seconds
	Stored    []float64 // the bounds in the base; nil when a version-1 base did not record them
	// StoredBuckets is the number of buckets of the stored counts (bounds + the +Inf one).
	StoredBuckets int
	Current       []float64 // this binary's bounds
}

func (e *BucketsChangedError) Error() string {
	stored := fmt.Sprint(e.Stored)
	if e.Stored == nil {
		stored = fmt.Sprintf("that it did not record (a version-1 summary, with %d buckets)", e.StoredBuckets)
	}
	return fmt.Sprintf("the base holds counts aggregated with other buckets: %s was aggregated with the bucket bounds %s, "+
		"and this exporter uses %v. Counts cannot be moved between buckets: run the version or configuration with the "+
		"old bounds, or move the deployment log aside and start again, which backfills --history.backfill of builds "+
		"and loses the history older than that (see store/README.md)", e.Histogram, stored, e.Current)
}

// Deployment states, the values of the state label.
const (
	statePassed   = snapshot.StatePassed
	stateFailed   = snapshot.StateFailed
	stateCanceled = snapshot.StateCanceled
)

// histogram is a fixed-bucket histogram that can be serialised. Counts are per bucket (not
// cumulative); the last slot counts observations above the highest bound. Since version 3 it
// also keeps, per bucket, the latest observation as an exemplar, the same observations in
// native (exponential) buckets, and the finish time of its earliest observation.
type histogram struct {
	Counts []uint64 `json:"counts"`
	Sum    float64  `json:"sum"`
	Count  uint64   `json:"count"`
	// Exemplars is nil or len(Counts) long.
	Exemplars []*snapshot.Exemplar `json:"exemplars,omitempty"`
	Native    *snapshot.Native     `json:"native,omitempty"`
	Created   int64                `json:"created,omitempty"` // Unix nanoseconds
	// Legacy is set on the histograms of a base older than version 3 that had observations:
	// those had no native counts nor created timestamp, so Native stays nil and Created zero
	// for good (counts cannot be recovered from a compacted base). Their exemplars come back
	// with the next observation of each bucket. It is also set when a native bucket's count
	// would overflow (nativeObserve).
	Legacy bool `json:"legacy,omitempty"`

	// shared is set once a snapshot shares Counts, Exemplars and Native: the next observe copies
	// them instead of modifying what a published snapshot reads.
	shared bool
	// snap is the snapshot of h made since its last observation, which every later snapshot
	// reuses until the next one: most histograms see no observation between two polls, and
	// 120,000 new copies a poll at 10,000 components would be garbage for nothing.
	snap *snapshot.Histogram
}

// observation is what a record adds to a histogram besides its value.
type observation struct {
	finished time.Time
	// build and commit are the exemplar's labels; build empty: no exemplar.
	build, commit string
}

func (h *histogram) observe(bounds []float64, v float64) {
	h.observeWith(bounds, v, observation{})
}

func (h *histogram) observeWith(bounds []float64, v float64, o observation) {
	h.snap = nil
	if h.shared {
		h.Counts = slices.Clone(h.Counts)
		h.Exemplars = slices.Clone(h.Exemplars)
		if h.Native != nil {
			h.Native = &snapshot.Native{ZeroCount: h.Native.ZeroCount, Buckets: slices.Clone(h.Native.Buckets)}
		}
		h.shared = false
	}
	if len(h.Counts) != len(bounds)+1 {
		h.Counts = make([]uint64, len(bounds)+1)
	}
	i := sort.SearchFloat64s(bounds, v)
	h.Counts[i]++
	h.Sum += v
	h.Count++
	if o.build != "" && !o.finished.IsZero() {
		if len(h.Exemplars) != len(h.Counts) {
			h.Exemplars = make([]*snapshot.Exemplar, len(h.Counts))
		}
		if e := h.Exemplars[i]; e == nil || o.finished.UnixNano() >= e.Time {
			h.Exemplars[i] = &snapshot.Exemplar{Value: v, Time: o.finished.UnixNano(), Build: o.build, Commit: o.commit}
		}
	}
	if h.Legacy {
		return
	}
	if f := o.finished.UnixNano(); !o.finished.IsZero() && (h.Created == 0 || f < h.Created) {
		h.Created = f
	}
	if h.Native == nil {
		h.Native = &snapshot.Native{}
	}
	if !nativeObserve(h.Native, v) {
		h.Legacy, h.Native = true, nil // cannot stay exact: classic buckets only from now on
	}
}

// snapshot copies h for a snapshot, which must not change when later records are applied:
// counts, exemplars and native buckets are shared until the next observe copies them (most
// histograms see no observation between two snapshots, and a snapshot holds 120,000 of them at
// 10,000 components).
func (h *histogram) snapshot(bounds []float64) *snapshot.Histogram {
	if s := h.snap; s != nil && len(s.Bounds) == len(bounds) && (len(bounds) == 0 || &s.Bounds[0] == &bounds[0]) {
		return s
	}
	counts := h.Counts
	if len(counts) != len(bounds)+1 {
		counts = make([]uint64, len(bounds)+1)
		copy(counts, h.Counts)
	}
	s := &snapshot.Histogram{Bounds: bounds, Counts: counts, Sum: h.Sum, Count: h.Count, Created: h.Created}
	if len(h.Exemplars) == len(counts) {
		s.Exemplars = h.Exemplars
	}
	if h.Native != nil && !h.Legacy {
		if b := h.Native.Buckets; cap(b)-len(b) > 2 {
			// Inserts grew it by doubling: shared from now on, it would keep the slack until
			// the next observation (after a replay, most histograms never see one).
			h.Native = &snapshot.Native{ZeroCount: h.Native.ZeroCount, Buckets: slices.Clone(b)}
		}
		s.Native = h.Native
	}
	h.shared, h.snap = true, s
	return s
}

// envKey is a (component, environment) pair; series keys are strings joined with \x00 so that the
// Aggregate serialises as plain JSON maps.
func envKey(component, env string) string { return component + "\x00" + env }

func joinKey(parts ...string) string { return strings.Join(parts, "\x00") }

// keyBuf builds series keys in one reused buffer for lookups, which do not allocate when the
// map is indexed with string(k.of(…)) directly: a snapshot looks up ten keys per (component,
// environment), and 300,000 short-lived key strings per poll at 10,000 components would be
// garbage interleaved with the snapshot it builds.
type keyBuf struct{ b []byte }

// of is the key joinKey(parts...) makes, valid until the next call.
func (k *keyBuf) of(parts ...string) []byte {
	k.b = k.b[:0]
	for i, p := range parts {
		if i > 0 {
			k.b = append(k.b, 0)
		}
		k.b = append(k.b, p...)
	}
	return k.b
}

// envState is what decides failing, recovery and what is deployed now.
type envState struct {
	// Latest is the finish time of the latest applied non-canceled deployment; records finishing
	// before it (late arrivals from the poll overlap) only count, they do not change state.
	Latest  time.Time `json:"latest"`
	Failing bool      `json:"failing"`
	// FailedSince is the finish time of the first failure since the last pass (recovery start).
	FailedSince time.Time `json:"failed_since,omitzero"`
	// Deployed is the latest passed deployment.
	DeployedAt      time.Time `json:"deployed_at,omitzero"`
	DeployedVersion string    `json:"deployed_version"`
	DeployedCommit  string    `json:"deployed_commit"`
	// The deployed build, for links; absent from bases written before they were kept.
	DeployedPipeline    string `json:"deployed_pipeline,omitempty"`
	DeployedBuildNumber int    `json:"deployed_build_number,omitempty"`
	DeployedWebURL      string `json:"deployed_web_url,omitempty"`
	// Who deployed it and its release notes (keep_people_and_notes), never in the base: they
	// go with their record when it is compacted.
	DeployedBy    string `json:"-"`
	DeployedNotes string `json:"-"`
}

// Aggregate is every counter the deployment metrics need, built only by applying records in
// order. It is the fold format of store.Log.Compact: the JSON of an Aggregate is the base, and
// applying the remaining records on top of it rebuilds the same state.
type Aggregate struct {
	Version int `json:"version"`
	// Bounds are the bucket upper bounds the histograms were aggregated with, by kind
	// (duration, lead_time, recovery, approval_wait). Version-1 bases have none: they were
	// written with the bounds of this binary (those did not change while version 1 was
	// written).
	Bounds map[string][]float64 `json:"bounds,omitempty"`
	// Deployments counts by (component, environment, pipeline, state).
	Deployments map[string]uint64 `json:"deployments"`
	// Pipelines are the (component, environment, pipeline) triples seen, so that the three
	// states of a triple render even when one has never happened.
	Pipelines map[string]bool `json:"pipelines"`
	// Duration by (component, environment, state); the others by (component, environment).
	Duration     map[string]*histogram `json:"duration"`
	LeadTime     map[string]*histogram `json:"lead_time"`
	Recovery     map[string]*histogram `json:"recovery"`
	ApprovalWait map[string]*histogram `json:"approval_wait"`
	// LastFinished by (component, environment, state).
	LastFinished map[string]time.Time `json:"last_finished"`
	Envs         map[string]*envState `json:"envs"`
	// LastBuilds by (component, environment, pipeline), each indexed like snapshot.States;
	// absent from bases written before it was kept (see fillLastBuilds).
	LastBuilds map[string]*lastBuilds `json:"last_builds,omitempty"`
	// PipelineCreated is, by (component, environment, pipeline), the finished_at of the
	// earliest record: when buildkite_deployments_total's three series started counting. A
	// zero time is unknown (the triple was counted in a base older than version 3), and
	// stays so: a later record must not claim the counter started with it.
	PipelineCreated map[string]time.Time `json:"pipeline_created,omitempty"`
	// ExemplarsDropped counts, by snapshot.ExemplarDropReasons, the observations whose
	// exemplar lost its commit label or was left out (OpenMetrics' 128-rune limit).
	ExemplarsDropped map[string]uint64 `json:"exemplars_dropped,omitempty"`

	// withRecords indexes Pipelines by (component, pipeline), for HasDeployments.
	withRecords map[string]bool
}

// HasDeployments says whether any deployment of component's pipeline was counted.
func (a *Aggregate) HasDeployments(component, pipeline string) bool {
	if a.withRecords == nil {
		a.withRecords = map[string]bool{}
		for k := range a.Pipelines {
			if parts := strings.Split(k, "\x00"); len(parts) == 3 {
				a.withRecords[joinKey(parts[0], parts[2])] = true
			}
		}
	}
	return a.withRecords[joinKey(component, pipeline)]
}

// aggregateVersion is the version of the base's JSON: 3 adds exemplars, native buckets and
// created timestamps (histogram fields, PipelineCreated, ExemplarsDropped); 2 records the
// histogram bounds; 1 did not. 1 and 2 are still read: their histograms become Legacy and
// their pipelines' created times unknown (see UnmarshalAggregate).
const aggregateVersion = 3

// NewAggregate returns an empty aggregate with this binary's histogram bounds.
func NewAggregate() *Aggregate {
	return &Aggregate{
		Version:          aggregateVersion,
		Bounds:           currentBounds(),
		Deployments:      map[string]uint64{},
		Pipelines:        map[string]bool{},
		Duration:         map[string]*histogram{},
		LeadTime:         map[string]*histogram{},
		Recovery:         map[string]*histogram{},
		ApprovalWait:     map[string]*histogram{},
		LastFinished:     map[string]time.Time{},
		Envs:             map[string]*envState{},
		LastBuilds:       map[string]*lastBuilds{},
		PipelineCreated:  map[string]time.Time{},
		ExemplarsDropped: map[string]uint64{},
	}
}

// UnmarshalAggregate decodes a compacted base; nil or empty is an empty aggregate. A base
// whose histograms were aggregated with other bucket bounds than this binary's is refused with
// a *BucketsChangedError.
func UnmarshalAggregate(b []byte) (*Aggregate, error) {
	a := NewAggregate()
	if len(b) == 0 {
		return a, nil
	}
	a.Bounds, a.LastBuilds = nil, nil // what the base says, only
	if err := json.Unmarshal(b, a); err != nil {
		return nil, fmt.Errorf("decoding the compacted deployment summary: %w", err)
	}
	if a.Version < 1 || a.Version > aggregateVersion {
		return nil, fmt.Errorf("compacted deployment summary has version %d, this exporter reads 1 to %d", a.Version, aggregateVersion)
	}
	// Maps absent from an older or hand-edited base.
	fresh := NewAggregate()
	if a.Deployments == nil {
		a.Deployments = fresh.Deployments
	}
	if a.Pipelines == nil {
		a.Pipelines = fresh.Pipelines
	}
	for _, m := range []*map[string]*histogram{&a.Duration, &a.LeadTime, &a.Recovery, &a.ApprovalWait} {
		if *m == nil {
			*m = map[string]*histogram{}
		}
	}
	if a.LastFinished == nil {
		a.LastFinished = fresh.LastFinished
	}
	if a.Envs == nil {
		a.Envs = fresh.Envs
	}
	a.fillLastBuilds()
	if a.PipelineCreated == nil {
		a.PipelineCreated = fresh.PipelineCreated
	}
	if a.ExemplarsDropped == nil {
		a.ExemplarsDropped = fresh.ExemplarsDropped
	}
	if a.Version < 3 {
		a.migrateTo3()
	}
	if err := a.checkBounds(fresh.Bounds); err != nil {
		return nil, err
	}
	a.Version, a.Bounds = aggregateVersion, fresh.Bounds
	return a, nil
}

// migrateTo3 marks what a base older than version 3 counted without the version-3 details:
// its histograms with observations become Legacy (no native buckets, no created timestamp:
// the records they came from are gone), its pipelines' created times unknown. Exemplars simply
// appear with the next observation of each bucket.
func (a *Aggregate) migrateTo3() {
	for _, m := range []map[string]*histogram{a.Duration, a.LeadTime, a.Recovery, a.ApprovalWait} {
		for _, h := range m {
			if h != nil && (h.Count > 0 || slices.ContainsFunc(h.Counts, func(c uint64) bool { return c != 0 })) {
				h.Legacy, h.Native, h.Created = true, nil, 0
			}
		}
	}
	for k := range a.Pipelines {
		if _, ok := a.PipelineCreated[k]; !ok {
			a.PipelineCreated[k] = time.Time{}
		}
	}
}

// checkBounds compares the bounds the base was aggregated with to current. A kind without any
// observation takes the current bounds whatever it had; a kind whose bounds the base does not
// record (version 1) was aggregated with the current ones, which its counts must fit.
func (a *Aggregate) checkBounds(current map[string][]float64) error {
	for _, kind := range slices.Sorted(maps.Keys(current)) {
		cur := current[kind]
		stored, recorded := a.Bounds[kind]
		for _, k := range slices.Sorted(maps.Keys(a.histograms(kind))) {
			h := a.histograms(kind)[k]
			if h == nil || h.Count == 0 && !slices.ContainsFunc(h.Counts, func(c uint64) bool { return c != 0 }) {
				continue // nothing observed: any bounds fit
			}
			switch {
			case recorded && !slices.Equal(stored, cur):
				return &BucketsChangedError{Histogram: histogramMetrics[kind], Stored: stored, StoredBuckets: len(h.Counts), Current: cur}
			case len(h.Counts) != len(cur)+1 && !recorded:
				return &BucketsChangedError{Histogram: histogramMetrics[kind], StoredBuckets: len(h.Counts), Current: cur}
			case len(h.Counts) != len(cur)+1:
				return fmt.Errorf("compacted deployment summary is damaged: histogram %s of %q has %d buckets, its bounds %v make %d",
					histogramMetrics[kind], k, len(h.Counts), cur, len(cur)+1)
			}
		}
	}
	return nil
}

// marshalBase encodes the aggregate as a compaction base.
func (a *Aggregate) marshalBase() ([]byte, error) { return json.Marshal(a) }

// Fold is the fold function handed to store.Log.Compact.
func Fold(base []byte, old []store.Record) ([]byte, error) {
	a, err := UnmarshalAggregate(base)
	if err != nil {
		return nil, err
	}
	for _, r := range old {
		a.Apply(r)
	}
	return a.marshalBase()
}

func hist(m map[string]*histogram, k string) *histogram {
	h := m[k]
	if h == nil {
		h = &histogram{}
		m[k] = h
	}
	return h
}

// Apply counts one deployment outcome. Records with a state other than passed, failed, canceled
// are ignored (the collector never makes them).
func (a *Aggregate) Apply(r store.Record) { a.ApplyObserved(r) }

// Observation is what applying one record counted: whether it was counted at all, and the value
// each histogram observed (Has* false where that histogram observed nothing). The report package
// reads it to compute exact percentiles with this package's own rules (which records have a
// duration, and the recovery a pass ends), so that its numbers are the exporter's.
type Observation struct {
	Counted                                                bool
	HasDuration, HasLeadTime, HasRecovery, HasApprovalWait bool
	Duration, LeadTime, Recovery, ApprovalWait             float64 // seconds
}

// ApplyObserved is Apply, returning what it observed.
func (a *Aggregate) ApplyObserved(r store.Record) (o Observation) {
	switch r.State {
	case statePassed, stateFailed, stateCanceled:
	default:
		return o
	}
	o.Counted = true
	ek := envKey(r.Component, r.Environment)
	pk := joinKey(r.Component, r.Environment, r.Pipeline)
	a.Pipelines[pk] = true
	if t, ok := a.PipelineCreated[pk]; !ok || !t.IsZero() && r.FinishedAt.Before(t) {
		a.PipelineCreated[pk] = r.FinishedAt
	}
	obs, dropped := exemplarOf(r)
	observe := func(m map[string]*histogram, k string, bounds []float64, v float64) {
		hist(m, k).observeWith(bounds, v, obs)
		if dropped != "" {
			a.ExemplarsDropped[dropped]++
		}
	}
	if a.withRecords != nil {
		a.withRecords[joinKey(r.Component, r.Pipeline)] = true
	}
	a.Deployments[joinKey(r.Component, r.Environment, r.Pipeline, r.State)]++
	a.applyLastBuild(r, pk)
	sk := joinKey(r.Component, r.Environment, r.State)
	if r.FinishedAt.After(a.LastFinished[sk]) {
		a.LastFinished[sk] = r.FinishedAt
	}
	if r.State != stateCanceled && !r.StartedAt.IsZero() && !r.FinishedAt.Before(r.StartedAt) {
		o.HasDuration, o.Duration = true, r.FinishedAt.Sub(r.StartedAt).Seconds()
		observe(a.Duration, sk, config.DurationBuckets, o.Duration)
	}
	if r.ApprovalWaitSeconds >= 0 {
		o.HasApprovalWait, o.ApprovalWait = true, r.ApprovalWaitSeconds
		observe(a.ApprovalWait, ek, approvalWaitBuckets, r.ApprovalWaitSeconds)
	}
	if r.State == statePassed && r.LeadTimeSeconds >= 0 {
		o.HasLeadTime, o.LeadTime = true, r.LeadTimeSeconds
		observe(a.LeadTime, ek, leadTimeBuckets, r.LeadTimeSeconds)
	}
	if rec, ok := a.applyState(r, ek); ok {
		o.HasRecovery, o.Recovery = true, rec
		observe(a.Recovery, ek, recoveryBuckets, rec)
	}
	return o
}

// ApplyState applies only what decides the state of r's series (what is deployed, whether it is
// failing, when its failure began), without counting r: ApplyObserved of a later record then
// finds the same state as if r had been applied. For a reader that needs the recoveries of later
// records but nothing of r (the report, for records outside its periods), at a fraction of the
// cost of counting.
func (a *Aggregate) ApplyState(r store.Record) {
	switch r.State {
	case statePassed, stateFailed, stateCanceled:
		a.applyState(r, envKey(r.Component, r.Environment))
	}
}

// applyState updates the state of series ek with r and returns the recovery r ends: a pass
// after a failure (failed → next passed). A record finishing before the latest applied
// non-canceled one (a late arrival) changes nothing but what is deployed.
func (a *Aggregate) applyState(r store.Record, ek string) (recovery float64, recovered bool) {
	es := a.Envs[ek]
	if es == nil {
		es = &envState{}
		a.Envs[ek] = es
	}
	switch r.State {
	case statePassed:
		if !r.FinishedAt.Before(es.DeployedAt) {
			es.DeployedAt, es.DeployedVersion, es.DeployedCommit = r.FinishedAt, r.Version, r.Commit
			es.DeployedPipeline, es.DeployedBuildNumber, es.DeployedWebURL = r.Pipeline, r.BuildNumber, r.WebURL
			es.DeployedBy, es.DeployedNotes = r.DeployedBy, r.ReleaseNotes
		}
		if r.FinishedAt.Before(es.Latest) {
			return 0, false
		}
		if !es.FailedSince.IsZero() {
			recovery, recovered = r.FinishedAt.Sub(es.FailedSince).Seconds(), true
		}
		es.Latest, es.Failing, es.FailedSince = r.FinishedAt, false, time.Time{}
	case stateFailed:
		if r.FinishedAt.Before(es.Latest) {
			return 0, false
		}
		es.Latest, es.Failing = r.FinishedAt, true
		if es.FailedSince.IsZero() {
			es.FailedSince = r.FinishedAt
		}
	}
	return recovery, recovered
}
