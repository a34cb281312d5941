package buildkite_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// ignoringFake is an API that ignores the named filters and pages on without end (no deep-page
// refusal, no rate limits), with builds of 60 days, one every 5 minutes, each finished 2
// minutes after it was created.
func ignoringFake(t *testing.T, now time.Time, filters ...string) (*buildkitetest.Fake, *buildkite.Client, *testenv.LogBuffer, *prometheus.Registry) {
	t.Helper()
	f := buildkitetest.New(buildkitetest.WithRateLimits(false), buildkitetest.WithDeepPageLimit(0), buildkitetest.WithIgnoredFilters(filters...))
	f.SetToken(token, allScopes...)
	n := 60 * 24 * 12
	builds := make([]buildkite.Build, n)
	for i := range builds {
		at := now.Add(-time.Duration(n-i) * 5 * time.Minute)
		builds[i] = buildkite.Build{Number: i + 1, State: buildkite.StatePassed, Branch: "main",
			CreatedAt: buildkite.Timestamp{Time: at}, StartedAt: buildkite.Timestamp{Time: at}, FinishedAt: buildkite.Timestamp{Time: at.Add(2 * time.Minute)}}
	}
	f.AddBuilds("acme", "shop-deploy", builds)
	logs := &testenv.LogBuffer{}
	reg := prometheus.NewPedanticRegistry()
	c := inProcess(t, f, buildkite.Config{Logger: log.NewLogfmtLogger(logs), Registerer: reg})
	return f, c, logs, reg
}

func dropped(t *testing.T, reg prometheus.Gatherer, what string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "buildkite_exporter_api_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "what" && l.GetValue() == what {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no buildkite_exporter_api_dropped_total{what=%q}", what)
	return 0
}

// TestIgnoredFiltersStopTheListing: an API that ignores finished_from (and the rest) was read for
// 582 requests a minute without end, and counted builds from long before the window. Now the
// builds outside the window are dropped and the listing stops at the first page of nothing else.
func TestIgnoredFiltersStopTheListing(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	from := now.Add(-3 * time.Hour) // 36 builds finished since
	for _, tc := range []struct {
		name   string
		filter string // ignored by the API
		opts   buildkite.ListBuildsOptions
		list   string // "org", "pipeline", "sliced"
		want   int    // builds in the window
		filt   string // the filter the error names
	}{
		{"finished_from, sliced org-wide", "finished_from", buildkite.ListBuildsOptions{FinishedFrom: from}, "sliced", 36, "finished_from"},
		{"finished_from, sliced pipeline", "finished_from", buildkite.ListBuildsOptions{FinishedFrom: from}, "sliced-pipeline", 36, "finished_from"},
		{"finished_from, pipeline pages", "finished_from", buildkite.ListBuildsOptions{FinishedFrom: from}, "pipeline", 36, "finished_from"},
		{"created_from, org pages", "created_from", buildkite.ListBuildsOptions{CreatedFrom: from}, "org", 36, "created_from"},
		{"created_to", "created_to", buildkite.ListBuildsOptions{CreatedTo: now.Add(-59 * 24 * time.Hour)}, "pipeline", 0, "created_to"},
		// The slices' own created_to: the first slice is read, the second starts over at the
		// newest builds, all at or after its created_to.
		{"created_to of the next slice", "created_to", buildkite.ListBuildsOptions{}, "sliced", 1000, "created_to"},
		{"state", "state", buildkite.ListBuildsOptions{States: []string{buildkite.StateRunning, buildkite.StateScheduled}}, "org", 0, "state[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c, logs, reg := ignoringFake(t, now, tc.filter)
			var got []buildkite.Build
			visitPage := func(p []buildkite.Build) error { got = append(got, p...); return nil }
			var err error
			ctx := context.Background()
			switch tc.list {
			case "sliced":
				err = c.ListBuildsSliced(ctx, "acme", "", tc.opts, nil, func(b *buildkite.Build) { got = append(got, *b) })
			case "sliced-pipeline":
				err = c.ListBuildsSliced(ctx, "acme", "shop-deploy", tc.opts, nil, func(b *buildkite.Build) { got = append(got, *b) })
			case "pipeline":
				err = c.ListPipelineBuilds(ctx, "acme", "shop-deploy", tc.opts, visitPage)
			default:
				err = c.ListOrganizationBuilds(ctx, "acme", tc.opts, visitPage)
			}
			var fe *buildkite.FilterIgnoredError
			if !errors.Is(err, buildkite.ErrFilterIgnored) || !errors.As(err, &fe) {
				t.Fatalf("err = %v, want ErrFilterIgnored", err)
			}
			if fe.Filter != tc.filt || !strings.Contains(err.Error(), "--buildkite.api-url") || !strings.Contains(err.Error(), tc.filt+"=") {
				t.Errorf("error %q: want it to name the filter %s and what to check", err, tc.filt)
			}
			reqs := f.Requests()
			// The first page holds the window (at most one page of it here) and the next page
			// nothing of it: two requests (the sliced created_to case reads its first slice of 10
			// pages first).
			maxReqs := 2
			if tc.want >= 1000 {
				maxReqs = buildkite.MaxPagesPerSlice + 1
			}
			if len(reqs) > maxReqs {
				t.Errorf("%d requests, want at most %d", len(reqs), maxReqs)
			}
			if len(got) != tc.want {
				t.Errorf("%d builds visited, want the %d in the window", len(got), tc.want)
			}
			for _, b := range got {
				if tc.opts.FinishedFrom.After(b.FinishedAt.Time) || b.CreatedAt.Before(tc.opts.CreatedFrom) {
					t.Fatalf("build #%d (finished %v) outside the window was visited", b.Number, b.FinishedAt)
				}
			}
			if d := dropped(t, reg, "out_of_window"); d < float64(100-tc.want%100) {
				t.Errorf("dropped_total{what=out_of_window} = %v, want every build read outside the window", d)
			}
			if n := strings.Count(logs.String(), "Dropped parts of a Buildkite answer"); n > len(reqs) {
				t.Errorf("%d drop log lines for %d pages, want at most one a page", n, len(reqs))
			}
		})
	}
}

