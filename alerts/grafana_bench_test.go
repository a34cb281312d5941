package alerts

import (
	"fmt"
	"testing"
)

// BenchmarkGrafana1000 renders the rules of 1,000 components and reports what Grafana is asked
// to evaluate: rules, and Prometheus queries per minute (one per rule and evaluation interval).
func BenchmarkGrafana1000(b *testing.B) {
	comps := make([]GrafanaComponent, 1000)
	for i := range comps {
		comps[i] = GrafanaComponent{Label: fmt.Sprintf("component-%04d", i), Owner: fmt.Sprintf("team-%02d", i%40)}
	}
	opts := GrafanaOptions{DatasourceUID: "prometheus"}
	var size int
	for b.Loop() {
		out, err := RenderGrafana(DefaultParams(), opts, comps)
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	f, err := Grafana(DefaultParams(), opts, comps)
	if err != nil {
		b.Fatal(err)
	}
	rules := 0
	for _, g := range f.Groups {
		rules += len(g.Rules)
	}
	b.ReportMetric(float64(rules), "rules")
	b.ReportMetric(QueriesPerMinute(f), "queries/min")
	b.ReportMetric(float64(size), "file-bytes")
}
