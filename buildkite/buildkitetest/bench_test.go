package buildkitetest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

var (
	millionOnce sync.Once
	million     *Fake
	millionEnd  time.Time
)

// millionBuilds loads one organization with 1,000,000 builds: 2,000 pipelines × 500 builds over
// 30 days, one in a thousand still running, the rest finished a few minutes after creation.
func millionBuilds() (*Fake, time.Time) {
	millionOnce.Do(func() {
		f := New(WithRateLimits(false))
		f.SetToken(testToken, "read_builds")
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		const pipelines, perPipeline = 2000, 500
		step := 30 * 24 * time.Hour / (pipelines * perPipeline)
		meta := map[string]string{"environment": "production"}
		batch := make([]buildkite.Build, perPipeline)
		for p := range pipelines {
			for i := range perPipeline {
				created := start.Add(time.Duration(i*pipelines+p) * step)
				b := buildkite.Build{
					State: buildkite.StatePassed, Branch: "main", Commit: "0a3285898e369d5a7f96e0c33945c2a515737b48",
					CreatedAt: buildkite.Timestamp{Time: created}, FinishedAt: buildkite.Timestamp{Time: created.Add(5 * time.Minute)},
					MetaData: meta,
				}
				if (i*pipelines+p)%1000 == 0 {
					b.State, b.FinishedAt = buildkite.StateRunning, buildkite.Timestamp{}
				}
				if i%10 == 0 {
					b.Branch = "feature"
				}
				batch[i] = b
			}
			f.AddBuilds("acme", "pipeline-"+strconv.Itoa(p), batch)
		}
		million, millionEnd = f, start.Add(30*24*time.Hour)
	})
	return million, millionEnd
}

// BenchmarkListOrgBuildsMillion measures serving one page of 100 builds from an organization
// holding 1,000,000 builds, for the queries the poller makes, plus the worst case (a filter no
// index helps with, which scans every build).
func BenchmarkListOrgBuildsMillion(b *testing.B) {
	f, end := millionBuilds()
	h := f.Handler()
	ts := func(t time.Time) string { return url.QueryEscape(t.Format(time.RFC3339)) }
	base := "/v2/organizations/acme/builds?per_page=100&exclude_jobs=true&exclude_pipeline=true&"
	for _, c := range []struct{ name, query string }{
		{"newest", ""},
		{"created_from_1h", "created_from=" + ts(end.Add(-time.Hour))},
		{"finished_from_10m", "finished_from=" + ts(end.Add(-10*time.Minute))},
		{"state_open", "state[]=running&state[]=scheduled"},
		{"created_window_page5", "created_from=" + ts(end.Add(-24*time.Hour)) + "&created_to=" + ts(end.Add(-12*time.Hour)) + "&page=5"},
		{"branch_scan_all", "branch=feature"},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, base+c.query, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req) // sorts the indexes once, outside the measurement
			if rec.Code != http.StatusOK || rec.Body.Len() < 1000 {
				b.Fatalf("status %d, %d bytes: %s", rec.Code, rec.Body.Len(), rec.Body.String())
			}
			f.ResetRequests()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
			}
			f.ResetRequests()
		})
	}
}
