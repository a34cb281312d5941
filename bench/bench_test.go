package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

// TestDatasetCounts: the counts the figures are compared with (builds per window, pages per
// pipeline) are what the fake actually serves.
func TestDatasetCounts(t *testing.T) {
	m := orgModel{Org: "acme", Pipelines: 30, Annotated: 3, BuildsPerDay: 100, Days: 20, Seed: 7}
	f := buildkitetest.New(buildkitetest.WithRateLimits(false))
	end := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	w := 10 * day
	ds := m.load(f, end, w)
	if got := len(m.components()); got != m.Annotated {
		t.Fatalf("%d components, want %d", got, m.Annotated)
	}
	var all, org, ann, annPages, open, annRetried, retried int
	for p := range m.Pipelines {
		n := 0
		for num := 1; ; num++ {
			b, ok := f.Build(m.Org, m.slug(p), num)
			if !ok {
				break
			}
			all++
			if b.FinishedAt.IsZero() {
				open++
				continue
			}
			// A retried build failed first (failing_at), then finished again later.
			if !b.FailingAt.IsZero() && b.FailingAt.Before(b.FinishedAt.Time) {
				retried++
				if m.annotated(p) && (len(b.Jobs) != 2 || !b.Jobs[0].Retried || b.Jobs[1].RetrySource == nil) {
					t.Errorf("retried build %s#%d has jobs %+v, want the failed attempt and its retry", m.slug(p), num, b.Jobs)
				}
			}
			if !b.FinishedAt.Before(end.Add(-w)) {
				org++
				if m.annotated(p) {
					ann++
					n++
					if len(b.Jobs) == 2 {
						annRetried++
					}
				}
			}
			if b.FinishedAt.After(end) || b.CreatedAt.After(end) {
				t.Errorf("build %s#%d is from after the end of history", m.slug(p), num)
			}
		}
		if m.annotated(p) {
			annPages += max(1, (n+99)/100)
		}
	}
	if retried != ds.retried || annRetried != ds.annRetried[w] || retried == 0 {
		t.Errorf("fake holds %d retried builds, %d of them annotated in the window; dataset says %d, %d", retried, annRetried, ds.retried, ds.annRetried[w])
	}
	if all != ds.builds || org != ds.orgFinished[w] || ann != ds.annFinished[w] || annPages != ds.annPipePages[w] || open != ds.openOrg || open != len(ds.pending) {
		t.Errorf("fake holds %d builds, %d finished in the window (%d annotated, %d pages), %d open; dataset says %d, %d (%d, %d), %d (%d pending)",
			all, org, ann, annPages, open, ds.builds, ds.orgFinished[w], ds.annFinished[w], ds.annPipePages[w], ds.openOrg, len(ds.pending))
	}
	// About BuildsPerDay × Days builds (Poisson: within 5 standard deviations).
	want := m.BuildsPerDay * float64(m.Days)
	if d := math.Abs(float64(all) - want); d > 5*math.Sqrt(want) {
		t.Errorf("%d builds, want about %.0f", all, want)
	}
}

// TestLiveSimFinishesBuilds: the live simulation adds builds and finishes them at the step they
// are due, and probes land on annotated pipelines once per interval.
func TestLiveSimFinishesBuilds(t *testing.T) {
	m := orgModel{Org: "acme", Pipelines: 10, Annotated: 2, BuildsPerDay: 24 * 60 * 6, Days: 1, Seed: 3} // 6 builds/min
	end := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	start := end.Add(time.Hour)
	now := start
	f := buildkitetest.New(buildkitetest.WithRateLimits(false), buildkitetest.WithClock(func() time.Time { return now }))
	ds := m.load(f, end)
	sim := newLiveSim(ds, f, start, 30*time.Second)
	var finished, probes, failed, refinished int
	for s := range 30 * 60 { // 30 minutes
		now = start.Add(time.Duration(s) * time.Second)
		done, err := sim.advance(now)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range done {
			finished++
			if !ev.at.Equal(now) {
				t.Fatalf("build finished at %v during the step at %v", ev.at, now)
			}
			b, ok := f.Build(m.Org, m.slug(ev.pipeline), ev.number)
			if !ok || !b.FinishedAt.Equal(now) || b.State != ev.state {
				t.Fatalf("the fake holds %+v for %s#%d, want %s finished at %v", b, m.slug(ev.pipeline), ev.number, ev.state, now)
			}
			if ev.probe {
				probes++
				if !ev.annotated {
					t.Errorf("probe on unannotated pipeline %s", m.slug(ev.pipeline))
				}
			}
			if ev.state == buildkite.StateFailed && !ev.retried {
				failed++
			}
			if ev.retried {
				refinished++
				// The failed attempt, retried once the build had finished, and the retry.
				if len(b.Jobs) != 2 || !b.Jobs[0].Retried || b.Jobs[0].State != buildkite.StateFailed || b.Jobs[1].RetryType != buildkite.RetryTypeManual ||
					!b.Jobs[1].CreatedAt.After(b.Jobs[0].FinishedAt.Time) || b.Jobs[1].State != ev.state || b.FailingAt.IsZero() {
					t.Errorf("retried build %s#%d: %+v", m.slug(ev.pipeline), ev.number, b)
				}
			}
		}
	}
	// 9% of ~180 builds fail; a third of those are retried 1–20 minutes later.
	if failed == 0 || sim.retries == 0 || refinished == 0 || sim.retries > failed {
		t.Errorf("%d builds failed, %d were retried, %d finished again", failed, sim.retries, refinished)
	}
	// Every pending build of the history plus ~180 arrivals, less those still running.
	if finished < 100 {
		t.Errorf("only %d builds finished in 30 minutes at 6 arrivals a minute", finished)
	}
	if probes < 55 || probes > 60 {
		t.Errorf("%d probes finished in 30 minutes, want one per 30 s interval (about 60)", probes)
	}
}

