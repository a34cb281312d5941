package main

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

// TestEconomyAnnotations measures what --buildkite.read-annotations costs in the steady state:
// one annotations request per finish of a build of a linked pipeline, read once (the overlap
// re-reads it from the cache), and none in the backfill. The live simulation is the economy
// harness's (Poisson arrivals at -scale, plus one probe build of a linked pipeline per poll
// interval for freshness); the figures count them apart.
//
//	go test ./bench -run TestEconomyAnnotations -args -scale=0.1 -cycles=240
func TestEconomyAnnotations(t *testing.T) {
	scale, cycles := *flagScale, *flagCycles
	if scale == 0 {
		scale = 0.01
	}
	if cycles == 0 {
		cycles = 120
	}
	m := issueScale(scale, 2)
	f := buildkitetest.New()
	ds := m.load(f, epoch)
	comps := m.components()
	figs := newFigures(*flagOut)
	defer func() {
		if err := figs.flush(); err != nil {
			t.Error(err)
		}
	}()
	synctest.Test(t, func(t *testing.T) {
		checkEpoch(t)
		r := startCollectorWith(t, f, comps, steadyBackfill, "bkua_annotations", pollInterval, 0, true)
		r.waitAppends(t, 1, time.Second)
		backfillAnnotations := countRoutes(r.api.requests())[buildkitetest.RouteAnnotations]
		if backfillAnnotations != 0 {
			t.Errorf("the backfill read annotations %d times, want none", backfillAnnotations)
		}
		r.waitAppends(t, 2, time.Second)
		r.api.reset()
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1500 * time.Millisecond)))
		simStart := time.Now()
		sim := newLiveSim(ds, f, simStart, pollInterval)
		var linked, probes int
		for time.Since(simStart) < time.Duration(cycles)*pollInterval {
			time.Sleep(time.Second)
			done, err := sim.advance(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range done {
				switch {
				case ev.probe:
					probes++
				case ev.annotated:
					linked++
				}
			}
		}
		// Let the last finishes be read.
		time.Sleep(2 * pollInterval)
		synctest.Wait()
		hours := time.Since(simStart).Hours()
		reqs := r.api.requests()
		routes := countRoutes(reqs)
		ann := routes[buildkitetest.RouteAnnotations]
		finishes := linked + probes
		t.Logf("%v: %.2f h, %d finished builds of linked pipelines (%d of them probes), %d annotation requests, %d requests in all, %d answered 429",
			m, hours, finishes, probes, ann, len(reqs), countStatus(reqs, 429))
		if ann > finishes {
			t.Errorf("%d annotation requests for %d finished builds of linked pipelines: a finish was read twice", ann, finishes)
		}
		if ann < finishes*9/10 {
			t.Errorf("only %d annotation requests for %d finished builds of linked pipelines", ann, finishes)
		}
		if n := countStatus(reqs, 429); n != 0 {
			t.Errorf("%d answers 429: the annotations went over the budget", n)
		}
		note := fmt.Sprintf("scale %g (%s), %d poll cycles of fake time; probes are the harness's freshness builds, one per cycle", scale, m, cycles)
		figs.info("annotations", "annotation requests per hour", float64(ann)/hours, "requests/h", note)
		figs.info("annotations", "annotation requests per finished build of a linked pipeline", float64(ann)/float64(max(1, finishes)), "", note)
		figs.info("annotations", "annotation requests per hour without the probes", float64(ann)/hours*float64(linked)/float64(max(1, finishes)), "requests/h",
			note+"; the organization's own deployment builds only")
		figs.info("annotations", "all requests per hour with annotations", float64(len(reqs))/hours, "requests/h", note)
		r.stop(t)
	})
}
