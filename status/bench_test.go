package status

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// benchSource is a large organization: n components with 3 environments each, a pipeline per
// environment, one pipeline problem in ten, a catalog problem in fifty.
func benchSource(n int) *fakeSource {
	envs := []string{"development", "production", "staging"}
	snap := &snapshot.Snapshot{Taken: fixtureNow, Polled: true}
	cat := &backstage.Snapshot{LastRefreshSuccess: true, LastSuccess: fixtureNow}
	for i := range n {
		label := fmt.Sprintf("service-%04d", i)
		c := snapshot.Component{Label: label, Ref: "component:default/" + label, Owner: fmt.Sprintf("team-%02d", i%40), System: "core", Lifecycle: "production"}
		for j, env := range envs {
			p := fmt.Sprintf("acme/%s-deploy-%s", label, env)
			c.Pipelines = append(c.Pipelines, p)
			d := deployed(fmt.Sprintf("v1.%d.%d", i, j), 'a'+byte(j), time.Duration(i+j)*time.Hour, p, 1000+i)
			c.Environments = append(c.Environments, snapshot.Environment{
				Name: env, Failing: (i+j)%7 == 0, LastFinished: finished(time.Duration(i+j+1)*time.Hour, time.Duration(i+j+2)*time.Hour),
				Deployed: d, Deployments: []snapshot.PipelineDeployments{{Pipeline: p, Total: [3]uint64{40, 3, 1}}},
			})
		}
		if i%10 == 0 {
			snap.PipelineProblems = append(snap.PipelineProblems, snapshot.PipelineProblem{
				Pipeline: c.Pipelines[0], Reason: "no_environment_metadata", Severity: "warning", Message: shopProblem, Since: fixtureNow.Add(-time.Hour),
			})
		}
		if i%50 == 0 {
			cat.Problems = append(cat.Problems, backstage.Problem{Reason: backstage.ReasonDuplicatePipeline, Source: "catalog/" + label + ".yaml:3",
				Entity: c.Ref, Message: "pipeline claimed twice; remove one annotation"})
		}
		snap.Components = append(snap.Components, c)
		cat.Components = append(cat.Components, backstage.Component{Label: label, Ref: c.Ref, Owner: c.Owner, Source: "catalog/" + label + ".yaml"})
	}
	s := &fakeSource{orgs: fixtureOrganizations()}
	s.snap.Store(snap)
	s.cat.Store(cat)
	return s
}

// benchmarkRender measures one request of a steady state: the model of the snapshot is built
// by the first request and reused, as it is between two poll cycles.
func benchmarkRender(b *testing.B, target string) {
	h := fixtureHandler(benchSource(1000))
	req := httptest.NewRequest(http.MethodGet, target, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("status %d", rec.Code)
	}
	b.SetBytes(int64(rec.Body.Len()))
	b.ReportAllocs()
	w := discard{header: http.Header{}}
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

// discard is a ResponseWriter that keeps nothing, so that the benchmark measures the handler
// and not a recorder's growing buffer.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(p []byte) (int, error) { return len(p), nil }
func (d discard) WriteHeader(int)             {}

func BenchmarkHTML1000x3(b *testing.B)   { benchmarkRender(b, "/status") }
func BenchmarkJSON1000x3(b *testing.B)   { benchmarkRender(b, "/status?format=json") }
func BenchmarkFilter1000x3(b *testing.B) { benchmarkRender(b, "/status?owner=team-07&problems=1") }

// BenchmarkModel1000x3 is what the first request after a new snapshot adds: the model, and
// for an HTML request the components' fragments.
func BenchmarkModel1000x3(b *testing.B) {
	src := benchSource(1000)
	b.ReportAllocs()
	for b.Loop() {
		buildModel(src.Snapshot(), src.Catalog())
	}
}

func BenchmarkFragments1000x3(b *testing.B) {
	m, _ := buildModel(benchSource(1000).Snapshot(), nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := new(fragmentCache).render(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTMLNextSnapshot1000x3 is the first HTML request after a poll cycle: a new snapshot
// in which 10 of the 1,000 components deployed. The model is rebuilt; only those 10 render anew.
func BenchmarkHTMLNextSnapshot1000x3(b *testing.B) {
	src := benchSource(1000)
	snaps := [2]*snapshot.Snapshot{src.Snapshot(), benchSource(1000).Snapshot()}
	for i := 0; i < 1000; i += 100 {
		env := &snaps[1].Components[i].Environments[1]
		env.Deployed = deployed("v9.9.9", 'f', time.Minute, snaps[1].Components[i].Pipelines[1], 9999)
	}
	h := fixtureHandler(src)
	req := httptest.NewRequest(http.MethodGet, "/status", nil)
	w := discard{header: http.Header{}}
	h.ServeHTTP(w, req)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		src.snap.Store(snaps[n%2])
		h.ServeHTTP(w, req)
	}
}
