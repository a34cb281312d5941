package collector

import (
	"fmt"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// The planner is tested without a client: what a listing read is reported to it, and its
// choice for the next cycle is checked.

func TestPlannerFirstChoiceIsAProbe(t *testing.T) {
	p := newPlanner()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if pl := p.plan(queryFinished, []string{"a", "b"}, 30, now); !pl.probe || !pl.orgWide || pl.orgPages != -1 {
		t.Errorf("no estimate, two pipelines: %+v, want a probe", pl)
	}
	if pl := p.plan(queryFinished, []string{"a"}, 30, now); pl.probe || pl.orgWide {
		t.Errorf("one pipeline: %+v, want its own listing", pl)
	}
	if pl := p.plan(queryOpen, []string{"a", "b"}, 1, now); pl.probe || !pl.orgWide {
		t.Errorf("open builds, no estimate: %+v, want org-wide without a probe", pl)
	}
}

// probePage is a full page of 100 builds created one per second, newest first, of which
// annotated of the pipelines named.
func probePage(newest time.Time, annotated map[string]int) []buildkite.Build {
	var page []buildkite.Build
	for i := range perPage {
		slug := "other"
		n := 0
		for s, k := range annotated {
			if i >= n && i < n+k {
				slug = s
			}
			n += k
		}
		at := newest.Add(-time.Duration(i) * time.Second)
		page = append(page, buildkite.Build{ID: fmt.Sprint(i), URL: "https://api.buildkite.com/v2/organizations/acme/pipelines/" + slug + "/builds/1",
			CreatedAt: ts(at), FinishedAt: ts(at)})
	}
	return page
}

func TestPlannerDecidesFromTheProbe(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	// A busy organization (100 builds in 99 s) over a 30-day window: org-wide would be tens of
	// thousands of pages; two quiet annotated pipelines cost one or two each.
	p := newPlanner()
	slugs := []string{"a", "b", "c"}
	pl := p.decideAfterProbe(queryFinished, probePage(now, map[string]int{"a": 1}), slugs, now.Add(-30*24*time.Hour), now)
	if pl.orgWide || pl.orgPages < 1000 || pl.pipePages > 300 {
		t.Errorf("busy organization: %+v, want per pipeline", pl)
	}
	// The rates it measured carry over to the steady state: a 30 s cycle of this organization
	// reads about 150 org-wide builds (30 s and the 2-minute tail at 1 a second), 2 pages,
	// against 3 pipeline listings; with a tie the pipelines win.
	if next := p.plan(queryFinished, slugs, 30, now.Add(time.Minute)); !next.orgWide || next.probe || next.orgPages != 2 || next.pipePages != 3 {
		t.Errorf("steady state after the probe: %+v, want org-wide (2 pages < 3)", next)
	}
	if next := p.plan(queryFinished, slugs[:2], 30, now.Add(time.Minute)); next.orgWide {
		t.Errorf("steady state, two pipelines: %+v, want per pipeline (a tie of 2 pages)", next)
	}
	// An organization whose builds are mostly the annotated ones: org-wide.
	p = newPlanner()
	if pl := p.decideAfterProbe(queryFinished, probePage(now, map[string]int{"a": 50, "b": 50}), []string{"a", "b"}, now.Add(-time.Hour), now); !pl.orgWide {
		t.Errorf("annotated pipelines are the organization: %+v, want org-wide", pl)
	}
}

func TestPlannerFollowsWhatListingsRead(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	slugs := []string{"a", "b", "c"}
	p := newPlanner()
	// An org-wide listing read 3,000 new builds in 30 s, 1 of them annotated.
	p.observeOrgWide(queryFinished, 3000, map[string]int{"a": 1}, slugs, 30, now)
	if pl := p.plan(queryFinished, slugs, 30, now.Add(30*time.Second)); pl.orgWide || pl.orgPages != 30 || pl.pipePages != 3 {
		t.Errorf("after a busy org-wide cycle: %+v, want per pipeline (3 pages < 30)", pl)
	}
	// The organization went quiet, as pipeline listings show: their rates drop, but the org-wide
	// estimate only changes when it is measured again, after remeasureAfter.
	for _, s := range slugs {
		p.observePipeline(queryFinished, s, 0, 30)
	}
	if pl := p.plan(queryFinished, slugs, 30, now.Add(time.Minute)); pl.orgWide {
		t.Errorf("org-wide estimate still fresh: %+v, want per pipeline", pl)
	}
	if pl := p.plan(queryFinished, slugs, 30, now.Add(remeasureAfter+time.Minute)); !pl.probe {
		t.Errorf("org-wide estimate older than %s: %+v, want a probe", remeasureAfter, pl)
	}
}

func TestPlannerFreshIsOnTheLocalClock(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	p := newPlanner()
	wm := now.Add(-10 * time.Hour) // Buildkite's clock far behind ours: the skew must not count
	p.updateTails(&listing{started: now}, wm)
	if got := p.fresh(wm, now.Add(30*time.Second)); got != 30 {
		t.Errorf("fresh = %v, want 30 (the time since the listing that set the watermark)", got)
	}
	if got := p.fresh(wm.Add(time.Second), now.Add(30*time.Second)); got < 36000 {
		t.Errorf("fresh from another watermark = %v, want the span to it", got)
	}
}

func TestPlannerTails(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	p := newPlanner()
	p.observeOrgWide(queryFinished, 10, map[string]int{"a": 4}, []string{"a"}, 30, now)
	wm := now
	l := &listing{started: now, orgWide: true}
	for i := range 10 {
		at := wm.Add(-time.Duration(i) * 20 * time.Second) // 7 within the 2-minute overlap
		l.orgFinished = append(l.orgFinished, at.UnixNano())
		if i < 4 {
			l.builds = append(l.builds, buildkite.Build{URL: "https://api.buildkite.com/v2/organizations/acme/pipelines/a/builds/1", FinishedAt: ts(at)})
		}
	}
	p.updateTails(l, wm)
	e := p.est[queryFinished]
	if e.orgTail != 7 || e.pipeTail["a"] != 4 {
		t.Errorf("tails: org %v (want 7), a %v (want 4)", e.orgTail, e.pipeTail["a"])
	}
}

// TestOverlapWithinThePruneGuard: the store keeps the dedup keys of outcomes that finished up
// to store.MaxOverlap before the earliest watermark; a longer overlap would re-read outcomes
// whose keys it may have pruned, and count them again.
func TestOverlapWithinThePruneGuard(t *testing.T) {
	if overlap > store.MaxOverlap {
		t.Fatalf("overlap %s exceeds store.MaxOverlap %s", overlap, store.MaxOverlap)
	}
}
