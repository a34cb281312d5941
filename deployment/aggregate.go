package deployment

import (
	"encoding/json"
	"fmt"
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

// Deployment states, the values of the state label.
const (
	statePassed   = snapshot.StatePassed
	stateFailed   = snapshot.StateFailed
	stateCanceled = snapshot.StateCanceled
)

// histogram is a fixed-bucket histogram that can be serialised. Counts are per bucket (not
// cumulative); the last slot counts observations above the highest bound.
type histogram struct {
	Counts []uint64 `json:"counts"`
	Sum    float64  `json:"sum"`
	Count  uint64   `json:"count"`
}

func (h *histogram) observe(bounds []float64, v float64) {
	if len(h.Counts) != len(bounds)+1 {
		h.Counts = make([]uint64, len(bounds)+1)
	}
	h.Counts[sort.SearchFloat64s(bounds, v)]++
	h.Sum += v
	h.Count++
}

// snapshot copies h for a snapshot, which must not change when later records are applied.
func (h *histogram) snapshot(bounds []float64) *snapshot.Histogram {
	counts := make([]uint64, len(bounds)+1)
	copy(counts, h.Counts)
	return &snapshot.Histogram{Bounds: bounds, Counts: counts, Sum: h.Sum, Count: h.Count}
}

// envKey is a (component, environment) pair; series keys are strings joined with \x00 so that the
// Aggregate serialises as plain JSON maps.
func envKey(component, env string) string { return component + "\x00" + env }

func joinKey(parts ...string) string {
	s := parts[0]
	for _, p := range parts[1:] {
		s += "\x00" + p
	}
	return s
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
}

// Aggregate is every counter the deployment metrics need, built only by applying records in
// order. It is the fold format of store.Log.Compact: the JSON of an Aggregate is the base, and
// applying the remaining records on top of it rebuilds the same state.
type Aggregate struct {
	Version int `json:"version"`
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

const aggregateVersion = 1

func NewAggregate() *Aggregate {
	return &Aggregate{
		Version:      aggregateVersion,
		Deployments:  map[string]uint64{},
		Pipelines:    map[string]bool{},
		Duration:     map[string]*histogram{},
		LeadTime:     map[string]*histogram{},
		Recovery:     map[string]*histogram{},
		ApprovalWait: map[string]*histogram{},
		LastFinished: map[string]time.Time{},
		Envs:         map[string]*envState{},
	}
}

// UnmarshalAggregate decodes a compacted base; nil or empty is an empty aggregate.
func UnmarshalAggregate(b []byte) (*Aggregate, error) {
	a := NewAggregate()
	if len(b) == 0 {
		return a, nil
	}
	if err := json.Unmarshal(b, a); err != nil {
		return nil, fmt.Errorf("decoding the compacted deployment summary: %w", err)
	}
	if a.Version != aggregateVersion {
		return nil, fmt.Errorf("compacted deployment summary has version %d, this exporter reads %d", a.Version, aggregateVersion)
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
	return a, nil
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
func (a *Aggregate) Apply(r store.Record) {
	switch r.State {
	case statePassed, stateFailed, stateCanceled:
	default:
		return
	}
	ek := envKey(r.Component, r.Environment)
	a.Pipelines[joinKey(r.Component, r.Environment, r.Pipeline)] = true
	if a.withRecords != nil {
		a.withRecords[joinKey(r.Component, r.Pipeline)] = true
	}
	a.Deployments[joinKey(r.Component, r.Environment, r.Pipeline, r.State)]++
	sk := joinKey(r.Component, r.Environment, r.State)
	if r.FinishedAt.After(a.LastFinished[sk]) {
		a.LastFinished[sk] = r.FinishedAt
	}
	if r.State != stateCanceled && !r.StartedAt.IsZero() && !r.FinishedAt.Before(r.StartedAt) {
		hist(a.Duration, sk).observe(config.DurationBuckets, r.FinishedAt.Sub(r.StartedAt).Seconds())
	}
	if r.ApprovalWaitSeconds >= 0 {
		hist(a.ApprovalWait, ek).observe(approvalWaitBuckets, r.ApprovalWaitSeconds)
	}
	es := a.Envs[ek]
	if es == nil {
		es = &envState{}
		a.Envs[ek] = es
	}
	switch r.State {
	case statePassed:
		if r.LeadTimeSeconds >= 0 {
			hist(a.LeadTime, ek).observe(leadTimeBuckets, r.LeadTimeSeconds)
		}
		if !r.FinishedAt.Before(es.DeployedAt) {
			es.DeployedAt, es.DeployedVersion, es.DeployedCommit = r.FinishedAt, r.Version, r.Commit
			es.DeployedPipeline, es.DeployedBuildNumber, es.DeployedWebURL = r.Pipeline, r.BuildNumber, r.WebURL
		}
		if r.FinishedAt.Before(es.Latest) {
			return
		}
		if !es.FailedSince.IsZero() {
			hist(a.Recovery, ek).observe(recoveryBuckets, r.FinishedAt.Sub(es.FailedSince).Seconds())
		}
		es.Latest, es.Failing, es.FailedSince = r.FinishedAt, false, time.Time{}
	case stateFailed:
		if r.FinishedAt.Before(es.Latest) {
			return
		}
		es.Latest, es.Failing = r.FinishedAt, true
		if es.FailedSince.IsZero() {
			es.FailedSince = r.FinishedAt
		}
	}
}
