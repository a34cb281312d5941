package collector

import (
	"math"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// Query kinds: each cycle runs one of each, org-wide or per pipeline.
const (
	queryFinished = "finished"
	queryOpen     = "open"
)

// remeasureAfter: an org-wide cost measured longer ago is measured again (one probe page), so
// that an organization whose unrelated pipelines became quiet gets the cheap org-wide listing back.
const remeasureAfter = time.Hour

// planner is one organization's query planner: from what earlier cycles read it predicts, per
// query kind, whether one org-wide listing or one listing per annotated pipeline costs fewer
// pages. It does no I/O; the poll loop reports to it what each listing read. One goroutine uses
// a planner at a time (an organization is polled by one cycle at a time).
type planner struct {
	est map[string]*costEstimate // by query kind
}

// costEstimate remembers how many builds the previous cycles saw, org-wide and per annotated
// pipeline: a rate per second plus the builds the next listing will read again (the tail:
// finished within the overlap before the watermark) for finished builds, a level for open builds.
type costEstimate struct {
	orgRate     float64 // -1 until an org-wide query (or a probe) measured it
	orgMeasured time.Time
	orgTail     float64
	pipeRate    map[string]float64
	pipeTail    map[string]float64
	// listedAt is when (local, monotonic) the listing that set the watermark listedWM started:
	// builds new since listedWM are those that finished since listedAt, whatever the clock skew.
	listedAt time.Time
	listedWM time.Time
}

func newPlanner() *planner {
	p := &planner{est: map[string]*costEstimate{}}
	for _, k := range []string{queryFinished, queryOpen} {
		p.est[k] = &costEstimate{orgRate: -1, pipeRate: map[string]float64{}, pipeTail: map[string]float64{}}
	}
	return p
}

// plan is how a query will be listed.
type plan struct {
	orgWide bool
	// probe: read one org-wide page first and decide from it (decideAfterProbe).
	probe bool
	// Estimated pages; orgPages is -1 when never measured.
	orgPages, pipePages int
}

func pages(n float64) int { return max(1, int(math.Ceil(n/perPage))) }

// plan chooses how to list kind for the annotated pipelines slugs. fresh is the seconds of new
// builds the listing will read on top of the tails (1 for a level). With no org-wide estimate
// for finished builds and several pipelines, it asks for a probe.
func (p *planner) plan(kind string, slugs []string, fresh float64, now time.Time) plan {
	e := p.est[kind]
	var pl plan
	for _, s := range slugs {
		pl.pipePages += pages(e.pipeTail[s] + e.pipeRate[s]*fresh)
	}
	if e.stale(now) {
		// Never measured: try org-wide once when it can be cheaper at all.
		pl.orgWide, pl.orgPages = len(slugs) > 1, -1
		pl.probe = kind == queryFinished && len(slugs) > 1
		return pl
	}
	pl.orgPages = pages(e.orgTail + e.orgRate*fresh)
	pl.orgWide = pl.orgPages < pl.pipePages
	return pl
}

// stale says whether the org-wide cost is unknown or too old to choose by.
func (e *costEstimate) stale(now time.Time) bool {
	return e.orgRate < 0 || now.Sub(e.orgMeasured) > remeasureAfter
}

// decideAfterProbe chooses from a full first page of an org-wide listing of the builds finished
// since from, and records the rates it implies. The probe page is read already: the org-wide
// listing costs the rest.
func (p *planner) decideAfterProbe(kind string, page []buildkite.Build, slugs []string, from, now time.Time) plan {
	e := p.est[kind]
	orgBuilds, span, pipeBuilds := probeEstimate(page, slugs, from)
	pl := plan{orgPages: pages(orgBuilds)}
	for _, s := range slugs {
		pl.pipePages += pages(pipeBuilds[s])
	}
	pl.orgWide = pl.orgPages-1 <= pl.pipePages
	e.orgRate, e.orgMeasured, e.orgTail = orgBuilds/span, now, orgBuilds/span*overlap.Seconds()
	for _, s := range slugs {
		e.pipeRate[s] = pipeBuilds[s] / span
	}
	return pl
}

// probeEstimate estimates, from a full first page of an org-wide listing of the builds finished
// since from (newest created first), how many builds the whole listing holds and how many of them
// each annotated pipeline has: the page's builds were created at a rate of len(page)-1 over the
// span of their created_at, and the window runs from from to the newest timestamp on the page
// (both on Buildkite's clock).
func probeEstimate(page []buildkite.Build, slugs []string, from time.Time) (orgBuilds, window float64, pipeBuilds map[string]float64) {
	var oldest, newest time.Time
	counts := map[string]int{}
	for i := range page {
		b := &page[i]
		counts[b.PipelineSlug()]++
		if oldest.IsZero() || b.CreatedAt.Before(oldest) {
			oldest = b.CreatedAt.Time
		}
		for _, t := range []time.Time{b.CreatedAt.Time, b.FinishedAt.Time} {
			if t.After(newest) {
				newest = t
			}
		}
	}
	n := float64(len(page))
	span := max(newest.Sub(oldest).Seconds(), 1)
	window = max(newest.Sub(from).Seconds(), span, 1)
	orgBuilds = max(n, (n-1)/span*window)
	pipeBuilds = make(map[string]float64, len(slugs))
	for _, s := range slugs {
		pipeBuilds[s] = float64(counts[s]) * orgBuilds / n
	}
	return orgBuilds, window, pipeBuilds
}

// observeOrgWide records what an org-wide listing read: total new builds, and per annotated
// pipeline, over fresh seconds (1 for a level).
func (p *planner) observeOrgWide(kind string, total int, counts map[string]int, slugs []string, fresh float64, now time.Time) {
	e := p.est[kind]
	fresh = max(fresh, 1)
	e.orgRate, e.orgMeasured = float64(total)/fresh, now
	for _, s := range slugs {
		e.pipeRate[s] = float64(counts[s]) / fresh
	}
}

// observePipeline records what one pipeline's listing read.
func (p *planner) observePipeline(kind, slug string, n int, fresh float64) {
	p.est[kind].pipeRate[slug] = float64(n) / max(fresh, 1)
}

// fresh is how many seconds of new finished builds a listing from wm reads: the time since the
// listing that set wm started, on the local monotonic clock, so skew does not enter; when that
// is not known (first cycle, a failed store), the span from wm to now across the two clocks.
func (p *planner) fresh(wm, now time.Time) float64 {
	e := p.est[queryFinished]
	if !e.listedAt.IsZero() && e.listedWM.Equal(wm) {
		return max(0, now.Sub(e.listedAt).Seconds())
	}
	return max(0, now.Sub(wm).Seconds())
}

// updateTails records, after a cycle that moved the finished-builds watermark to wm, the builds
// of the listing that the next listing (from wm − overlap) will read again. An org-wide tail not
// measured this cycle is kept while the watermark stays, else estimated from the rate.
func (p *planner) updateTails(l *listing, wm time.Time) {
	e := p.est[queryFinished]
	cut := wm.Add(-overlap)
	tail := map[string]float64{}
	for i := range l.builds {
		if !l.builds[i].FinishedAt.Before(cut) {
			tail[l.builds[i].PipelineSlug()]++
		}
	}
	for s := range e.pipeRate {
		e.pipeTail[s] = tail[s]
	}
	switch {
	case l.orgWide:
		n := 0
		for _, t := range l.orgFinished {
			if t >= cut.UnixNano() {
				n++
			}
		}
		e.orgTail = float64(n)
	case !e.listedWM.Equal(wm) && e.orgRate >= 0:
		e.orgTail = e.orgRate * overlap.Seconds()
	}
	e.listedAt, e.listedWM = l.started, wm
}
