package buildkite

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

func droppedValue(c *Client, what string) float64 {
	return testutil.ToFloat64(c.metrics.dropped.WithLabelValues(what))
}

// buildsJSON renders n builds numbered n down to 1, each made by item(i).
func buildsJSON(n int, item func(i int) string) string {
	parts := make([]string, 0, n)
	for i := n; i >= 1; i-- {
		parts = append(parts, item(i))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestPageKeepsAtMostPerPage(t *testing.T) {
	tiny := 512 << 10
	if raceEnabled {
		tiny = 32 << 10
	}
	for _, tc := range []struct {
		name    string
		perPage int
		items   int
		want    int
	}{
		{"a page of 150 when 100 were asked for", 0, 150, 100},
		{"a page of 40 when 30 were asked for", 30, 40, 30},
		{"512k tiny items", 0, tiny, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := buildsJSON(tc.items, func(i int) string { return fmt.Sprintf(`{"id":"b%d","number":%d}`, i, i) })
			s := &script{answers: []answer{{body: body}}}
			logs := &testenv.LogBuffer{}
			c := newTestClient(t, s, Config{Registerer: newRegistry(), Logger: newLogfmt(logs)})
			var got []int
			err := c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{PerPage: tc.perPage}, func(p []Build) error {
				for _, b := range p {
					got = append(got, b.Number)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// The first per_page items, in the answer's order.
			want := make([]int, tc.want)
			for i := range want {
				want[i] = tc.items - i
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("builds (-want +got):\n%s", diff)
			}
			if d := droppedValue(c, dropBuilds); d != float64(tc.items-tc.want) {
				t.Errorf("dropped_total{what=builds} = %v, want %d", d, tc.items-tc.want)
			}
			if lines := strings.Count(logs.String(), "level=warn"); lines != 1 || !strings.Contains(logs.String(), fmt.Sprintf("builds=%d", tc.items-tc.want)) {
				t.Errorf("%d log lines, want one summary for the page:\n%.2000s", lines, logs.String())
			}
		})
	}
}

func TestMetaDataKeysCapped(t *testing.T) {
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = fmt.Sprintf("app:env%d:deployed", i)
	}
	sorted := slices.Clone(keys)
	sort.Strings(sorted)
	wantKeys := sorted[:MaxMetaDataKeys]
	metaJSON := func(order []string, extra string) string {
		var b strings.Builder
		b.WriteString("{")
		for i, k := range order {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "%q:%q", k, "true")
		}
		b.WriteString(extra + "}")
		return b.String()
	}
	shuffled := slices.Clone(keys)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	reversed := slices.Clone(sorted)
	slices.Reverse(reversed)
	for name, order := range map[string][]string{"as sent": keys, "shuffled": shuffled, "reverse sorted": reversed} {
		t.Run(name, func(t *testing.T) {
			body := buildsJSON(3, func(i int) string { return fmt.Sprintf(`{"id":"b%d","meta_data":%s}`, i, metaJSON(order, "")) })
			s := &script{answers: []answer{{body: body}}}
			logs := &testenv.LogBuffer{}
			c := newTestClient(t, s, Config{Registerer: newRegistry(), Logger: newLogfmt(logs)})
			var builds []Build
			if err := c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{}, func(p []Build) error {
				builds = append(builds, p...)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			for _, b := range builds {
				got := slices.Sorted(func(yield func(string) bool) {
					for k := range b.MetaData {
						if !yield(k) {
							return
						}
					}
				})
				if diff := cmp.Diff(wantKeys, got); diff != "" {
					t.Fatalf("build %s keeps other keys than the %d that sort first (-want +got):\n%s", b.ID, MaxMetaDataKeys, diff)
				}
			}
			if d := droppedValue(c, dropMetaDataKeys); d != float64(3*(5000-MaxMetaDataKeys)) {
				t.Errorf("dropped_total{what=meta_data_keys} = %v, want %d", d, 3*(5000-MaxMetaDataKeys))
			}
			if lines := strings.Count(logs.String(), "level=warn"); lines != 1 {
				t.Errorf("%d log lines for one page, want 1:\n%.2000s", lines, logs.String())
			}
		})
	}
}

func TestMetaDataLongKeysAndValues(t *testing.T) {
	longKey := strings.Repeat("k", MaxMetaDataKeyLen+1)
	// The cut falls inside a three-byte rune: it must not be split.
	longValue := strings.Repeat("v", MaxMetaDataValueLen-1) + "€" + "tail"
	body := fmt.Sprintf(`{"id":"b1","meta_data":{"environment":"production","%s":"x","version":%q,"environment":"staging"}}`, longKey, longValue)
	s := &script{answers: []answer{{body: body}}}
	c := newTestClient(t, s, Config{Registerer: newRegistry()})
	b, err := c.GetBuild(context.Background(), "acme", "p", 1, GetBuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"environment": "staging", "version": strings.Repeat("v", MaxMetaDataValueLen-1)}
	if diff := cmp.Diff(want, b.MetaData); diff != "" {
		t.Errorf("meta_data (-want +got):\n%s", diff)
	}
	if droppedValue(c, dropMetaDataKeys) != 1 || droppedValue(c, dropMetaDataValues) != 1 {
		t.Errorf("dropped keys %v, cut values %v; want 1 and 1", droppedValue(c, dropMetaDataKeys), droppedValue(c, dropMetaDataValues))
	}
}

func TestJobsCapped(t *testing.T) {
	jobs := make([]string, 1500)
	for i := range jobs {
		jobs[i] = fmt.Sprintf(`{"id":"j%d","type":"script","state":"passed"}`, i)
	}
	body := `{"id":"b1","jobs":[` + strings.Join(jobs, ",") + `]}`
	s := &script{answers: []answer{{body: body}, {body: "[" + body + "]"}}}
	c := newTestClient(t, s, Config{Registerer: newRegistry()})
	b, err := c.GetBuild(context.Background(), "acme", "p", 1, GetBuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Jobs) != MaxJobsPerBuild || b.Jobs[0].ID != "j0" || b.Jobs[MaxJobsPerBuild-1].ID != "j999" {
		t.Errorf("%d jobs (first %s), want the first %d", len(b.Jobs), b.Jobs[0].ID, MaxJobsPerBuild)
	}
	if err := listOrg(c); err != nil {
		t.Fatal(err)
	}
	if d := droppedValue(c, dropJobs); d != 1000 {
		t.Errorf("dropped_total{what=jobs} = %v, want 1000 (500 of each answer)", d)
	}
}

func TestBuildUnmarshalJSONKeepsPlainSemantics(t *testing.T) {
	for _, tc := range []struct {
		in                 string
		nilMeta, nilJobs   bool
		metaLen, jobsLen   int
		unchangedOnNullish bool
	}{
		{in: `{"id":"b"}`, nilMeta: true, nilJobs: true},
		{in: `{"id":"b","meta_data":null,"jobs":null}`, nilMeta: true, nilJobs: true},
		{in: `{"id":"b","meta_data":{},"jobs":[]}`},
		{in: `{"id":"b","meta_data":{"a":"1"},"jobs":[{"id":"j"}]}`, metaLen: 1, jobsLen: 1},
	} {
		var b Build
		if err := json.Unmarshal([]byte(tc.in), &b); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if (b.MetaData == nil) != tc.nilMeta || (b.Jobs == nil) != tc.nilJobs || len(b.MetaData) != tc.metaLen || len(b.Jobs) != tc.jobsLen || b.ID != "b" {
			t.Errorf("%s: meta_data %#v, jobs %#v", tc.in, b.MetaData, b.Jobs)
		}
	}
	b := Build{ID: "kept"}
	if err := json.Unmarshal([]byte(`null`), &b); err != nil || b.ID != "kept" {
		t.Errorf("null: %v, %+v; want no change, as for a plain struct", err, b)
	}
	// A build decoded outside the client, e.g. a webhook payload, is bounded too.
	var many strings.Builder
	many.WriteString(`{"id":"b","meta_data":{`)
	for i := range 1000 {
		if i > 0 {
			many.WriteString(",")
		}
		fmt.Fprintf(&many, `"k%04d":"v"`, i)
	}
	many.WriteString("}}")
	if err := json.Unmarshal([]byte(many.String()), &b); err != nil || len(b.MetaData) != MaxMetaDataKeys {
		t.Errorf("webhook-style decode: %v, %d keys; want %d", err, len(b.MetaData), MaxMetaDataKeys)
	}
	// Round trip: what the client decodes it can encode and decode again unchanged.
	orig := Build{ID: "r", Number: 3, MetaData: map[string]string{"environment": "production"}, Jobs: []Job{{ID: "j", Type: JobTypeScript}}}
	raw, _ := json.Marshal(orig)
	var back Build
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(orig, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestDroppedCounterExistsFromTheStart(t *testing.T) {
	reg := newRegistry()
	newTestClient(t, &script{answers: []answer{{}}}, Config{Registerer: reg})
	if n, err := testutil.GatherAndCount(reg, "buildkite_exporter_api_dropped_total"); err != nil || n != len(dropKinds) {
		t.Errorf("%d series (%v), want one per what (%d) before any drop", n, err, len(dropKinds))
	}
	problems, err := testutil.GatherAndLint(reg, "buildkite_exporter_api_dropped_total")
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

func TestNothingDroppedNothingLogged(t *testing.T) {
	body := buildsJSON(3, func(i int) string {
		return fmt.Sprintf(`{"id":"b%d","slug":"p%d","meta_data":{"a":"b"},"jobs":[]}`, i, i)
	})
	s := &script{answers: []answer{{body: body}}}
	logs := &testenv.LogBuffer{}
	c := newTestClient(t, s, Config{Logger: newLogfmt(logs)})
	ctx := context.Background()
	if err := listOrg(c); err != nil {
		t.Fatal(err)
	}
	if err := c.ListPipelines(ctx, "acme", func([]Pipeline) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=warn") {
		t.Errorf("warnings for answers within every limit:\n%s", logs.String())
	}
}
