package collector

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// TestExemplarDroppedForLongSlug: a pipeline slug of 120 characters (Buildkite's longest) makes
// a build label too long for OpenMetrics' 128 runes: its observations have no exemplar, the
// drops are counted in buildkite_exporter_exemplars_dropped_total{reason="label_limit"}, and
// the OpenMetrics body stays valid for expfmt's parser (which enforces the limit); a short
// slug next to it keeps its exemplars.
func TestExemplarDroppedForLongSlug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		long := strings.Repeat("l", 110) + "-deploy-pr"
		if len(long) != 120 {
			t.Fatalf("slug of %d characters", len(long))
		}
		now := time.Now()
		f := newFake()
		for i := range 3 {
			f.AddBuild(testOrg, long, finished(now.Add(-time.Duration(i+1)*24*time.Hour), 5*time.Minute, "passed", nil))
			f.AddBuild(testOrg, "shop", finished(now.Add(-time.Duration(i+1)*24*time.Hour), 5*time.Minute, "passed", nil))
		}
		h := start(t, f, []backstage.Component{component("long", long), component("shop", "shop")}, withLog(store.NewMemory()))
		m := h.metrics()
		// One per observation of the long slug's histograms (duration and lead time).
		obs := m[series("buildkite_deployment_duration_seconds_count", "component", "long", "environment", "production", "state", "passed")] +
			m[series("buildkite_deployment_lead_time_seconds_count", "component", "long", "environment", "production")]
		if got := m[series("buildkite_exporter_exemplars_dropped_total", "reason", "label_limit")]; got != obs || obs < 3 {
			t.Errorf("label_limit drops = %v, want %v (one per observation of the long slug)", got, obs)
		}
		if got := m[series("buildkite_exporter_exemplars_dropped_total", "reason", "commit_label")]; got != 0 {
			t.Errorf("commit_label drops = %v, want 0", got)
		}
		// The OpenMetrics body as /metrics serves it.
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
		exposition.NewHandler(h.c.Snapshot, nil, exposition.HandlerOpts{}).ServeHTTP(rec, req)
		body := rec.Body.String()
		if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/openmetrics-text") {
			t.Fatalf("Content-Type %q", rec.Header().Get("Content-Type"))
		}
		if strings.Contains(body, long+"/builds/") {
			t.Errorf("an exemplar of the long slug was served")
		}
		if !strings.Contains(body, `# {build="`+testOrg+`/shop/builds/`) {
			t.Errorf("the short slug's exemplars are missing:\n%s", body)
		}
		dec := expfmt.NewDecoder(strings.NewReader(body), expfmt.FmtOpenMetrics_1_0_0)
		for {
			var mf dto.MetricFamily
			err := dec.Decode(&mf)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the OpenMetrics body does not parse: %v", err)
			}
		}
	})
}
