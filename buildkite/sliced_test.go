package buildkite_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

var sliceStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// slicedFake returns a fake without rate limits (a sliced listing of thousands of builds takes
// more requests than a minute's budget) and an in-process client for it that logs into the
// returned buffer, debug included.
func slicedFake(t *testing.T, opts ...buildkitetest.Option) (*buildkitetest.Fake, *buildkite.Client, *testenv.LogBuffer) {
	t.Helper()
	f := buildkitetest.New(append([]buildkitetest.Option{buildkitetest.WithRateLimits(false)}, opts...)...)
	f.SetToken(token, allScopes...)
	logs := &testenv.LogBuffer{}
	return f, inProcess(t, f, buildkite.Config{Logger: log.NewLogfmtLogger(logs)}), logs
}

// listSliced runs ListBuildsSliced and returns the builds visited, in order.
func listSliced(ctx context.Context, c *buildkite.Client, org, pipeline string, opts buildkite.ListBuildsOptions, seen map[string]time.Time) ([]buildkite.Build, error) {
	var out []buildkite.Build
	err := c.ListBuildsSliced(ctx, org, pipeline, opts, seen, func(b *buildkite.Build) { out = append(out, *b) })
	return out, err
}

// numbers returns the build numbers of builds, failing the test when one is visited twice.
func numbers(t *testing.T, builds []buildkite.Build) []int {
	t.Helper()
	ids := map[string]bool{}
	out := make([]int, 0, len(builds))
	for _, b := range builds {
		if ids[b.ID] {
			t.Errorf("build %s#%d visited twice", b.PipelineSlug(), b.Number)
		}
		ids[b.ID] = true
		out = append(out, b.Number)
	}
	return out
}

// countdown returns n, n-1, …, 1.
func countdown(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = n - i
	}
	return out
}

