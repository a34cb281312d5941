package collector

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
)

// progressEvery is how often a running backfill logs how far it got.
const progressEvery = 30 * time.Second

var backfillRemainingDesc = prometheus.NewDesc("buildkite_exporter_backfill_remaining_requests",
	"Estimated Buildkite API requests left in the organization's current history backfill; 0 when none runs. Deployment series appear when it completes.",
	[]string{"organization"}, nil)

// backfillProgress follows one organization's history backfill: how many listings (one per
// pipeline, or one org-wide) it has done of how many, the builds read and the requests spent, and
// an estimate of the requests left from the query planner's page estimates. Its counters are
// atomics: the health collector and the status page read them while the backfill runs.
type backfillProgress struct {
	org     string
	started time.Time

	listingsTotal atomic.Int64
	listingsDone  atomic.Int64
	builds        atomic.Int64
	requests      atomic.Int64 // pages read (one request each), estimated from builds per page
	estimated     atomic.Int64 // the planner's estimate of every request of the backfill; 0 unknown
	lastLog       atomic.Int64 // Unix ns
}

func newBackfillProgress(org string, now time.Time) *backfillProgress {
	p := &backfillProgress{org: org, started: now}
	p.lastLog.Store(now.UnixNano())
	return p
}

// plan records the listings the backfill will make and the requests they are estimated to cost.
func (p *backfillProgress) plan(listings, requests int) {
	if p == nil {
		return
	}
	p.listingsTotal.Store(int64(listings))
	p.estimated.Store(int64(max(requests, listings)))
}

// page records a page of a listing read (the first page of each listing, then every full page).
func (p *backfillProgress) sawBuild() {
	if p == nil {
		return
	}
	if n := p.builds.Add(1); n%perPage == 1 {
		p.requests.Add(1)
	}
}

func (p *backfillProgress) listingDone() {
	if p != nil {
		p.listingsDone.Add(1)
	}
}

// remaining is the estimate of the requests left: the planner's estimate less what was spent,
// at least one per listing not done.
func (p *backfillProgress) remaining() int64 {
	if p == nil {
		return 0
	}
	left := p.estimated.Load() - p.requests.Load()
	return max(left, p.listingsTotal.Load()-p.listingsDone.Load(), 0)
}

// eta is the time the remaining requests take at requestsPerMinute; 0 when unknown.
func (p *backfillProgress) eta(requestsPerMinute float64) time.Duration {
	if p == nil || requestsPerMinute <= 0 || math.IsInf(requestsPerMinute, 1) {
		return 0
	}
	return time.Duration(float64(p.remaining()) / requestsPerMinute * float64(time.Minute)).Round(time.Second)
}

// maybeLog logs a progress line when the last one is older than progressEvery.
func (c *Collector) maybeLogProgress(p *backfillProgress) {
	if p == nil {
		return
	}
	now := time.Now()
	last := p.lastLog.Load()
	if now.Sub(time.Unix(0, last)) < progressEvery || !p.lastLog.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	level.Info(c.logger).Log("msg", "Backfilling deployment history", "organization", p.org,
		"listings_done", p.listingsDone.Load(), "listings", p.listingsTotal.Load(), "builds_read", p.builds.Load(),
		"requests_spent", p.requests.Load(), "requests_remaining_estimate", p.remaining(),
		"eta", p.eta(c.requestsPerMinute), "elapsed", now.Sub(p.started).Round(time.Second))
}

// logBackfillDone logs the completion line with the backfill's totals.
func (c *Collector) logBackfillDone(p *backfillProgress, deployments int) {
	if p == nil {
		return
	}
	level.Info(c.logger).Log("msg", "Backfill complete", "organization", p.org, "builds_read", p.builds.Load(),
		"deployments", deployments, "requests_spent", p.requests.Load(), "duration", time.Since(p.started).Round(time.Second))
}
