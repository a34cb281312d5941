package dashboards

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
	"go.yaml.in/yaml/v3"
)

const prometheusBinary = "/usr/bin/prometheus"

// emptyAllowed are panels whose queries may rightly return nothing for the fixture, and why. Every
// other panel query must return at least one series.
var emptyAllowed = map[string]string{
	"component.json / Alerts / A": "ALERTS has series only while an alert is pending or firing",
	"slo.json / SLO alerts / A":   "ALERTS has series only while a burn-rate or budget alert is pending or firing; a burn needs at least 3 deployments in the long window, which a constant fixture never adds",
}

// TestPanelsHaveDataInPrometheus stands in for "import into Grafana and look": Grafana is not
// installable here, so a real Prometheus (Debian's 2.42) scrapes the fixture exposition every
// second and evaluates the bundled rules every second, and every panel, annotation and variable
// query runs through its HTTP API with the variables set as a reader coming from Backstage would
// set them. Each must return at least one series.
func TestPanelsHaveDataInPrometheus(t *testing.T) {
	promBin := testenv.Binary(t, prometheusBinary, "prometheus")
	fixture, err := os.ReadFile(*fixturePath)
	if err != nil {
		t.Fatalf("the exporter's fixture exposition is needed: %v", err)
	}
	loadRules(t) // fails with a clear message when the file is missing

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(fixture)
	}))
	defer exporter.Close()

	dir := t.TempDir()
	writeFastRules(t, filepath.Join(dir, "rules.yml"))
	target := strings.TrimPrefix(exporter.URL, "http://")
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: buildkite_deployments_exporter
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, promBin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	}()
	api := &promAPI{base: "http://" + addr}

	// Wait for a handful of scrapes, so that increase() and rate() have samples to work on.
	for {
		n, err := api.scalar(ctx, `count_over_time(up{job="buildkite_deployments_exporter"}[1m])`)
		if err == nil && n >= 5 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("prometheus did not scrape the fixture 5 times: %v (last error %v)", ctx.Err(), err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if up, err := api.scalar(ctx, `up{job="buildkite_deployments_exporter"}`); err != nil || up != 1 {
		t.Fatalf("the fixture did not scrape cleanly (up=%v, %v); is it valid exposition text?", up, err)
	}

	// The fixture's components with production deployments. No one component has every kind of
	// data (one has a running deployment, another a recovery), so a query passes when it returns
	// series for at least one of them, set as a reader arriving from Backstage would set it.
	components, err := api.labelValues(ctx, `buildkite_deployments_total{environment="production"}`, "component")
	if err != nil || len(components) == 0 {
		t.Fatalf("the fixture has no production deployments to show: %v", err)
	}
	t.Logf("components %v, environment production", components)

	type check struct{ where, expr string }
	var checks []check
	for _, q := range panelQueries(t) {
		checks = append(checks, check(q))
	}
	for _, v := range variableQueries(t) {
		checks = append(checks, check{v.where, fmt.Sprintf("count by (%s) (%s)", v.label, v.expr)})
	}

	// found runs a check for each component and reports the first that has series.
	found := func(c check) (string, bool) {
		for _, comp := range components {
			expr, err := substitute(c.expr, map[string]string{
				"__range": "1h", "__rate_interval": "1m", "__interval": "1m", "__range_s": "3600",
				"component": regexpQuote(comp), "environment": "production", "job": "buildkite_deployments_exporter",
			})
			if err != nil {
				t.Fatalf("%s: %v", c.where, err)
			}
			n, err := api.count(ctx, expr)
			if err != nil {
				t.Errorf("%s: %v\n\tquery: %s", c.where, err, expr)
				return "", true
			}
			if n > 0 {
				return comp, true
			}
		}
		return "", false
	}

	// Rules are evaluated after scrapes; give a query that is empty a few more seconds.
	deadline := time.Now().Add(10 * time.Second)
	pending := checks
	for len(pending) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		var still []check
		for _, c := range pending {
			if comp, ok := found(c); !ok {
				still = append(still, c)
			} else if comp != "" {
				t.Logf("%s: series for component %s", c.where, comp)
			}
		}
		pending = still
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	for _, c := range pending {
		if why, ok := emptyAllowed[c.where]; ok {
			t.Logf("%s: no series (allowed: %s)", c.where, why)
			continue
		}
		t.Errorf("%s: no series for any fixture component in production\n\tquery: %s", c.where, c.expr)
	}
	t.Logf("%d queries checked, %d empty", len(checks), len(pending))
}

// writeFastRules copies the bundled rules with every group evaluated each second, so that the
// recorded series exist after a few seconds instead of after the groups' 1m/5m intervals.
func writeFastRules(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(*rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	groups, _ := file["groups"].([]any)
	for _, g := range groups {
		g.(map[string]any)["interval"] = "1s"
	}
	out, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// regexpQuote escapes a component name as Grafana does for a regex matcher; PromQL string
// escaping doubles the backslash.
func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteString(`\\`)
		}
		b.WriteRune(r)
	}
	return b.String()
}

type promAPI struct{ base string }

type promResult struct {
	Status    string `json:"status"`
	Error     string `json:"error"`
	ErrorType string `json:"errorType"`
	Data      struct {
		ResultType string            `json:"resultType"`
		Result     json.RawMessage   `json:"result"`
		Warnings   []json.RawMessage `json:"warnings"`
	} `json:"data"`
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (a *promAPI) query(ctx context.Context, expr string) (string, json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	var r promResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", nil, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	if r.Status != "success" {
		return "", nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return r.Data.ResultType, r.Data.Result, nil
}

// count is the number of series an expression returns (a scalar counts as one).
func (a *promAPI) count(ctx context.Context, expr string) (int, error) {
	typ, res, err := a.query(ctx, expr)
	if err != nil {
		return 0, err
	}
	if typ == "scalar" || typ == "string" {
		return 1, nil
	}
	var samples []json.RawMessage
	if err := json.Unmarshal(res, &samples); err != nil {
		return 0, err
	}
	return len(samples), nil
}

func (a *promAPI) vector(ctx context.Context, expr string) ([]promSample, error) {
	typ, res, err := a.query(ctx, expr)
	if err != nil {
		return nil, err
	}
	if typ != "vector" {
		return nil, fmt.Errorf("%s returned a %s", expr, typ)
	}
	var out []promSample
	return out, json.Unmarshal(res, &out)
}

// scalar is the value of the first series an expression returns.
func (a *promAPI) scalar(ctx context.Context, expr string) (float64, error) {
	v, err := a.vector(ctx, expr)
	if err != nil {
		return 0, err
	}
	if len(v) == 0 {
		return 0, fmt.Errorf("%s: no series", expr)
	}
	s, _ := v[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// labelValues are the distinct values of a label among an expression's series, in order.
func (a *promAPI) labelValues(ctx context.Context, expr, label string) ([]string, error) {
	v, err := a.vector(ctx, fmt.Sprintf("count by (%s) (%s)", label, expr))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range v {
		if l := s.Metric[label]; l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out, nil
}
