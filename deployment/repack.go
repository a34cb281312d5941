package deployment

import (
	"maps"
	"slices"
	"strings"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// Repacked returns a deep copy of a laid out for a long life, for the collector to keep after
// the start-up replay, and a is not used again.
//
// Why: replaying a million records allocates every record's strings, a key string per map
// access and an exemplar per observation, and keeps a few of each — the first key of every
// series, the latest exemplar of every bucket, the strings of what is deployed now. Those
// survivors are scattered over spans that otherwise held garbage, and each keeps its whole span
// in use: at 10,000 components the heap in use was ~50 MB above the live heap, for good. The copy
// allocates only what is kept, one after the other. It also stores each distinct string once:
// a (component, environment, pipeline) key is shared by Pipelines, PipelineCreated and
// LastBuilds, a (component, environment, state) key by Duration and LastFinished, and a
// (component, environment) key by Envs and the other histograms; a string that pointed into a
// record's one allocation (its commit and web URL) no longer keeps that record's bytes alive.
func (a *Aggregate) Repacked() *Aggregate {
	p := &repacker{strs: make(map[string]string, len(a.Pipelines)*4)}
	b := &Aggregate{
		Version:          a.Version,
		Bounds:           repackMap(p, a.Bounds, func(v []float64) ([]float64, bool) { return slices.Clip(slices.Clone(v)), true }),
		Deployments:      repackMap(p, a.Deployments, nil),
		Pipelines:        repackMap(p, a.Pipelines, nil),
		LastFinished:     repackMap(p, a.LastFinished, nil),
		PipelineCreated:  repackMap(p, a.PipelineCreated, nil),
		LastBuilds:       repackMap(p, a.LastBuilds, p.lastBuilds),
		Envs:             repackMap(p, a.Envs, p.envState),
		Duration:         repackMap(p, a.Duration, p.histogram),
		LeadTime:         repackMap(p, a.LeadTime, p.histogram),
		Recovery:         repackMap(p, a.Recovery, p.histogram),
		ApprovalWait:     repackMap(p, a.ApprovalWait, p.histogram),
		ExemplarsDropped: maps.Clone(a.ExemplarsDropped),
	}
	if b.ExemplarsDropped == nil {
		b.ExemplarsDropped = map[string]uint64{}
	}
	// withRecords is derived; HasDeployments rebuilds it from Pipelines when asked.
	return b
}

// repackMap copies m with its keys through p and its values through value (nil: as they are);
// an entry whose value reports false (a nil pointer) is left out.
func repackMap[V any](p *repacker, m map[string]V, value func(V) (V, bool)) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		if value != nil {
			var ok bool
			if v, ok = value(v); !ok {
				continue
			}
		}
		out[p.str(k)] = v
	}
	return out
}

// repacker copies strings, each distinct one once.
type repacker struct {
	strs map[string]string
}

func (p *repacker) str(s string) string {
	if s == "" {
		return ""
	}
	if c, ok := p.strs[s]; ok {
		return c
	}
	c := strings.Clone(s)
	p.strs[c] = c
	return c
}

func (p *repacker) lastBuilds(v *lastBuilds) (*lastBuilds, bool) {
	if v == nil {
		return nil, false
	}
	c := *v
	for i := range c {
		c[i].Version = p.str(c[i].Version)
	}
	return &c, true
}

func (p *repacker) envState(v *envState) (*envState, bool) {
	if v == nil {
		return nil, false
	}
	c := *v
	for _, s := range []*string{&c.DeployedVersion, &c.DeployedCommit, &c.DeployedPipeline, &c.DeployedWebURL, &c.DeployedBy, &c.DeployedNotes} {
		*s = p.str(*s)
	}
	return &c, true
}

func (p *repacker) histogram(h *histogram) (*histogram, bool) {
	if h == nil {
		return nil, false
	}
	c := &histogram{Counts: slices.Clip(slices.Clone(h.Counts)), Sum: h.Sum, Count: h.Count, Created: h.Created, Legacy: h.Legacy}
	if h.Exemplars != nil {
		c.Exemplars = make([]*snapshot.Exemplar, len(h.Exemplars))
		for i, e := range h.Exemplars {
			if e != nil {
				c.Exemplars[i] = &snapshot.Exemplar{Value: e.Value, Time: e.Time, Build: p.str(e.Build), Commit: p.str(e.Commit)}
			}
		}
	}
	if h.Native != nil {
		c.Native = &snapshot.Native{ZeroCount: h.Native.ZeroCount, Buckets: slices.Clip(slices.Clone(h.Native.Buckets))}
	}
	return c, true
}
