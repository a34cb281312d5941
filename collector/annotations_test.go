package collector

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

func withAnnotations() harnessOpt { return func(o *Options) { o.ReadAnnotations = true } }

func keepPeople() *config.Config {
	cfg := config.Default()
	cfg.KeepPeopleAndNotes = true
	return cfg
}

func annotationRequests(f *buildkitetest.Fake) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Route == buildkitetest.RouteAnnotations {
			n++
		}
	}
	return n
}

func annotate(t *testing.T, f *buildkitetest.Fake, pipeline string, number int, env, style string) {
	t.Helper()
	if _, err := f.Annotate(testOrg, pipeline, number, buildkite.Annotation{Context: deployment.AnnotationContextPrefix + env, Style: style}, false); err != nil {
		t.Fatal(err)
	}
}

func stored(t *testing.T, l store.Log) []store.Record {
	t.Helper()
	var out []store.Record
	if err := l.Replay(func(r store.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func problem(s *snapshot.Snapshot, pipeline, reason string) (snapshot.PipelineProblem, bool) {
	for _, p := range s.PipelineProblems {
		if p.Pipeline == testOrg+"/"+pipeline && p.Reason == reason {
			return p, true
		}
	}
	return snapshot.PipelineProblem{}, false
}

// startOpen adds an open build (no environment meta-data) and returns it.
func startOpen(f *buildkitetest.Fake, pipeline string, md map[string]string) buildkite.Build {
	b := openBuild(time.Now().Add(-5 * time.Minute))
	b.MetaData = md
	return f.AddBuild(testOrg, pipeline, b)
}

// TestAnnotationsPollPath: the live poll reads the annotations of each finished deployment
// once, never those of the backfill; deployment-<env> names the environment through the alias
// table when the meta-data names none, and a disagreement with the meta-data is a named problem.
func TestAnnotationsPollPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		old := f.AddBuild(testOrg, "shop", finished(time.Now().Add(-48*time.Hour), 5*time.Minute, "passed", nil))
		annotate(t, f, "shop", old.Number, "staging", "success")
		h := start(t, f, []backstage.Component{component("shop", "shop")}, withAnnotations())
		if n := annotationRequests(f); n != 0 {
			t.Errorf("the backfill read annotations %d times, want none", n)
		}
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "passed"): 1})

		plain := startOpen(f, "shop", nil)
		annotate(t, f, "shop", plain.Number, "stg", "success")
		disagree := startOpen(f, "shop", map[string]string{"environment": "production"})
		annotate(t, f, "shop", disagree.Number, "dev", "success")
		for _, b := range []buildkite.Build{plain, disagree} {
			if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		for range 4 { // the overlap lists them again: no second request
			h.next()
		}
		if n := annotationRequests(f); n != 2 {
			t.Errorf("%d annotation requests for two finished builds over four cycles, want 2", n)

		}
		m := h.metrics()
		expect(t, m, map[string]float64{
			deployments("shop", "staging", "shop", "passed"):         1,
			deployments("shop", "production", "shop", "passed"):      2,
			deployments("shop", "development", "shop", "passed"):     absent,
			pipelineError("shop", snapshot.ReasonAnnotationMismatch): 1,
		})
		p, ok := problem(h.c.Snapshot(), "shop", snapshot.ReasonAnnotationMismatch)
		if !ok || p.Severity != severityWarning {
			t.Fatalf("no annotation_mismatch warning on /status: %+v", h.c.Snapshot().PipelineProblems)
		}
		t.Logf("problem: %s", p.Message)

		// A later deployment annotated in agreement clears it, once the overlap no longer
		// reads the one that disagreed.
		time.Sleep(3 * time.Minute)
		agree := startOpen(f, "shop", map[string]string{"environment": "production"})
		annotate(t, f, "shop", agree.Number, "prod", "success")
		if err := f.FinishBuild(testOrg, "shop", agree.Number, "passed", time.Now()); err != nil {
			t.Fatal(err)
		}
		for range 6 {
			h.next()
		}
		if _, ok := problem(h.c.Snapshot(), "shop", snapshot.ReasonAnnotationMismatch); ok {
			t.Errorf("annotation_mismatch stays after an agreeing deployment")
		}
	})
}

// TestAnnotationsOffSendNothingAndKeepNobody: with both options off no annotation is requested
// and no record holds a name or notes, whatever the builds carry.
func TestAnnotationsOffSendNothingAndKeepNobody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		md := map[string]string{"environment": "production", "deployed_by": "Ada Lovelace", "release-notes": "* secret plans"}
		b := openBuild(time.Now().Add(-5 * time.Minute))
		b.MetaData, b.Creator = md, &buildkite.User{Name: "Bob Builder"}
		b = f.AddBuild(testOrg, "shop", b)
		annotate(t, f, "shop", b.Number, "staging", "success")
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now()); err != nil {
			t.Fatal(err)
		}
		h.next()
		h.next()
		if n := annotationRequests(f); n != 0 {
			t.Errorf("%d annotation requests with --buildkite.read-annotations off", n)
		}
		recs := stored(t, h.log)
		if len(recs) != 1 {
			t.Fatalf("%d records, want 1", len(recs))
		}
		for _, r := range recs {
			if r.DeployedBy != "" || r.ReleaseNotes != "" || r.Environment != "production" {
				t.Errorf("record %s keeps deployed_by %q, notes %q, environment %s", r.Key, r.DeployedBy, r.ReleaseNotes, r.Environment)
			}
		}
	})
}

