package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
)

// deploymentSeries is every deployment series of an exposition with its value, one line per
// sample (histograms per bucket, sum and count): what two replicas must agree on exactly.
func deploymentSeries(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	for name, mf := range parseExposition(t, body) {
		if !strings.HasPrefix(name, "buildkite_deployment") && name != "buildkite_component_info" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			series := name + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out = append(out, fmt.Sprintf("%s %v", series, m.GetCounter().GetValue()))
			case dto.MetricType_GAUGE:
				out = append(out, fmt.Sprintf("%s %v", series, m.GetGauge().GetValue()))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					out = append(out, fmt.Sprintf("%s le=%v %d", series, b.GetUpperBound(), b.GetCumulativeCount()))
				}
				out = append(out, fmt.Sprintf("%s sum %v", series, h.GetSampleSum()), fmt.Sprintf("%s count %d", series, h.GetSampleCount()))
			default:
				out = append(out, fmt.Sprintf("%s %s", series, mf.GetType()))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestHAPairConverges runs two exporters with the same flags against one organization, the
// second started only after the first had seen a deployment fail and then pass on a retry of
// the failed job (after the build had finished): once both have polled, every deployment series
// is identical, value for value. The second learns of the failure only from the retried job's
// record, which is what makes a replica pair agree (README, Retried deployments).
func TestHAPairConverges(t *testing.T) {
	f, dir, apiURL := liveOrg(t)
	args := func(data string) []string {
		a := liveArgs(dir, apiURL)
		for i := range a {
			if strings.HasPrefix(a[i], "--storage.path=") {
				a[i] = "--storage.path=" + filepath.Join(dir, data)
			}
		}
		return a
	}
	first := startExporter(t, nil, args("data-first")...)
	first.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := first.get("/-/ready"); return code == 200 })
	total := func(state string) map[string]string {
		return map[string]string{"component": "worker", "environment": "production", "pipeline": fixture.Org + "/" + fixture.PipelineWorker, "state": state}
	}
	_, body := first.get("/metrics")
	passed0, failed0 := sample(t, body, "buildkite_deployments_total", total("passed")), sample(t, body, "buildkite_deployments_total", total("failed"))
	if passed0 < 0 || failed0 < 0 {
		t.Fatal("the fixture's worker has no deployment counters")
	}
	until := func(e *exporter, what string, cond func(body string) bool) {
		t.Helper()
		e.waitFor(what, 30*time.Second, func() bool { _, body := e.get("/metrics"); return cond(body) })
	}

	// The first replica sees the deployment fail live.
	now := time.Now()
	b := f.AddBuild(fixture.Org, fixture.PipelineWorker, buildkite.Build{State: buildkite.StateRunning, Branch: "main",
		Commit: strings.Repeat("7", 40), CreatedAt: buildkite.Timestamp{Time: now}, StartedAt: buildkite.Timestamp{Time: now},
		Jobs: []buildkite.Job{{Type: buildkite.JobTypeScript, StepKey: "deploy", State: "running"}}})
	job := b.Jobs[0].ID
	if err := f.FinishJob(fixture.Org, fixture.PipelineWorker, b.Number, job, "failed", now, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := f.FinishBuild(fixture.Org, fixture.PipelineWorker, b.Number, buildkite.StateFailed, time.Now()); err != nil {
		t.Fatal(err)
	}
	until(first, "the failure", func(body string) bool {
		return sample(t, body, "buildkite_deployments_total", total("failed")) == failed0+1
	})

	// Someone retries the failed job of the finished build; the retry passes.
	if err := f.RetryJob(fixture.Org, fixture.PipelineWorker, b.Number, job, buildkite.RetryTypeManual); err != nil {
		t.Fatal(err)
	}
	rb, ok := f.Build(fixture.Org, fixture.PipelineWorker, b.Number)
	if !ok || len(rb.Jobs) != 2 {
		t.Fatalf("after the retry the build has jobs %+v, want the failed attempt and its retry", rb.Jobs)
	}
	retry := rb.Jobs[1].ID
	if err := f.FinishJob(fixture.Org, fixture.PipelineWorker, b.Number, retry, "passed", time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := f.FinishBuild(fixture.Org, fixture.PipelineWorker, b.Number, buildkite.StatePassed, time.Now()); err != nil {
		t.Fatal(err)
	}
	until(first, "the pass after the retry", func(body string) bool {
		return sample(t, body, "buildkite_deployments_total", total("passed")) == passed0+1 &&
			sample(t, body, "buildkite_deployments_total", total("failed")) == failed0+1
	})

	// The second replica starts only now, with the same flags: its backfill
	// (--history.backfill, 30d, covers all the first one holds) reads the history, the failure
	// only as the retried attempt.
	second := startExporter(t, nil, args("data-second")...)
	second.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := second.get("/-/ready"); return code == 200 })

	// One more deployment, which both see live.
	c := f.AddBuild(fixture.Org, fixture.PipelineWorker, buildkite.Build{State: buildkite.StateRunning, Branch: "main",
		Commit: strings.Repeat("8", 40), CreatedAt: buildkite.Timestamp{Time: time.Now()}, StartedAt: buildkite.Timestamp{Time: time.Now()}})
	if err := f.FinishBuild(fixture.Org, fixture.PipelineWorker, c.Number, buildkite.StatePassed, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*exporter{first, second} {
		until(e, "the last deployment", func(body string) bool {
			return sample(t, body, "buildkite_deployments_total", total("passed")) == passed0+2
		})
	}

	_, a := first.get("/metrics")
	_, z := second.get("/metrics")
	sa, sz := deploymentSeries(t, a), deploymentSeries(t, z)
	if len(sa) == 0 {
		t.Fatal("no deployment series")
	}
	if diff := diffLines(sa, sz); diff != "" {
		t.Errorf("the replicas disagree (-first +second):\n%s", diff)
	}
	if got := sample(t, z, "buildkite_deployments_total", total("failed")); got != failed0+1 {
		t.Errorf("the second replica counts %v failures, want %v: it missed the failure that a retry hid", got, failed0+1)
	}
}

// diffLines lists the lines only in a (-) or only in b (+); both are sorted.
func diffLines(a, b []string) string {
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			fmt.Fprintf(&out, "- %s\n", a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			fmt.Fprintf(&out, "+ %s\n", b[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return out.String()
}