// TestNaiveRequestShape: the naive poller's request is the one the issue describes.
func TestNaiveRequestShape(t *testing.T) {
	f := buildkitetest.New(buildkitetest.WithRateLimits(false))
	f.SetToken("bkua_naive", buildkite.ScopeReadBuilds)
	for i := range 150 {
		f.AddBuild("acme", "svc-00000-deploy", buildkite.Build{Number: i + 1, CreatedAt: ts(epoch.Add(time.Duration(i) * time.Minute))})
	}
	flagRPMWas := *flagRPM
	*flagRPM = math.Inf(1)
	defer func() { *flagRPM = flagRPMWas }()
	cl, api := newClient(t, f, "bkua_naive")
	n := 0
	if err := cl.ListPipelineBuilds(context.Background(), "acme", "svc-00000-deploy", buildkite.ListBuildsOptions{PerPage: 100}, func(page []buildkite.Build) error {
		n += len(page)
		return buildkite.ErrStopPaging
	}); err != nil {
		t.Fatal(err)
	}
	reqs := f.Requests()
	if len(reqs) != 1 || reqs[0].Route != buildkitetest.RoutePipelineBuilds || reqs[0].Query.Get("per_page") != "100" || n != 100 {
		t.Errorf("naive cycle of one pipeline: %d requests %+v, %d builds; want one first page of 100", len(reqs), reqs, n)
	}
	if got := api.requests(); len(got) != 1 || got[0].route != buildkitetest.RoutePipelineBuilds || got[0].status != 200 {
		t.Errorf("the client's request log holds %+v, want the one request as the fake saw it", got)
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 7: "7", 1801012: "1,801,012", -2500: "-2,500", 123.456: "123", 42.42: "42.4",
		3.14159: "3.14", 0.01234: "0.0123", math.Inf(1): "+Inf",
	} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestReportTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "figures.jsonl")
	figs := newFigures(path)
	figs.info("a", "plain", 2, "s", "x|y")
	figs.target("a", "hit", 1, "", "≤ 2", true, "")
	figs.target("b", "miss", 3, "MiB", "< 2", false, "")
	if err := figs.flush(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	md := filepath.Join(t.TempDir(), "t.md")
	if err := report(path, md, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| a | plain | 2 s |  |  | x\\|y |", "| a | hit | 1 | ≤ 2 | yes |", "| b | miss | 3 MiB | < 2 | **no** |", "3 figures, 1 targets missed."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if err := report(filepath.Join(t.TempDir(), "missing"), "", &out); err == nil {
		t.Error("report of a missing file did not fail")
	}
}