// TestWindowKeepsWhatTheAPIMeant: the checks must not drop builds a faithful API returns:
// second-truncated bounds, the finished shortcut, blocked builds that keep their state.
func TestWindowKeepsWhatTheAPIMeant(t *testing.T) {
	f := buildkitetest.New(buildkitetest.WithRateLimits(false))
	f.SetToken(token, allScopes...)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) buildkite.Timestamp { return buildkite.Timestamp{Time: t0.Add(d)} }
	f.AddBuild("acme", "shop-deploy", buildkite.Build{Number: 1, State: buildkite.StatePassed, CreatedAt: ts(100 * time.Millisecond), FinishedAt: ts(200 * time.Millisecond)})
	f.AddBuild("acme", "shop-deploy", buildkite.Build{Number: 2, State: buildkite.StatePassed, Blocked: true, CreatedAt: ts(time.Second), FinishedAt: ts(2 * time.Second)})
	f.AddBuild("acme", "shop-deploy", buildkite.Build{Number: 3, State: buildkite.StateCanceled, CreatedAt: ts(3 * time.Second), FinishedAt: ts(4 * time.Second)})
	reg := prometheus.NewPedanticRegistry()
	c := inProcess(t, f, buildkite.Config{Registerer: reg})
	for _, tc := range []struct {
		name string
		opts buildkite.ListBuildsOptions
		want []int
	}{
		// The query sends whole seconds: build 1 is within created_from/finished_from as sent.
		{"fractional bounds", buildkite.ListBuildsOptions{CreatedFrom: t0.Add(500 * time.Millisecond), FinishedFrom: t0.Add(900 * time.Millisecond)}, []int{3, 2, 1}},
		{"created_to", buildkite.ListBuildsOptions{CreatedTo: t0.Add(3*time.Second + 500*time.Millisecond)}, []int{2, 1}},
		{"finished shortcut", buildkite.ListBuildsOptions{States: []string{buildkite.StateFinished}}, []int{3, 2, 1}},
		{"blocked keeps its state", buildkite.ListBuildsOptions{States: []string{buildkite.StateBlocked}}, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			builds, err := collect(t, c, "acme", "shop-deploy", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, b := range builds {
				got = append(got, b.Number)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("builds %v, want %v", got, tc.want)
			}
		})
	}
	if got := dropped(t, reg, "out_of_window"); got != 0 {
		t.Errorf("a faithful API had %v builds dropped", got)
	}
}
