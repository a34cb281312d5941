package backstage

import (
	"context"
	"sort"
	"strings"
)

// ShardSource restricts a Source to the pipelines of some Buildkite organizations, for an
// instance that is one shard of several (--buildkite.organization): each shard polls only its
// organizations, with its own token and API budget. A component with pipelines only elsewhere
// belongs to another shard and is left out without a problem. A component with pipelines both
// here and elsewhere keeps the pipelines of this shard's organizations and is reported
// (ReasonComponentSpansShards): its series are split between shards, which no query can tell.
type ShardSource struct {
	src  Source
	orgs map[string]bool // lower case: Buildkite slugs are, annotations may not be
}

// NewShardSource returns src restricted to the organizations orgs (slugs, compared without case).
func NewShardSource(src Source, orgs []string) *ShardSource {
	s := &ShardSource{src: src, orgs: map[string]bool{}}
	for _, o := range orgs {
		s.orgs[strings.ToLower(o)] = true
	}
	return s
}

func (s *ShardSource) String() string { return s.src.String() }

// Load loads the wrapped source and keeps what belongs to this shard.
func (s *ShardSource) Load(ctx context.Context) (Result, error) {
	res, err := s.src.Load(ctx)
	kept := res.Components[:0:0]
	for _, c := range res.Components {
		var here []PipelineRef
		elsewhere := map[string]bool{}
		for _, p := range c.Pipelines {
			if s.orgs[strings.ToLower(p.Org)] {
				here = append(here, p)
			} else {
				elsewhere[p.Org] = true
			}
		}
		if len(here) == 0 {
			continue
		}
		if len(elsewhere) > 0 {
			others := make([]string, 0, len(elsewhere))
			for o := range elsewhere {
				others = append(others, o)
			}
			sort.Strings(others)
			res.Problems = append(res.Problems[:len(res.Problems):len(res.Problems)], newProblem(ReasonComponentSpansShards, c.Source, c.Ref,
				"component %s has pipelines in organizations this instance polls and in %s, which it does not (--buildkite.organization): its deployment series are split between shards; only %d of its %d pipelines are counted here. Fix: give all of its organizations to one shard, or split the component",
				c.Label, strings.Join(others, ", "), len(here), len(c.Pipelines)))
			c.Pipelines = here
		}
		kept = append(kept, c)
	}
	res.Components = kept
	return res, err
}
