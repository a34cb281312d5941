package buildkite_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

func TestListPipelineSlugs(t *testing.T) {
	f := buildkitetest.New(buildkitetest.WithRateLimits(false))
	f.SetToken(token, allScopes...)
	var want []string
	for i := range 250 {
		s := fmt.Sprintf("svc-%03d-deploy", i)
		f.AddPipeline("acme", buildkite.Pipeline{Slug: s, Repository: "git@github.com:acme/x.git"})
		want = append(want, s)
	}
	c := overHTTP(t, f, buildkite.Config{})
	ctx := context.Background()

	slugs, complete, err := c.ListPipelineSlugs(ctx, "acme", 10)
	if err != nil || !complete {
		t.Fatalf("complete=%v err=%v, want all of them", complete, err)
	}
	if diff := cmp.Diff(want, slugs); diff != "" {
		t.Errorf("slugs (-want +got):\n%s", diff)
	}
	reqs := f.Requests()
	if len(reqs) != 3 {
		t.Errorf("%d requests for 250 pipelines, want 3", len(reqs))
	}
	for _, r := range reqs {
		if r.Route != buildkitetest.RoutePipelines || r.Query.Get("per_page") != "100" {
			t.Errorf("request %s %v, want the pipelines list with per_page=100", r.Route, r.Query)
		}
	}

	f.ResetRequests()
	slugs, complete, err = c.ListPipelineSlugs(ctx, "acme", 2)
	if err != nil || complete || len(slugs) != 200 || len(f.Requests()) != 2 {
		t.Errorf("maxRequests 2: %d slugs, complete=%v, %d requests, err=%v; want 200, false, 2", len(slugs), complete, len(f.Requests()), err)
	}

	// Exactly as many requests as pages: complete.
	f.ResetRequests()
	if _, complete, err := c.ListPipelineSlugs(ctx, "acme", 3); err != nil || !complete || len(f.Requests()) != 3 {
		t.Errorf("maxRequests 3 for 3 pages: complete=%v, %d requests, err=%v", complete, len(f.Requests()), err)
	}

	if _, _, err := c.ListPipelineSlugs(ctx, "acme", 0); err == nil {
		t.Error("maxRequests 0: no error")
	}
	if _, complete, err := c.ListPipelineSlugs(ctx, "nope", 5); !errors.Is(err, buildkite.ErrNotFound) || complete {
		t.Errorf("unknown organization: complete=%v err=%v, want ErrNotFound", complete, err)
	}
}

func TestListPipelineSlugsHostilePages(t *testing.T) {
	var items []string
	for i := range 150 {
		items = append(items, fmt.Sprintf(`{"slug":"p%d","steps":[],"configuration":"x"}`, i))
	}
	bad := []string{`{"slug":"../../admin"}`, `{"slug":"a/b"}`, `{"slug":""}`, `{"slug":"` + strings.Repeat("x", 300) + `"}`,
		`{"slug":"tab\there"}`, `{"slug":"p1"}`}
	body := "[" + strings.Join(append(bad, items...), ",") + "]"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(body)) }))
	defer srv.Close()
	reg := prometheus.NewPedanticRegistry()
	c := newClient(t, buildkite.Config{BaseURL: srv.URL + "/v2/", HTTPClient: srv.Client(), Registerer: reg})
	slugs, complete, err := c.ListPipelineSlugs(context.Background(), "acme", 5)
	if err != nil || !complete {
		t.Fatalf("complete=%v err=%v", complete, err)
	}
	// 100 items kept: 6 unusable or repeated, then p0…p93.
	if len(slugs) != 94 || slugs[0] != "p1" || slugs[1] != "p0" || slugs[93] != "p93" {
		t.Errorf("slugs = %v", slugs)
	}
	if got := dropped(t, reg, "pipeline_slugs"); got != 5 {
		t.Errorf("dropped_total{what=pipeline_slugs} = %v, want 5", got)
	}
	if got := dropped(t, reg, "pipelines"); got != 56 {
		t.Errorf("dropped_total{what=pipelines} = %v, want 56 (the page beyond 100)", got)
	}
}