// TestRenderAndMemorySmall runs the render and memory stages on a small catalog: every variant
// is measured and the replay reads every stored deployment.
func TestRenderAndMemorySmall(t *testing.T) {
	if err := flag.Set("test.benchtime", "3x"); err != nil {
		t.Fatal(err)
	}
	cycleSample = 200 * time.Millisecond
	figs := newFigures("")
	if err := renderFigures(figs, 20); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range figs.all {
		got[f.Name] = f.Value
	}
	names := []string{"series", "promhttp, text 0.0.4, plain (no cache, for comparison)",
		"poll cycle with nothing new, no body asked for (snapshot rebuild)", "poll cycle with nothing new, all three bodies warmed",
		"scrape, text 0.0.4, gzip, deployment body only"}
	for _, f := range bodyFormats {
		names = append(names,
			fmt.Sprintf("first scrape of %s, gzip, not asked for within 15 min (encodes)", f.name),
			fmt.Sprintf("first scrape of %s, gzip, after a poll (the poller warmed it)", f.name),
			fmt.Sprintf("scrape, %s, gzip", f.name), fmt.Sprintf("scrape, %s, plain", f.name),
			fmt.Sprintf("poller's encoding of %s per cycle (Bodies.Warm)", f.name))
	}
	for _, name := range names {
		if got[name] <= 0 {
			t.Errorf("figure %q = %v, want > 0 (all: %v)", name, got[name], got)
		}
	}
	if got["series"] < 20*3*20 {
		t.Errorf("%v series for 20 components × 3 environments with passed and failed deployments; too few", got["series"])
	}

	dir := t.TempDir()
	if err := makeStore(dir, 20, 3000); err != nil {
		t.Fatal(err)
	}
	if err := makeStore(dir, 20, 10); err == nil {
		t.Error("mkstore over an existing store did not fail")
	}
	figs = newFigures("")
	if err := memoryFigures(figs, dir, 20, ""); err != nil {
		t.Fatal(err)
	}
	got = map[string]float64{}
	for _, f := range figs.all {
		got[f.Name] = f.Value
	}
	if got["deployments replayed"] != 3000 {
		t.Errorf("replayed %v deployments, want 3000", got["deployments replayed"])
	}
	if got["RSS with every body cached (protobuf, OpenMetrics, text warmed by the poller)"] <= 0 || got["RSS with the text body cached (warmed by the poller)"] <= 0 {
		t.Errorf("no RSS measured: %v", got)
	}

	// The report stage reads the same store: every record, and a figure for each format.
	figs = newFigures("")
	if err := reportFigures(figs, dir, 7*24*time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	got = map[string]float64{}
	for _, f := range figs.all {
		got[f.Name] = f.Value
	}
	if got["records read"] != 3000 || got["report over the whole log (open, replay, compute)"] <= 0 || got["render html"] <= 0 {
		t.Errorf("report figures: %v", got)
	}
}

// TestStoreSizeSmall runs the store-size stage on a small organization for 40 days: both
// retentions store the same deployments, the 30-day one keeps only the last 30 days of records,
// keys and commits, and the sizes are consistent with one another.
func TestStoreSizeSmall(t *testing.T) {
	figs := newFigures("")
	if err := storeSizeFigures(figs, t.TempDir(), 0.01, 40, 30*time.Minute, []time.Duration{400 * day, 30 * day}); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{}
	for _, f := range figs.all {
		if got[f.Section] == nil {
			got[f.Section] = map[string]float64{}
		}
		got[f.Section][f.Name] = f.Value
	}
	long, short := got["store size, 40 days, --storage.retention=400d, an append per 30m0s (scale 0.01)"], got["store size, 40 days, --storage.retention=30d, an append per 30m0s (scale 0.01)"]
	if long == nil || short == nil {
		t.Fatalf("sections missing: %v", got)
	}
	// About 20 deployments a day (scale 0.01) over 40 days.
	if n := long["deployments stored"]; n < 600 || n > 1000 || short["deployments stored"] != n {
		t.Errorf("stored %v and %v deployments, want the same, about 800", n, short["deployments stored"])
	}
	if long["records, keys, commit first-seen times kept"] != long["deployments stored"] {
		t.Errorf("400d kept %v records of %v", long["records, keys, commit first-seen times kept"], long["deployments stored"])
	}
	if k := short["records, keys, commit first-seen times kept"]; k <= 0 || k > 0.85*short["deployments stored"] {
		t.Errorf("30d kept %v records of %v: want about three quarters", k, short["deployments stored"])
	}
	for _, s := range []map[string]float64{long, short} {
		if !(s["data (used less free pages)"] <= s["bbolt high-water mark (used)"] && s["bbolt high-water mark (used)"] <= s["file"] && s["file after bbolt compact"] > 0) {
			t.Errorf("sizes out of order: %v", s)
		}
		if p := s["per 1,000 deployments kept"]; p < 100 || p > 5000 {
			t.Errorf("%v kB per 1,000 deployments", p)
		}
	}
}
