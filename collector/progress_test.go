package collector

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// TestBackfillProgress: a backfill throttled to 10 requests a minute (three pipelines of 450
// builds among a busy organization, so each is listed on its own: about 15 pages) logs a
// progress line at most every 30 s and a completion line with totals, exposes an estimate of
// the requests left that falls to 0, and publishes no deployment series until it completes.
func TestBackfillProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		var comps []backstage.Component
		for p := range 3 {
			slug := fmt.Sprintf("svc%d-deploy", p)
			comps = append(comps, component(fmt.Sprintf("svc%d", p), slug))
			for i := range 450 {
				f.AddBuild(testOrg, slug, finished(now.Add(-time.Duration(i+1)*time.Hour), time.Minute, "passed", map[string]string{"environment": "production"}))
			}
		}
		for i := range 400 {
			f.AddBuild(testOrg, "monorepo-ci", finished(now.Add(-time.Duration(i+1)*time.Minute), time.Second, "passed", nil))
		}
		cl, err := buildkite.NewClient(buildkite.Config{
			BaseURL: buildkitetest.InProcessBaseURL, Token: secret.Secret(testToken), RequestsPerMinute: 10,
			HTTPClient: &http.Client{Transport: f.Transport()}, Logger: log.NewNopLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		var logs testenv.LogBuffer
		h := start(t, f, comps, withLogger(log.With(log.NewLogfmtLogger(&logs), "ts", log.DefaultTimestampUTC)), func(o *Options) { o.Client, o.RequestsPerMinute = cl, 10 })
		// start returned at the first wait on the limiter: the backfill runs.
		time.Sleep(50 * time.Second)
		synctestWait()
		mid := h.metrics()
		remaining := mid[series("buildkite_exporter_backfill_remaining_requests", "organization", testOrg)]
		if remaining <= 0 {
			t.Errorf("remaining requests during the backfill = %v, want an estimate above 0", remaining)
		}
		orgs := h.c.Organizations()
		if len(orgs) != 1 || !orgs[0].Backfilling || orgs[0].BackfillListingsTotal != 3 || orgs[0].BackfillRemainingRequests <= 0 || orgs[0].BackfillETA <= 0 {
			t.Errorf("organizations during the backfill: %+v", orgs)
		}
		if got := filter(mid, "buildkite_deployments_total"); len(got) != 0 {
			t.Errorf("deployment counters published during the backfill: %v", got)
		}
		time.Sleep(10 * time.Minute)
		synctestWait()
		after := h.metrics()
		expect(t, after, map[string]float64{
			series("buildkite_exporter_backfill_remaining_requests", "organization", testOrg): 0,
			deployments("svc0", "production", "svc0-deploy", "passed"):                        450,
			deployments("svc2", "production", "svc2-deploy", "passed"):                        450,
		})
		if orgs := h.c.Organizations(); len(orgs) != 1 || orgs[0].Backfilling || orgs[0].LastSuccess.IsZero() || orgs[0].NextPoll.IsZero() {
			t.Errorf("organizations after the backfill: %+v", orgs)
		}
		out := logs.String()
		progress := regexp.MustCompile(`ts=(\S+) .*msg="Backfilling deployment history" organization=acme listings_done=`).FindAllStringSubmatch(out, -1)
		if len(progress) < 2 {
			t.Fatalf("%d progress lines, want at least 2 for a backfill of over a minute:\n%s", len(progress), out)
		}
		var last time.Time
		for _, m := range progress {
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Fatal(err)
			}
			if !last.IsZero() && at.Sub(last) < progressEvery {
				t.Errorf("progress lines %s apart, want at least %s", at.Sub(last), progressEvery)
			}
			last = at
		}
		if !strings.Contains(out, `msg="Backfill complete" organization=acme builds_read=1350 deployments=1350`) {
			t.Errorf("no completion line with totals:\n%s", out)
		}
	})
}