// TestAnnotationAfterCommitNeverMoves: a deployment counted before its annotation was read (the
// option turned on at a restart, the overlap reading it again) stays in its series; the
// annotation is a named problem.
func TestAnnotationAfterCommitNeverMoves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		l := store.NewMemory()
		comps := []backstage.Component{component("shop", "shop")}
		h := start(t, f, comps, withLog(l))
		b := startOpen(f, "shop", nil)
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now()); err != nil {
			t.Fatal(err)
		}
		h.next()
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "passed"): 1})
		h.stop()

		annotate(t, f, "shop", b.Number, "staging", "success")
		h2 := start(t, f, comps, withLog(l), withAnnotations())
		for range 3 {
			h2.next()
		}
		if n := annotationRequests(f); n != 1 {
			t.Fatalf("%d annotation requests, want the overlap's one", n)
		}
		expect(t, h2.metrics(), map[string]float64{
			deployments("shop", "production", "shop", "passed"):      1,
			deployments("shop", "staging", "shop", "passed"):         absent,
			pipelineError("shop", snapshot.ReasonAnnotationMismatch): 1,
		})
		if n := len(stored(t, l)); n != 1 {
			t.Errorf("%d records, want the one", n)
		}
		if p, ok := problem(h2.c.Snapshot(), "shop", snapshot.ReasonAnnotationMismatch); !ok {
			t.Error("no annotation_mismatch problem")
		} else {
			t.Logf("problem: %s", p.Message)
		}
	})
}

// TestAnnotationsWebhookPath: a webhook finish reads the annotations (one request) and counts
// the deployment where the poll would; the polls after it read nothing again and count nothing
// twice. People and notes are kept alike on both paths.
func TestAnnotationsWebhookPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.AddPipeline(testOrg, buildkite.Pipeline{Slug: "shop"})
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, true, withAnnotations(), withConfig(keepPeople()))
		b := openBuild(time.Now().Add(-5 * time.Minute))
		b.MetaData = map[string]string{"release-notes": "* webhooks"}
		b.Creator = &buildkite.User{Name: "Grace Hopper"}
		b = f.AddBuild(testOrg, "shop", b)
		annotate(t, f, "shop", b.Number, "stage", "success")
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now()); err != nil {
			t.Fatal(err)
		}
		settle()
		expect(t, h.metrics(), map[string]float64{deployments("shop", "staging", "shop", "passed"): 1})
		if n := annotationRequests(f); n != 1 {
			t.Errorf("%d annotation requests after the webhook, want 1", n)
		}
		for range 3 {
			h.next()
		}
		if n := annotationRequests(f); n != 1 {
			t.Errorf("%d annotation requests after the polls, want still 1", n)
		}
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "staging", "shop", "passed"):    1,
			deployments("shop", "production", "shop", "passed"): absent,
		})
		recs := stored(t, h.log)
		if len(recs) != 1 || recs[0].DeployedBy != "Grace Hopper" || recs[0].ReleaseNotes != "* webhooks" {
			t.Errorf("records %+v", recs)
		}
	})
}

// TestPeopleAndNotesPollPath: with keep_people_and_notes the poll stores deployed_by (over the
// creator) and the release notes, cut at 4 KiB and marked.
func TestPeopleAndNotesPollPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		h := start(t, f, []backstage.Component{component("shop", "shop")}, withConfig(keepPeople()))
		long := make([]byte, 6000)
		for i := range long {
			long[i] = 'a' + byte(i%26)
		}
		b := openBuild(time.Now().Add(-5 * time.Minute))
		b.MetaData = map[string]string{"environment": "production", "deployed_by": "Ada", "release-notes": string(long)}
		b.Creator = &buildkite.User{Name: "Bob"}
		b = f.AddBuild(testOrg, "shop", b)
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now()); err != nil {
			t.Fatal(err)
		}
		h.next()
		recs := stored(t, h.log)
		if len(recs) != 1 {
			t.Fatalf("%d records", len(recs))
		}
		r := recs[0]
		want := string(long[:deployment.MaxReleaseNotesLen-len(deployment.ReleaseNotesCutMark)]) + deployment.ReleaseNotesCutMark
		if r.DeployedBy != "Ada" || r.ReleaseNotes != want {
			t.Errorf("deployed_by %q, notes %d bytes (want %d, cut marked)", r.DeployedBy, len(r.ReleaseNotes), len(want))
		}
		for k := range h.metrics() {
			if containsAny(k, "Ada", "Bob", "abcdef") {
				t.Errorf("a metric carries a person or the notes: %s", k)
			}
		}
	})
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
	}
	return false
}