func createdTos(reqs []buildkitetest.Request) []string {
	var out []string
	for _, r := range reqs {
		if v := r.Query.Get("created_to"); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func maxPage(t *testing.T, reqs []buildkitetest.Request) int {
	t.Helper()
	deepest := 0
	for _, r := range reqs {
		p := 1
		if v := r.Query.Get("page"); v != "" {
			var err error
			if p, err = strconv.Atoi(v); err != nil {
				t.Fatalf("page %q: %v", v, err)
			}
		}
		deepest = max(deepest, p)
	}
	return deepest
}

func TestListBuildsSlicedNarrowsPastMaxPages(t *testing.T) {
	f, c, _ := slicedFake(t)
	addMany(f, "acme", "shop-deploy", 2500, sliceStart) // one a minute
	addMany(f, "acme", "infra-deploy", 300, sliceStart.Add(30*time.Second))

	builds, err := listSliced(context.Background(), c, "acme", "shop-deploy",
		buildkite.ListBuildsOptions{Branches: []string{"main"}, PerPage: 30}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(countdown(2500), numbers(t, builds)); diff != "" {
		t.Errorf("builds visited (-want +got):\n%s", diff)
	}
	reqs := f.Requests()
	// 10 pages; again from just above build 1501 (the 1000th read); again from above build 502;
	// then 6 pages to the end.
	if len(reqs) != 26 {
		t.Errorf("%d requests, want 26 (10 + 10 + 6)", len(reqs))
	}
	want := []string{
		sliceStart.Add(1500*time.Minute + time.Second).Format(time.RFC3339),
		sliceStart.Add(501*time.Minute + time.Second).Format(time.RFC3339),
	}
	if diff := cmp.Diff(want, createdTos(reqs)); diff != "" {
		t.Errorf("created_to of the slices (-want +got):\n%s", diff)
	}
	if p := maxPage(t, reqs); p != buildkite.MaxPagesPerSlice {
		t.Errorf("deepest page %d, want %d", p, buildkite.MaxPagesPerSlice)
	}
	for _, r := range reqs {
		if r.Route != buildkitetest.RoutePipelineBuilds || r.Query.Get("per_page") != "100" || r.Query.Get("branch[]") != "main" {
			t.Fatalf("request %s %v: want the pipeline's listing with per_page=100 and the caller's filters", r.Route, r.Query)
		}
	}

	f.ResetRequests()
	builds, err = listSliced(context.Background(), c, "acme", "", buildkite.ListBuildsOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	numbers(t, builds)
	if len(builds) != 2800 {
		t.Errorf("organization-wide: %d builds, want 2800", len(builds))
	}
	for i := 1; i < len(builds); i++ {
		if builds[i].CreatedAt.After(builds[i-1].CreatedAt.Time) {
			t.Fatalf("build %d created after build %d: want newest created first", i, i-1)
		}
	}
	reqs = f.Requests()
	if len(createdTos(reqs)) != 2 || reqs[0].Route != buildkitetest.RouteOrgBuilds {
		t.Errorf("organization-wide: %d slices, first route %s; want 3 slices of the organization's listing", len(createdTos(reqs))+1, reqs[0].Route)
	}
}

func TestListBuildsSlicedRemembersTooDeep(t *testing.T) {
	f, c, logs := slicedFake(t, buildkitetest.WithDeepPageLimit(3))
	addMany(f, "acme", "shop-deploy", 1000, sliceStart)

	builds, err := listSliced(context.Background(), c, "acme", "shop-deploy", buildkite.ListBuildsOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(countdown(1000), numbers(t, builds)); diff != "" {
		t.Errorf("builds visited (-want +got):\n%s", diff)
	}
	reqs := f.Requests()
	refused := 0
	for _, r := range reqs {
		if r.Status == http.StatusBadRequest {
			refused++
		}
	}
	if refused != 1 || maxPage(t, reqs) != 4 {
		t.Errorf("%d refusals, deepest page %d; want page 4 refused once, then slices of 3 pages", refused, maxPage(t, reqs))
	}
	const msg = `msg="The API refused a deep page; narrowing time slices"`
	if got := logs.String(); strings.Count(got, msg) != 1 || !strings.Contains(got, "pages_per_slice=3") {
		t.Errorf("log does not say once that slices narrowed to 3 pages:\n%s", got)
	}

	// A second listing, even of another endpoint, starts at the depth the API allowed.
	f.ResetRequests()
	builds, err = listSliced(context.Background(), c, "acme", "", buildkite.ListBuildsOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(numbers(t, builds)) != 1000 {
		t.Errorf("second listing: %d builds, want 1000", len(builds))
	}
	reqs = f.Requests()
	if s := statuses(reqs); slices.ContainsFunc(s, func(c int) bool { return c != http.StatusOK }) || maxPage(t, reqs) != 3 {
		t.Errorf("second listing: statuses %v, deepest page %d; want no refusal and at most 3 pages a slice", s, maxPage(t, reqs))
	}
	if n := strings.Count(logs.String(), msg); n != 1 {
		t.Errorf("narrowing logged %d times, want once: the depth did not change", n)
	}
}

// slicedBuild is a passed build created at created.
func slicedBuild(number int, created time.Time) buildkite.Build {
	return buildkite.Build{
		Number: number, State: buildkite.StatePassed, Branch: "main",
		CreatedAt: buildkite.Timestamp{Time: created}, FinishedAt: buildkite.Timestamp{Time: created.Add(time.Minute)},
	}
}

func TestListBuildsSlicedBoundarySecondVisitedOnce(t *testing.T) {
	f, c, _ := slicedFake(t)
	// Builds 40–60 share second 50, straddling the end of the first slice (the 1000th newest is
	// build 51): the second slice reads 60–51 again.
	var builds []buildkite.Build
	for n := 1; n <= 1050; n++ {
		created := sliceStart.Add(time.Duration(n) * time.Second)
		if n >= 40 && n <= 60 {
			created = sliceStart.Add(50*time.Second + time.Duration(n-40)*time.Millisecond)
		}
		builds = append(builds, slicedBuild(n, created))
	}
	f.AddBuilds("acme", "shop-deploy", builds)

	seen := map[string]time.Time{}
	got, err := listSliced(context.Background(), c, "acme", "shop-deploy", buildkite.ListBuildsOptions{}, seen)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(countdown(1050), numbers(t, got)); diff != "" {
		t.Errorf("builds visited (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{sliceStart.Add(51 * time.Second).Format(time.RFC3339)}, createdTos(f.Requests())); diff != "" {
		t.Errorf("created_to (-want +got):\n%s", diff)
	}
	// Ids from before the boundary second are dropped once the next slice starts.
	newest, _ := f.Build("acme", "shop-deploy", 1050)
	if _, ok := seen[newest.ID]; ok || len(seen) > 60 {
		t.Errorf("seen keeps %d ids (the newest build's among them: %v); want only the last slice's", len(seen), ok)
	}
}

func TestListBuildsSlicedSkipsSeen(t *testing.T) {
	f, c, _ := slicedFake(t)
	addMany(f, "acme", "shop-deploy", 1500, sliceStart)
	// As if the caller had read the first page already.
	seen := map[string]time.Time{}
	for n := 1401; n <= 1500; n++ {
		b, _ := f.Build("acme", "shop-deploy", n)
		seen[b.ID] = b.CreatedAt.Time
	}
	got, err := listSliced(context.Background(), c, "acme", "shop-deploy", buildkite.ListBuildsOptions{}, seen)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(countdown(1400), numbers(t, got)); diff != "" {
		t.Errorf("builds visited (-want +got):\n%s", diff)
	}
}

func TestListBuildsSlicedSecondTooFull(t *testing.T) {
	for _, tc := range []struct {
		deepPages int
		want      string
	}{
		{0, "more than 1000 builds were created within the second before 2026-01-01T00:00:01Z; cannot narrow the listing further"},
		// The limit in the text is the narrowed one.
		{2, "more than 200 builds were created within the second before 2026-01-01T00:00:01Z; cannot narrow the listing further"},
	} {
		t.Run("deep_page_limit_"+strconv.Itoa(tc.deepPages), func(t *testing.T) {
			f, c, _ := slicedFake(t, buildkitetest.WithDeepPageLimit(tc.deepPages))
			var builds []buildkite.Build
			for n := 1; n <= 1001; n++ {
				builds = append(builds, slicedBuild(n, sliceStart.Add(time.Duration(n)*500*time.Microsecond)))
			}
			f.AddBuilds("acme", "shop-deploy", builds)
			got, err := listSliced(context.Background(), c, "acme", "shop-deploy", buildkite.ListBuildsOptions{}, nil)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			numbers(t, got)
		})
	}
}

func TestListBuildsSlicedStopsWhenCanceled(t *testing.T) {
	for _, tc := range []struct {
		name           string
		cancelAt, want int // cancel while visiting build cancelAt; builds visited
		requests       int32
	}{
		// Mid-slice: the rest of the page is visited; the next page's request fails on the
		// canceled context.
		{"mid_slice", 50, 100, 2},
		// At the end of a slice: the next slice does not start.
		{"between_slices", 1000, 1000, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := buildkitetest.New(buildkitetest.WithRateLimits(false))
			f.SetToken(token, allScopes...)
			addMany(f, "acme", "shop-deploy", 2500, sliceStart)
			// Count the requests attempted, not only those the fake served: a request made with
			// a canceled context fails before it reaches the fake.
			rt := &countingTransport{next: f.Transport()}
			c := newClient(t, buildkite.Config{BaseURL: buildkitetest.InProcessBaseURL, HTTPClient: &http.Client{Transport: rt}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			visited := 0
			err := c.ListBuildsSliced(ctx, "acme", "shop-deploy", buildkite.ListBuildsOptions{}, nil, func(*buildkite.Build) {
				if visited++; visited == tc.cancelAt {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if visited != tc.want {
				t.Errorf("%d builds visited, want %d", visited, tc.want)
			}
			if n := rt.n.Load(); n != tc.requests {
				t.Errorf("%d requests attempted, want %d", n, tc.requests)
			}
		})
	}
}

type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}
