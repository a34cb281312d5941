package deployment

import (
	"maps"
	"slices"
	"strings"
	"time"

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
	p := repacker{strs: make(map[string]string, len(a.Pipelines)*4)}
	b := &Aggregate{
		Version:          a.Version,
		Bounds:           make(map[string][]float64, len(a.Bounds)),
		Deployments:      make(map[string]uint64, len(a.Deployments)),
		Pipelines:        make(map[string]bool, len(a.Pipelines)),
		LastFinished:     make(map[string]time.Time, len(a.LastFinished)),
		Envs:             make(map[string]*envState, len(a.Envs)),
		LastBuilds:       make(map[string]*lastBuilds, len(a.LastBuilds)),
		PipelineCreated:  make(map[string]time.Time, len(a.PipelineCreated)),
		ExemplarsDropped: maps.Clone(a.ExemplarsDropped),
	}
	if b.ExemplarsDropped == nil {
		b.ExemplarsDropped = map[string]uint64{}
	}
	for k, v := range a.Bounds {
		b.Bounds[p.str(k)] = slices.Clip(slices.Clone(v))
	}
	for k, v := range a.Pipelines {
		b.Pipelines[p.str(k)] = v
	}
	for k, v := range a.PipelineCreated {
		b.PipelineCreated[p.str(k)] = v
	}
	for k, v := range a.LastBuilds {
		if v == nil {
			continue
		}
		c := *v
		for i := range c {
			c[i].Version = p.str(c[i].Version)
		}
		b.LastBuilds[p.str(k)] = &c
	}
	for k, v := range a.Deployments {
		b.Deployments[p.str(k)] = v
	}
	for k, v := range a.LastFinished {
		b.LastFinished[p.str(k)] = v
	}
	for k, v := range a.Envs {
		if v == nil {
			continue
		}
		c := *v
		for _, s := range []*string{&c.DeployedVersion, &c.DeployedCommit, &c.DeployedPipeline, &c.DeployedWebURL, &c.DeployedBy, &c.DeployedNotes} {
			*s = p.str(*s)
		}
		b.Envs[p.str(k)] = &c
	}
	b.Duration = p.histograms(a.Duration)
	b.LeadTime = p.histograms(a.LeadTime)
	b.Recovery = p.histograms(a.Recovery)
	b.ApprovalWait = p.histograms(a.ApprovalWait)
	// withRecords is derived; HasDeployments rebuilds it from Pipelines when asked.
	return b
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

func (p *repacker) histograms(m map[string]*histogram) map[string]*histogram {
	out := make(map[string]*histogram, len(m))
	for k, h := range m {
		if h == nil {
			continue
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
		out[p.str(k)] = c
	}
	return out
}
