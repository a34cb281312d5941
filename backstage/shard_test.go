package backstage

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// staticSource returns a fixed result, as a file or API source would.
type staticSource struct {
	res Result
	err error
}

func (s staticSource) Load(context.Context) (Result, error) { return s.res, s.err }
func (s staticSource) String() string                       { return "static" }

func refs(slugs ...string) []PipelineRef {
	var out []PipelineRef
	for _, s := range slugs {
		org, pipe, _ := strings.Cut(s, "/")
		out = append(out, PipelineRef{Org: org, Pipeline: pipe})
	}
	return out
}

func TestShardSource(t *testing.T) {
	parse := Problem{Reason: ReasonMalformedYAML, Source: "bad.yaml:3", Message: "bad"}
	src := staticSource{res: Result{
		Components: []Component{
			{Label: "shop", Ref: "component:default/shop", Source: "shop.yaml", Pipelines: refs("acme/shop-deploy")},
			{Label: "api", Ref: "component:default/api", Source: "api.yaml", Pipelines: refs("Acme/api-prod", "globex/api-stg", "initech/api-dev")},
			{Label: "billing", Ref: "component:default/billing", Source: "billing.yaml", Pipelines: refs("globex/billing")},
		},
		Problems: []Problem{parse},
	}, err: errors.New("one source failed")}

	res, err := NewShardSource(src, []string{"ACME"}).Load(context.Background())
	if err == nil || err.Error() != "one source failed" {
		t.Errorf("err %v: the wrapped source's error must pass through (the watcher keeps the last good result)", err)
	}
	want := []Component{
		{Label: "shop", Ref: "component:default/shop", Source: "shop.yaml", Pipelines: refs("acme/shop-deploy")},
		{Label: "api", Ref: "component:default/api", Source: "api.yaml", Pipelines: refs("Acme/api-prod")},
	}
	if diff := cmp.Diff(want, res.Components); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	if len(res.Problems) != 2 || res.Problems[0] != parse {
		t.Fatalf("problems %+v: want the source's, then one for api", res.Problems)
	}
	p := res.Problems[1]
	if p.Reason != ReasonComponentSpansShards || p.Entity != "component:default/api" || p.Source != "api.yaml" ||
		!strings.Contains(p.Message, "globex, initech") || !strings.Contains(p.Message, "only 1 of its 3 pipelines") {
		t.Errorf("problem %+v: want component_spans_shards on api naming globex, initech and the pipelines kept", p)
	}
	// The source's own slice is not modified: the watcher may hold it as a last good result.
	if got := src.res.Components[1].Pipelines; len(got) != 3 {
		t.Errorf("the wrapped source's component lost pipelines: %v", got)
	}

	res, _ = NewShardSource(src, []string{"globex", "initech"}).Load(context.Background())
	var labels []string
	for _, c := range res.Components {
		labels = append(labels, c.Label)
	}
	if diff := cmp.Diff([]string{"api", "billing"}, labels); diff != "" {
		t.Errorf("globex+initech shard components (-want +got):\n%s", diff)
	}
}
