package main

// These tests run the real binary, as a user would: against the fake Buildkite API over HTTP, with
// catalog-info.yaml files on disk and a token in a file. TestExposition also keeps
// testdata/exposition.prom, the binary's whole /metrics for the fixture organization, which the
// dashboard tests read so that no panel can query a metric or label the binary does not expose.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.etcd.io/bbolt"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

var update = flag.Bool("update", false, "rewrite testdata/exposition.prom from the binary's /metrics")

// binary is the exporter built once for all tests of this file.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "exporter-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, exporterName)
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the exporter:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// exporter is a running exporter process.
type exporter struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan error
}

func (e *exporter) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stderr.Write(p)
}

func (e *exporter) log() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stderr.String()
}

// startExporter runs the binary with args plus a free listen address; it is killed at cleanup.
func startExporter(t *testing.T, env []string, args ...string) *exporter {
	t.Helper()
	addr := testenv.FreeAddr(t)
	e := &exporter{t: t, url: "http://" + addr, exited: make(chan error, 1)}
	e.cmd = exec.Command(binary, append(args, "--web.listen-address="+addr)...)
	e.cmd.Env = append(os.Environ(), env...)
	e.cmd.Stderr = e
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.exited <- e.cmd.Wait() }()
	t.Cleanup(func() {
		_ = e.cmd.Process.Kill()
		<-e.exited
		if t.Failed() {
			t.Logf("exporter log:\n%s", e.log())
		}
	})
	return e
}

// get returns the status and body of a GET on the exporter.
func (e *exporter) get(path string) (int, string) {
	resp, err := http.Get(e.url + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls until cond holds or the deadline passes.
func (e *exporter) waitFor(what string, d time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case err := <-e.exited:
			e.t.Fatalf("exporter exited (%v) while waiting for %s", err, what)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fixtureOrg serves the fixture organization over HTTP and writes its token and catalog into a
// temporary directory, which it returns with the API URL.
func fixtureOrg(t *testing.T, scopes ...string) (dir, apiURL string) {
	t.Helper()
	f := buildkitetest.New()
	components := fixture.Populate(f, time.Now())
	if len(scopes) > 0 {
		f.SetToken(fixture.Token, scopes...)
	}
	apiURL = f.Start()
	t.Cleanup(f.Close)
	dir = t.TempDir()
	if err := fixture.WriteFiles(dir, components); err != nil {
		t.Fatal(err)
	}
	return dir, apiURL
}

func fixtureArgs(dir, apiURL string, extra ...string) []string {
	return append([]string{
		"--buildkite.api-url=" + apiURL,
		"--buildkite.token-file=" + filepath.Join(dir, "token"),
		"--catalog.file=" + filepath.Join(dir, "catalog"),
		"--storage.path=" + filepath.Join(dir, "data"),
		"--poll.interval=1h", // one poll: the exposition is taken after the first
		"--web.disable-exporter-metrics",
	}, extra...)
}

func parseExposition(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics is not valid exposition text: %v", err)
	}
	return mfs
}

// volatileLabels change from build to build or run to run; the golden comparison keeps their
// names but not their values.
var volatileLabels = map[string]bool{"version": true, "revision": true, "branch": true, "goversion": true,
	"goos": true, "goarch": true, "tags": true}

// seriesSet reduces an exposition to "name{label=value,...}" lines without sample values.
func seriesSet(mfs map[string]*dto.MetricFamily) []string {
	var out []string
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				v := l.GetValue()
				if volatileLabels[l.GetName()] {
					v = "*"
				}
				labels = append(labels, l.GetName()+"="+v)
			}
			sort.Strings(labels)
			out = append(out, fmt.Sprintf("%s %s{%s}", mf.GetType(), name, strings.Join(labels, ",")))
		}
	}
	sort.Strings(out)
	return out
}

// contract lists every metric DESIGN.md's metric contract names.
var contract = []string{
	"buildkite_component_info", "buildkite_deployments_total", "buildkite_deployment_duration_seconds",
	"buildkite_deployment_lead_time_seconds", "buildkite_deployment_recovery_seconds",
	"buildkite_deployment_approval_wait_seconds", "buildkite_deployment_last_finished_timestamp_seconds",
	"buildkite_deployment_failing", "buildkite_deployment_info", "buildkite_deployments_running",
	"buildkite_deployments_awaiting_approval", "buildkite_deployment_slo_objective_ratio",
	"buildkite_deployment_last_build_number", "buildkite_up", "buildkite_exporter_last_successful_poll_timestamp_seconds",
	"buildkite_exporter_api_requests_total", "buildkite_exporter_api_rate_limit_remaining",
	"buildkite_exporter_api_rate_limit_limit", "buildkite_exporter_catalog_components",
	"buildkite_exporter_catalog_errors", "buildkite_exporter_build_info",
	// v1.1 additions (the webhook metrics exist only with --webhook.listen-address: see
	// main_webhook_test.go).
	"buildkite_exporter_pipeline_errors", "buildkite_exporter_backfill_remaining_requests",
	"buildkite_exporter_config_last_reload_successful", "buildkite_exporter_config_last_reload_success_timestamp_seconds",
	"buildkite_exporter_exemplars_dropped_total",
}

func TestExposition(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	e := startExporter(t, nil, fixtureArgs(dir, apiURL)...)
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })

	code, body := e.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	mfs := parseExposition(t, body)
	for _, name := range contract {
		if mfs[name] == nil {
			t.Errorf("contract metric %s is missing from /metrics", name)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if got := mfs["buildkite_up"].GetMetric()[0].GetGauge().GetValue(); got != 1 {
		t.Errorf("buildkite_up = %v after a successful poll", got)
	}
	// The fixture's sandbox pipeline has production builds but no component: never counted.
	if strings.Contains(body, "sandbox") {
		t.Error("a pipeline no component names shows up in /metrics")
	}
	if strings.Contains(body, fixture.Token) || strings.Contains(e.log(), fixture.Token) {
		t.Error("the API token appears in /metrics or the log")
	}

	// The landing page shows only links that work.
	code, landing := e.get("/")
	if code != 200 {
		t.Fatalf("/: %d", code)
	}
	links := regexp.MustCompile(`href="([^"]+)"`).FindAllStringSubmatch(landing, -1)
	if len(links) < 3 {
		t.Errorf("the landing page has %d links, want at least metrics, health and readiness", len(links))
	}
	for _, l := range links {
		if strings.HasPrefix(l[1], "http") {
			continue // outside links (none are expected)
		}
		if code, _ := e.get("/" + strings.TrimPrefix(l[1], "/")); code != 200 {
			t.Errorf("landing page link %s answers %d", l[1], code)
		}
	}

	// Badges render the same snapshot: namespaced components too; an unknown one is a 404.
	for path, want := range map[string]int{
		"/badges/api/production.svg": 200, "/badges/frontend/web/production.svg": 200, "/badges/nope/production.svg": 404,
	} {
		code, body := e.get(path)
		if code != want || (want == 200 && !strings.Contains(body, "<svg ")) {
			t.Errorf("%s: %d, want %d\n%.300s", path, code, want, body)
		}
	}

	golden := filepath.Join("testdata", "exposition.prom")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestExposition -update . to create it)", err)
	}
	if diff := cmp.Diff(seriesSet(parseExposition(t, string(want))), seriesSet(mfs)); diff != "" {
		t.Errorf("the binary's series differ from %s (-golden +binary); if intended, run go test -run TestExposition -update . and check the dashboards:\n%s", golden, diff)
	}
}

// TestExpositionFormats scrapes the binary as Prometheus 2.42 and 3.x do, and as a scraper
// without Accept: each gets its negotiated format (protobuf, OpenMetrics 1.0.0, text 0.0.4),
// gzipped when asked, with the same series as the text golden; the deployment series carry the
// same values in every format.
func TestExpositionFormats(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	e := startExporter(t, nil, fixtureArgs(dir, apiURL)...)
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })
	want, err := os.ReadFile(filepath.Join("testdata", "exposition.prom"))
	if err != nil {
		t.Fatal(err)
	}
	wantSeries := seriesSet(parseExposition(t, string(want)))
	var deployments map[string]float64
	for _, c := range []struct {
		name, accept string
		gzip         bool
		format       expfmt.FormatType
	}{
		{"prometheus 3 (protobuf first)", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,application/openmetrics-text;version=0.0.1;q=0.3,text/plain;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.1,*/*;q=0.05", true, expfmt.TypeProtoDelim},
		{"prometheus 2.42", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", true, expfmt.TypeOpenMetrics},
		{"curl", "", false, expfmt.TypeTextPlain},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.url+"/metrics", nil)
		if c.accept != "" {
			req.Header.Set("Accept", c.accept)
		}
		// Set Accept-Encoding ourselves so that the transport does not decompress silently.
		if c.gzip {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := io.Reader(resp.Body)
		if c.gzip {
			if resp.Header.Get("Content-Encoding") != "gzip" {
				t.Errorf("%s: Content-Encoding %q, want gzip", c.name, resp.Header.Get("Content-Encoding"))
			}
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: reading: %v", c.name, err)
		}
		format := expfmt.Format(resp.Header.Get("Content-Type"))
		if format.FormatType() != c.format {
			t.Errorf("%s: Content-Type %q, want %v", c.name, format, c.format)
			continue
		}
		mfs := map[string]*dto.MetricFamily{}
		dec := expfmt.NewDecoder(bytes.NewReader(raw), format)
		for {
			mf := &dto.MetricFamily{}
			if err := dec.Decode(mf); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: decoding %s: %v", c.name, format, err)
			}
			if mfs[mf.GetName()] != nil {
				t.Errorf("%s: family %s appears twice", c.name, mf.GetName())
			}
			mfs[mf.GetName()] = mf
		}
		if c.format == expfmt.TypeOpenMetrics && bytes.Count(raw, []byte("# EOF")) != 1 {
			t.Errorf("%s: %d '# EOF' lines, want exactly one, at the end", c.name, bytes.Count(raw, []byte("# EOF")))
		}
		if diff := cmp.Diff(wantSeries, seriesSet(mfs)); diff != "" {
			t.Errorf("%s: series differ from the text golden (-golden +served):\n%s", c.name, diff)
		}
		got := deploymentValues(mfs)
		if deployments == nil {
			deployments = got
		} else if diff := cmp.Diff(deployments, got); diff != "" {
			t.Errorf("%s: deployment values differ from the first format's (-first +this):\n%s", c.name, diff)
		}
	}
}

// deploymentValues are the sample values of the deployment families, by series.
func deploymentValues(mfs map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, "buildkite_deployment") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetHistogram() != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
				out[key+"_sum"] = m.GetHistogram().GetSampleSum()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			default:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestVersionAndHelp(t *testing.T) {
	out, err := exec.Command(binary, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), exporterName+", version") || !strings.Contains(string(out), "go version:") {
		t.Errorf("--version: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, fl := range []string{"--web.listen-address", "--web.config.file", "--web.telemetry-path", "--buildkite.api-url",
		"--buildkite.token-file", "--buildkite.requests-per-minute", "--catalog.file", "--catalog.backstage-url",
		"--catalog.backstage-token-file", "--catalog.refresh-interval", "--config.file", "--poll.interval",
		"--history.backfill", "--storage.path", "--storage.retention", "--log.level", "--log.format"} {
		if !strings.Contains(string(out), fl) {
			t.Errorf("--help does not list %s", fl)
		}
	}
	if strings.Contains(string(out), "--buildkite.token=") {
		t.Error("a flag takes the token as a plain value")
	}
}

func TestNoTokenExitsWithGuidance(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	cmd := exec.Command(binary, "--buildkite.api-url="+apiURL, "--catalog.file="+filepath.Join(dir, "catalog"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+testenv.FreeAddr(t))
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "BUILDKITE_API_TOKEN=") })
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v\n%s", err, out)
	}
	for _, want := range []string{"BUILDKITE_API_TOKEN", "--buildkite.token-file", "read_builds"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not mention %s:\n%s", want, out)
		}
	}
}

func TestTokenWithoutScopeStaysNotReady(t *testing.T) {
	dir, apiURL := fixtureOrg(t, "read_pipelines")
	// The token comes from the environment here, the other supported way.
	e := startExporter(t, []string{"BUILDKITE_API_TOKEN=" + fixture.Token}, slices.DeleteFunc(fixtureArgs(dir, apiURL, "--log.level=debug"),
		func(a string) bool { return strings.HasPrefix(a, "--buildkite.token-file") })...)
	e.waitFor("the missing scope to be reported", 30*time.Second, func() bool {
		_, body := e.get("/metrics")
		return strings.Contains(body, `buildkite_exporter_token_missing_scopes{scope="read_builds"} 1`)
	})
	if code, _ := e.get("/-/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready = %d with a token lacking read_builds", code)
	}
	if code, _ := e.get("/-/healthy"); code != 200 {
		t.Errorf("/-/healthy = %d; the process must keep serving", code)
	}
	if !strings.Contains(e.log(), "read_builds") {
		t.Errorf("the log does not name the missing scope:\n%s", e.log())
	}
	_, body := e.get("/metrics")
	if strings.Contains(e.log(), fixture.Token) || strings.Contains(body, fixture.Token) {
		t.Error("the token appears in the log or /metrics")
	}
}

// runCheck runs the binary's check command with the fixture's catalog, API and token plus args;
// it returns stdout, stderr and the exit status.
func runCheck(t *testing.T, dir, apiURL string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	all := append([]string{"check", "--catalog.file=" + filepath.Join(dir, "catalog"), "--buildkite.api-url=" + apiURL,
		"--buildkite.token-file=" + filepath.Join(dir, "token"), "--buildkite.requests-per-minute=6000",
		"--grafana.url=https://grafana.acme.test"}, args...)
	cmd := exec.Command(binary, all...)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "BUILDKITE_API_TOKEN=") }), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	if strings.Contains(out.String()+errOut.String(), fixture.Token) {
		t.Error("check printed the token")
	}
	return out.String(), errOut.String(), code
}

func TestCheckCommand(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	out, stderr, code := runCheck(t, dir, apiURL, nil)
	// The fixture's api, worker pipelines set no environment meta-data: warnings, exit 0.
	if code != 0 || !strings.Contains(out, "OK with 3 warnings") || !strings.Contains(out, "4 components") {
		t.Errorf("check of the fixture: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"SEVERITY", "ok        token", "acme/worker", "fix: set it in the deploy step"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	writeComponent(t, dir, "broken", "Acme/My Pipeline", "team-x", "production")
	out, _, code = runCheck(t, dir, apiURL, nil)
	if code != 1 {
		t.Fatalf("check with a broken entity: want exit 1, got %d\n%s", code, out)
	}
	if !strings.Contains(out, "broken.yaml") || !strings.Contains(out, "invalid_annotation") {
		t.Errorf("check does not name the file and the reason:\n%s", out)
	}
	if !strings.Contains(out, "4 components") || !strings.Contains(out, "ok        pipeline") {
		t.Errorf("a broken entity hid the valid ones:\n%s", out)
	}
}

// check reports each missing scope as an error, and no scope the token has.
func TestCheckCommandMissingScope(t *testing.T) {
	dir, apiURL := fixtureOrg(t, "read_pipelines")
	out, _, code := runCheck(t, dir, apiURL, nil)
	if code != 1 {
		t.Fatalf("check with a scope missing: want exit 1, got %d\n%s", code, out)
	}
	if !strings.Contains(out, "lacks the read_builds scope") || !strings.Contains(out, "the token lacks read_builds") {
		t.Errorf("check does not name the missing scope and what it left out:\n%s", out)
	}
	if strings.Contains(out, "lacks the read_pipelines scope") {
		t.Errorf("check reports a scope the token has:\n%s", out)
	}
}

// No token is an error, as serve refuses to start without one; from the environment it works.
func TestCheckCommandToken(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	args := []string{"check", "--catalog.file=" + filepath.Join(dir, "catalog"), "--buildkite.api-url=" + apiURL, "--buildkite.requests-per-minute=6000"}
	cmd := exec.Command(binary, args...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "BUILDKITE_API_TOKEN=") })
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "no Buildkite API token") {
		t.Errorf("check without a token: %v\n%s", err, out)
	}
	cmd = exec.Command(binary, args...)
	cmd.Env = append(cmd.Env, "BUILDKITE_API_TOKEN="+fixture.Token)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("check with the token in $BUILDKITE_API_TOKEN: %v\n%s", err, out)
	}
}

// --output=json is the documented schema; a typo'd pipeline is an error with a suggestion.
func TestCheckCommandJSON(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	writeComponent(t, dir, "typo", "acme/wroker", "team-x", "production")
	out, stderr, code := runCheck(t, dir, apiURL, nil, "--output=json")
	if code != 1 {
		t.Errorf("exit %d with a missing pipeline\n%s", code, stderr)
	}
	var doc struct {
		SchemaVersion int `json:"schema_version"`
		Findings      []struct{ Severity, Check, Subject, Message, Fix string }
		NotChecked    []struct{ Check, Subject, Reason string } `json:"not_checked"`
		Summary       struct {
			Errors      int `json:"errors"`
			APIRequests int `json:"api_requests"`
			MaxRequests int `json:"max_requests"`
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--output=json is not JSON: %v\n%s", err, out)
	}
	if doc.SchemaVersion != 1 || doc.Summary.Errors != 1 || doc.Summary.MaxRequests != 50 || doc.Summary.APIRequests != 3 {
		t.Errorf("schema %d, summary %+v", doc.SchemaVersion, doc.Summary)
	}
	i := slices.IndexFunc(doc.Findings, func(f struct{ Severity, Check, Subject, Message, Fix string }) bool {
		return f.Severity == "error" && f.Check == "pipeline" && f.Subject == "acme/wroker"
	})
	if i < 0 || !strings.Contains(doc.Findings[i].Fix, "did you mean acme/worker?") {
		t.Errorf("no error for acme/wroker suggesting acme/worker:\n%s", out)
	}
}

// Every --config.file and --web.config.file problem is an error; --offline asks the API nothing
// and says so; the request cap is a flag.
func TestCheckCommandFilesOfflineAndCap(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte("default_enviroment: prod\nslos:\n  window: soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webCfg, []byte("basic_auth_users:\n  alice: secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An API nothing listens on: offline must not need it.
	out, stderr, code := runCheck(t, dir, "http://127.0.0.1:1/v2/", nil, "--offline", "--config.file="+cfg, "--web.config.file="+webCfg)
	if code != 1 {
		t.Errorf("exit %d with bad files\n%s%s", code, out, stderr)
	}
	for _, want := range []string{
		cfg + ":1", `default_enviroment: unknown key (did you mean "default_environment"?)`,
		cfg + ":3", `slos.window: "soon" is not a duration`,
		"web_config", "htpasswd",
		"--offline: the Buildkite API was not asked", "offline: the Buildkite API was not asked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "config.Config") || strings.Contains(out, "unmarshal") {
		t.Errorf("check output speaks Go:\n%s", out)
	}
	out, _, code = runCheck(t, dir, apiURL, nil, "--offline")
	if code != 0 {
		t.Errorf("offline check of the fixture: exit %d\n%s", code, out)
	}

	out, _, code = runCheck(t, dir, apiURL, nil, "--check.max-requests=1")
	if code != 0 || !strings.Contains(out, "request cap of 1 reached") || !strings.Contains(out, "1 Buildkite API requests (at most 1)") {
		t.Errorf("check with a cap of 1: exit %d\n%s", code, out)
	}
}

// The backstage command names every skipped entity and the placeholder Grafana URL on stderr.
func TestBackstageCommandWarns(t *testing.T) {
	dir, _ := fixtureOrg(t)
	writeComponent(t, dir, "broken", "Acme/My Pipeline", "team-x", "production")
	cmd := exec.Command(binary, "backstage", "--catalog.file="+filepath.Join(dir, "catalog"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("backstage with a skipped entity: want exit 1, got %v", err)
	}
	for _, want := range []string{"skipped: ", "broken.yaml", "invalid_annotation", "--grafana.url is the placeholder"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if !strings.Contains(stdout.String(), "component:default/shop") || strings.Contains(stdout.String(), "broken") {
		t.Errorf("stdout should hold the valid components only:\n%s", stdout.String())
	}

	os.Remove(filepath.Join(dir, "catalog", "broken.yaml"))
	cmd = exec.Command(binary, "backstage", "--catalog.file="+filepath.Join(dir, "catalog"), "--grafana.url=https://grafana.acme.test", "--badges.url=https://badges.acme.test")
	stdout.Reset()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() != 0 {
		t.Errorf("backstage of a clean catalog: %v, stderr %q", err, stderr.String())
	}
	for _, want := range []string{"grafana/alert-label-selector: component=shop", "![shop production](https://badges.acme.test/badges/shop/production.svg)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("backstage output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// The grafana-alerts command: the thresholds of --config.file, the catalog's components, the
// selectors, and a clear refusal without the data source uid.
func TestGrafanaAlertsCommand(t *testing.T) {
	dir, _ := fixtureOrg(t)
	catalog := "--catalog.file=" + filepath.Join(dir, "catalog")
	cfg := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte("alerts:\n  stuck_after: 3h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(binary, append([]string{"grafana-alerts", catalog}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), code
	}
	out, stderr, code := run("--grafana.datasource-uid=prom", "--config.file="+cfg)
	if code != 0 || !strings.Contains(out, "> 10800") || !strings.Contains(out, "title: BuildkiteDeploymentFailing shop") ||
		!strings.Contains(out, "component: frontend/web") || strings.Count(out, "uid: prom\n") == 0 {
		t.Errorf("grafana-alerts: exit %d, stderr %q\n%.2000s", code, stderr, out)
	}
	out, _, code = run("--grafana.datasource-uid=prom", "--component=shop")
	if code != 0 || strings.Count(out, "title: ") != 5 || strings.Contains(out, "component: api") {
		t.Errorf("--component=shop: exit %d, %d rules\n%.2000s", code, strings.Count(out, "title: "), out)
	}
	_, stderr, code = run("--grafana.datasource-uid=prom", "--owner=nobody")
	if code != 1 || !strings.Contains(stderr, "--owner=nobody matches no component") {
		t.Errorf("--owner=nobody: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = run()
	if code != 2 || !strings.Contains(stderr, "--grafana.datasource-uid") {
		t.Errorf("without a data source uid: exit %d, stderr %q", code, stderr)
	}
}

func TestRulesCommand(t *testing.T) {
	out, err := exec.Command(binary, "rules").Output()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join("alerts", "buildkite-deployments.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(committed), string(out)); diff != "" {
		t.Errorf("rules with the default configuration differ from the committed rule file:\n%s", diff)
	}

	cfg := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte("alerts:\n  stuck_after: 3h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	custom, err := exec.Command(binary, "rules", "--config.file="+cfg).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(custom) == string(out) || !strings.Contains(string(custom), "10800") && !strings.Contains(string(custom), "3h") {
		t.Errorf("alerts.stuck_after: 3h did not change the rules")
	}

	if err := os.WriteFile(cfg, []byte("alerts:\n  stuck_afterr: 3h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	msg, err := exec.Command(binary, "rules", "--config.file="+cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "stuck_afterr") {
		t.Errorf("an unknown config key must fail and be named: %v\n%s", err, msg)
	}
}

// SIGTERM and SIGINT stop the exporter cleanly: status 0, within the shutdown timeout.
func TestGracefulShutdown(t *testing.T) {
	for name, sig := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT} {
		t.Run(name, func(t *testing.T) {
			dir, apiURL := fixtureOrg(t)
			e := startExporter(t, nil, fixtureArgs(dir, apiURL)...)
			e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })
			if err := e.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := e.wait(15 * time.Second); err != nil {
				t.Errorf("exit after %v: %v", sig, err)
			}
			if !strings.Contains(e.log(), "Shutting down") {
				t.Errorf("no shutdown line in the log:\n%s", e.log())
			}
		})
	}
}

// wait returns the exit error of the process, failing the test if it has not exited within d.
func (e *exporter) wait(d time.Duration) error {
	e.t.Helper()
	select {
	case err := <-e.exited:
		e.exited <- err // for the cleanup
		return err
	case <-time.After(d):
		e.t.Fatalf("no exit within %v", d)
		return nil
	}
}

// A deployment log the collector cannot read at start stops the whole process with status 1,
// rather than leaving it serving /metrics without its history.
func TestCollectorFailureExits1(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	data := filepath.Join(dir, "data")
	db, err := store.OpenBolt(data, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A watermark that is not JSON (layout in store/README.md): the store opens, the collector's
	// first read of it fails.
	raw, err := bbolt.Open(filepath.Join(data, "deployments.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("watermarks")).Put([]byte(fixture.Org), []byte("not json"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	e := startExporter(t, nil, fixtureArgs(dir, apiURL)...)
	err = e.wait(30 * time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("want exit status 1 after the collector failed, got %v", err)
	}
	if !strings.Contains(e.log(), "Collector stopped") || !strings.Contains(e.log(), "watermark") {
		t.Errorf("the log does not say the collector stopped and why:\n%s", e.log())
	}
}

// The README points users at examples/config.yml: it must load, and its overrides must apply.
func TestExampleConfig(t *testing.T) {
	cfg, err := config.Load(filepath.Join("examples", "config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.ObjectivesFor("shop", "team-shop", "production")[config.SLOSuccess]; got != 0.99 {
		t.Errorf("shop's production success objective = %v, want the override 0.99", got)
	}
	if got := cfg.NormalizeEnvironment("uat"); got != config.Staging {
		t.Errorf("alias uat -> %q, want staging", got)
	}
}

// liveOrg is the fixture organization without the fake's rate limits, for tests that poll every
// second; it returns the fake so the test can keep adding builds.
func liveOrg(t *testing.T) (f *buildkitetest.Fake, dir, apiURL string) {
	t.Helper()
	f = buildkitetest.New(buildkitetest.WithRateLimits(false))
	components := fixture.Populate(f, time.Now())
	apiURL = f.Start()
	t.Cleanup(f.Close)
	dir = t.TempDir()
	if err := fixture.WriteFiles(dir, components); err != nil {
		t.Fatal(err)
	}
	return f, dir, apiURL
}

func liveArgs(dir, apiURL string) []string {
	args := fixtureArgs(dir, apiURL, "--buildkite.requests-per-minute=6000")
	for i, a := range args {
		if strings.HasPrefix(a, "--poll.interval=") {
			args[i] = "--poll.interval=1s"
		}
	}
	return args
}

// sample returns the value of the series of name whose labels include want, or -1 when absent.
func sample(t *testing.T, body, name string, want map[string]string) float64 {
	t.Helper()
	mf := parseExposition(t, body)[name]
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestLiveDeployments follows builds as they start, finish, re-open after a retry, finish again
// and wait on and pass an approval, as a user watching /metrics would see them.
func TestLiveDeployments(t *testing.T) {
	f, dir, apiURL := liveOrg(t)
	e := startExporter(t, nil, liveArgs(dir, apiURL)...)
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })

	worker := map[string]string{"component": "worker", "environment": "production"}
	total := func(state string) map[string]string {
		return map[string]string{"component": "worker", "environment": "production", "pipeline": fixture.Org + "/" + fixture.PipelineWorker, "state": state}
	}
	until := func(what string, cond func(body string) bool) {
		t.Helper()
		e.waitFor(what, 20*time.Second, func() bool { _, body := e.get("/metrics"); return cond(body) })
	}
	_, body := e.get("/metrics")
	passed0, failed0 := sample(t, body, "buildkite_deployments_total", total("passed")), sample(t, body, "buildkite_deployments_total", total("failed"))
	running0 := sample(t, body, "buildkite_deployments_running", worker)
	if running0 < 0 || passed0 < 0 {
		t.Fatal("/-/ready said ready but /metrics has no series of the fixture's worker: ready before the first poll of the catalog's organization")
	}

	// A deployment starts: running goes up, nothing is counted yet.
	now := time.Now()
	b := f.AddBuild(fixture.Org, fixture.PipelineWorker, buildkite.Build{State: buildkite.StateRunning, Branch: "main",
		Commit: strings.Repeat("1", 40), CreatedAt: buildkite.Timestamp{Time: now}, StartedAt: buildkite.Timestamp{Time: now}})
	until("the new build to show as running", func(body string) bool {
		return sample(t, body, "buildkite_deployments_running", worker) == running0+1
	})
	// It fails: one failure, failing = 1.
	if err := f.FinishBuild(fixture.Org, fixture.PipelineWorker, b.Number, buildkite.StateFailed, time.Now()); err != nil {
		t.Fatal(err)
	}
	until("the failure to be counted", func(body string) bool {
		return sample(t, body, "buildkite_deployments_total", total("failed")) == failed0+1 &&
			sample(t, body, "buildkite_deployment_failing", worker) == 1
	})
	// A job is retried: the build re-opens, then passes. Both outcomes count; one recovery.
	if err := f.RetryBuild(fixture.Org, fixture.PipelineWorker, b.Number); err != nil {
		t.Fatal(err)
	}
	until("the re-opened build to run again", func(body string) bool {
		return sample(t, body, "buildkite_deployments_running", worker) == running0+1
	})
	if err := f.FinishBuild(fixture.Org, fixture.PipelineWorker, b.Number, buildkite.StatePassed, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	until("the retried build's pass and the recovery", func(body string) bool {
		return sample(t, body, "buildkite_deployments_total", total("passed")) == passed0+1 &&
			sample(t, body, "buildkite_deployments_total", total("failed")) == failed0+1 &&
			sample(t, body, "buildkite_deployment_failing", worker) == 0 &&
			sample(t, body, "buildkite_deployment_recovery_seconds", worker) == 1
	})

	// A deployment waits on its approval gate, is approved, and passes: its wait is measured.
	gated := f.AddBuild(fixture.Org, fixture.PipelineWorker, buildkite.Build{State: buildkite.StatePassed, Blocked: true, Branch: "main",
		Commit: strings.Repeat("2", 40), CreatedAt: buildkite.Timestamp{Time: time.Now()}, StartedAt: buildkite.Timestamp{Time: time.Now()},
		FinishedAt: buildkite.Timestamp{Time: time.Now()},
		Jobs:       []buildkite.Job{{Type: buildkite.JobTypeManual, Label: "Release?", State: "blocked", RunnableAt: buildkite.Timestamp{Time: time.Now()}}}})
	until("the gated build to await approval", func(body string) bool {
		return sample(t, body, "buildkite_deployments_awaiting_approval", worker) == 1
	})
	if err := f.Unblock(fixture.Org, fixture.PipelineWorker, gated.Number, time.Now().Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := f.FinishBuild(fixture.Org, fixture.PipelineWorker, gated.Number, buildkite.StatePassed, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	until("the approved deployment and its approval wait", func(body string) bool {
		return sample(t, body, "buildkite_deployments_total", total("passed")) == passed0+2 &&
			sample(t, body, "buildkite_deployments_awaiting_approval", worker) == 0 &&
			sample(t, body, "buildkite_deployment_approval_wait_seconds", worker) == 1
	})
}

// TestCrashAndRestart kills the exporter process with SIGKILL at random moments while builds keep
// finishing, restarts it on the same storage path each time, and requires, once it has caught up,
// counters equal to a direct count of the builds: none lost, none counted twice, none gone down.
func TestCrashAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the exporter ten times")
	}
	f, dir, apiURL := liveOrg(t)
	states := []string{buildkite.StatePassed, buildkite.StateFailed, buildkite.StateCanceled}
	// The fixture's worker pipeline starts with one passed deployment.
	want := map[string]float64{buildkite.StatePassed: 1, buildkite.StateFailed: 0, buildkite.StateCanceled: 0}
	var mu sync.Mutex

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	producing := make(chan struct{})
	go func() {
		defer close(producing)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(40 * time.Millisecond):
			}
			state := states[i%3]
			at := time.Now()
			mu.Lock()
			f.AddBuild(fixture.Org, fixture.PipelineWorker, buildkite.Build{State: state, Branch: "main",
				Commit: fmt.Sprintf("%040x", i), CreatedAt: buildkite.Timestamp{Time: at.Add(-time.Minute)},
				StartedAt: buildkite.Timestamp{Time: at.Add(-time.Minute)}, FinishedAt: buildkite.Timestamp{Time: at}})
			want[state]++
			mu.Unlock()
		}
	}()

	series := func(state string) map[string]string {
		return map[string]string{"component": "worker", "environment": "production", "pipeline": fixture.Org + "/" + fixture.PipelineWorker, "state": state}
	}
	last := map[string]float64{}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := newRand(seed)
	for kill := range 10 {
		e := startExporter(t, nil, liveArgs(dir, apiURL)...)
		// Kill at a random moment: before, during or after replay and polls.
		deadline := time.Now().Add(time.Duration(300+rnd.IntN(2200)) * time.Millisecond)
		for time.Now().Before(deadline) {
			if code, body := e.get("/metrics"); code == 200 {
				for _, s := range states {
					v := sample(t, body, "buildkite_deployments_total", series(s))
					if v >= 0 && v < last[s] {
						t.Errorf("restart %d: %s went down from %v to %v", kill, s, last[s], v)
					}
					last[s] = max(last[s], v)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := <-e.exited
		e.exited <- err
		t.Logf("restart %d: killed after %d log lines", kill, strings.Count(e.log(), "\n"))
	}
	cancel()
	<-producing

	mu.Lock()
	defer mu.Unlock()
	e := startExporter(t, nil, liveArgs(dir, apiURL)...)
	e.waitFor("the counters to equal the builds", 30*time.Second, func() bool {
		code, body := e.get("/metrics")
		if code != 200 {
			return false
		}
		for _, s := range states {
			if sample(t, body, "buildkite_deployments_total", series(s)) != want[s] {
				return false
			}
		}
		return true
	})
	// And stay there: nothing arrives later that was counted twice.
	time.Sleep(2500 * time.Millisecond)
	_, body := e.get("/metrics")
	for _, s := range states {
		if got := sample(t, body, "buildkite_deployments_total", series(s)); got != want[s] {
			t.Errorf("%s: %v counted, %v finished", s, got, want[s])
		}
	}
	t.Logf("after 10 SIGKILLs: %v deployments, counted exactly", want)
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), 0)) }

// TestSIGHUPReloadsCatalog adds a component to the catalog and sends SIGHUP: the new component's
// series appear without waiting for --catalog.refresh-interval, with its pipeline's history: a
// component annotated after the first start gets the same backfill window as the others.
func TestSIGHUPReloadsCatalog(t *testing.T) {
	_, dir, apiURL := liveOrg(t)
	e := startExporter(t, nil, append(liveArgs(dir, apiURL), "--catalog.refresh-interval=1h")...)
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })
	if _, body := e.get("/metrics"); strings.Contains(body, `component="sandbox"`) {
		t.Fatal("sandbox is exported before any component names it")
	}
	writeComponent(t, dir, "sandbox", "acme/sandbox", "team-sandbox", "experimental")
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the new component after SIGHUP", 20*time.Second, func() bool {
		_, body := e.get("/metrics")
		return strings.Contains(body, `buildkite_component_info{component="sandbox",lifecycle="experimental",owner="team-sandbox",pipeline="acme/sandbox",system=""} 1`) &&
			strings.Contains(body, "buildkite_exporter_catalog_components 5")
	})
	// The fixture's sandbox pipeline deployed to production once a day for the last five days.
	e.waitFor("the new pipeline's history", 20*time.Second, func() bool {
		_, body := e.get("/metrics")
		return sample(t, body, "buildkite_deployments_total", map[string]string{"component": "sandbox",
			"environment": "production", "pipeline": "acme/sandbox", "state": "passed"}) == 5
	})
}

// TestReloadConfig: POST /-/reload and SIGHUP re-read --config.file: a new objective shows at
// once; a broken file answers 500 naming the error, keeps the running configuration and sets
// buildkite_exporter_config_last_reload_successful to 0, until a good file is reloaded.
func TestReloadConfig(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	cfgFile := filepath.Join(dir, "config.yml")
	write := func(s string) {
		if err := os.WriteFile(cfgFile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("slos:\n  objectives:\n    production: {success: 0.95}\n")
	e := startExporter(t, nil, append(fixtureArgs(dir, apiURL), "--config.file="+cfgFile)...)
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })
	objective := map[string]string{"component": "shop", "environment": "production", "slo": "success"}
	reloadOK := func() float64 {
		_, body := e.get("/metrics")
		return sample(t, body, "buildkite_exporter_config_last_reload_successful", nil)
	}
	if _, body := e.get("/metrics"); sample(t, body, "buildkite_deployment_slo_objective_ratio", objective) != 0.95 || reloadOK() != 1 {
		t.Fatalf("before the reload: objective %v, reload ok %v", sample(t, body, "buildkite_deployment_slo_objective_ratio", objective), reloadOK())
	}
	post := func() (int, string) {
		resp, err := http.Post(e.url+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	write("slos:\n  objectives:\n    production: {success: 0.99}\n")
	if code, body := post(); code != 200 {
		t.Fatalf("POST /-/reload: %d %s", code, body)
	}
	if _, body := e.get("/metrics"); sample(t, body, "buildkite_deployment_slo_objective_ratio", objective) != 0.99 {
		t.Errorf("after the reload the objective is %v, want 0.99", sample(t, body, "buildkite_deployment_slo_objective_ratio", objective))
	}
	write("slos:\n  objectivs:\n    production: {success: 0.5}\n")
	if code, body := post(); code != 500 || !strings.Contains(body, "objectivs") {
		t.Errorf("broken file: %d %q, want 500 naming the unknown key", code, body)
	}
	if _, body := e.get("/metrics"); sample(t, body, "buildkite_deployment_slo_objective_ratio", objective) != 0.99 || reloadOK() != 0 {
		t.Errorf("after a failed reload: objective %v (want the running 0.99), reload ok %v (want 0)",
			sample(t, body, "buildkite_deployment_slo_objective_ratio", objective), reloadOK())
	}
	write("slos:\n  objectives:\n    production: {success: 0.9}\n")
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the SIGHUP reload", 20*time.Second, func() bool {
		_, body := e.get("/metrics")
		return sample(t, body, "buildkite_deployment_slo_objective_ratio", objective) == 0.9 && reloadOK() == 1
	})
	if code, _ := e.get("/-/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload: %d, want 405", code)
	}
}

// TestWebConfigFailsClosed: an empty --web.config.file is refused at start, and one emptied
// while the exporter runs makes it answer 503 rather than serve without its basic auth.
func TestWebConfigFailsClosed(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	webFile := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e := startExporter(t, nil, append(fixtureArgs(dir, apiURL), "--web.config.file="+webFile)...)
	select {
	case err := <-e.exited:
		e.exited <- err // for the cleanup
		if !strings.Contains(e.log(), "Invalid --web.config.file") || !strings.Contains(e.log(), "empty") {
			t.Errorf("exit without naming the empty web config:\n%s", e.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an empty web config file was accepted")
	}
	// user prometheus, password "test".
	if err := os.WriteFile(webFile, []byte("basic_auth_users:\n  prometheus: $2y$10$Ex/AbSjnmKJX8VGDzm1i3OOeT7tI.6nsWt7K8iKS2E4/vUe2s6nxe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e = startExporter(t, nil, append(fixtureArgs(dir, apiURL), "--web.config.file="+webFile)...)
	e.waitFor("the server", 30*time.Second, func() bool { code, _ := e.get("/metrics"); return code == 401 })
	if code, _ := e.get("/badges/api/production.svg"); code != http.StatusUnauthorized {
		t.Errorf("/badges/ answers %d without credentials, want 401: badges are behind the web config", code)
	}
	if err := os.WriteFile(webFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := e.get("/metrics"); code != http.StatusServiceUnavailable {
		t.Errorf("web config emptied while running: /metrics answers %d without credentials, want 503\n%.300s", code, body)
	}
}

// TestMisspeltPipelineEverywhere: one component of the fixture organization names a pipeline
// that does not exist (acme/shop-deploi). Every other component is counted exactly and the
// exporter is ready, and the mistake is named in the metric, the log, /status and check.
func TestMisspeltPipelineEverywhere(t *testing.T) {
	_, dir, apiURL := liveOrg(t)
	writeComponent(t, dir, "typo", "acme/shop-deploi", "team-typo", "production")
	e := startExporter(t, nil, liveArgs(dir, apiURL)...)
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })
	e.waitFor("the pipeline problem", 60*time.Second, func() bool {
		_, body := e.get("/metrics")
		return sample(t, body, "buildkite_exporter_pipeline_errors", map[string]string{"pipeline": "acme/shop-deploi", "reason": "not_found"}) == 1
	})
	if code, _ := e.get("/-/ready"); code != 200 {
		t.Errorf("/-/ready %d: one misspelt pipeline must not hold the organization back", code)
	}
	_, body := e.get("/metrics")
	golden, err := os.ReadFile(filepath.Join("testdata", "exposition.prom"))
	if err != nil {
		t.Fatal(err)
	}
	want := deploymentValues(parseExposition(t, string(golden)))
	got := deploymentValues(parseExposition(t, body))
	for k, v := range want {
		if strings.HasPrefix(k, "buildkite_deployments_total") && got[k] != v {
			t.Errorf("%s = %v, want %v as without the misspelt component", k, got[k], v)
		}
	}
	if sample(t, body, "buildkite_up", nil) != 1 {
		t.Error("buildkite_up is not 1")
	}
	if n := strings.Count(e.log(), "Pipeline problem: Pipeline acme/shop-deploi does not exist"); n != 1 {
		t.Errorf("the problem is logged %d times, want once", n)
	}
	_, js := e.get("/status?format=json")
	if !strings.Contains(js, `"acme/shop-deploi"`) || !strings.Contains(js, `"not_found"`) {
		t.Errorf("/status?format=json does not name the problem:\n%.2000s", js)
	}
	if code, html := e.get("/status?problems=1"); code != 200 || !strings.Contains(html, "shop-deploi") || !strings.Contains(html, "typo") {
		t.Errorf("/status?problems=1: %d, the problem is not on the page", code)
	}
	out, _, code := runCheck(t, dir, apiURL, nil)
	if code != 1 || !strings.Contains(out, "acme/shop-deploi") || !strings.Contains(out, "shop-deploy") {
		t.Errorf("check: exit %d, want 1 naming acme/shop-deploi and suggesting shop-deploy:\n%s", code, out)
	}
}

// TestReadinessNeedsACatalog: with --catalog.file naming a path that does not exist, the
// exporter serves but is never ready, and buildkite_up stays 0: a poll of an empty catalog
// proves nothing.
func TestReadinessNeedsACatalog(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	args := fixtureArgs(dir, apiURL)
	for i, a := range args {
		if strings.HasPrefix(a, "--catalog.file=") {
			args[i] = "--catalog.file=" + filepath.Join(dir, "no-such-catalog")
		}
	}
	e := startExporter(t, nil, append(args, "--catalog.refresh-interval=1s")...)
	e.waitFor("/metrics", 30*time.Second, func() bool { code, _ := e.get("/metrics"); return code == 200 })
	time.Sleep(3 * time.Second) // a few catalog refreshes
	if code, _ := e.get("/-/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready %d without a catalog, want 503", code)
	}
	if _, body := e.get("/metrics"); sample(t, body, "buildkite_up", nil) != 0 {
		t.Errorf("buildkite_up = %v without a catalog, want 0", sample(t, body, "buildkite_up", nil))
	}
}

// TestApprovalWaitSurvivesSIGKILL: the exporter is killed while the fixture's shop build waits
// at its release approval — once it has seen it waiting, and once in the middle of its first
// backfill —; the build is approved and finishes while the exporter is down; after the restart
// the deployment is counted with its approval wait, as an uninterrupted run would count it.
func TestApprovalWaitSurvivesSIGKILL(t *testing.T) {
	for _, during := range []string{"steady state", "backfill"} {
		t.Run(during, func(t *testing.T) {
			f, dir, apiURL := liveOrg(t)
			blocked := 0
			for n := 1; n < 20; n++ {
				if b, ok := f.Build(fixture.Org, fixture.PipelineShop, n); ok && b.Blocked {
					blocked = n
				}
			}
			if blocked == 0 {
				t.Fatal("the fixture has no blocked shop build")
			}
			args := liveArgs(dir, apiURL)
			if during == "backfill" {
				for i, a := range args {
					if strings.HasPrefix(a, "--buildkite.requests-per-minute=") {
						args[i] = "--buildkite.requests-per-minute=2" // the backfill's second request waits 30 s
					}
				}
			}
			awaiting := map[string]string{"component": "shop", "environment": "production"}
			e := startExporter(t, nil, args...)
			if during == "steady state" {
				e.waitFor("the build awaiting approval", 60*time.Second, func() bool {
					code, body := e.get("/metrics")
					return code == 200 && sample(t, body, "buildkite_deployments_awaiting_approval", awaiting) == 1
				})
			} else {
				e.waitFor("the backfill to start", 30*time.Second, func() bool { return strings.Contains(e.log(), "Backfilling deployment history") })
				time.Sleep(2 * time.Second)
				if code, _ := e.get("/-/ready"); code == 200 {
					t.Fatal("the backfill finished before the kill; the test needs it running")
				}
			}
			if err := e.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			err := <-e.exited
			e.exited <- err
			approved := time.Now()
			if err := f.Unblock(fixture.Org, fixture.PipelineShop, blocked, approved); err != nil {
				t.Fatal(err)
			}
			if err := f.FinishBuild(fixture.Org, fixture.PipelineShop, blocked, buildkite.StatePassed, approved.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			e = startExporter(t, nil, liveArgs(dir, apiURL)...)
			e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })
			_, body := e.get("/metrics")
			// A histogram's sample is its count.
			if n := sample(t, body, "buildkite_deployment_approval_wait_seconds", awaiting); n != 1 {
				t.Fatalf("approval waits of shop in production: %v, want 1", n)
			}
			// The gate became runnable an hour before the fixture's now.
			sum := parseExposition(t, body)["buildkite_deployment_approval_wait_seconds"]
			for _, m := range sum.GetMetric() {
				if s := m.GetHistogram().GetSampleSum(); len(m.GetLabel()) == 2 && m.GetLabel()[0].GetValue() == "shop" && (s < 3590 || s > 3700) {
					t.Errorf("approval wait %v s, want about 3600", s)
				}
			}
		})
	}
}

// writeComponent adds catalog/<name>.yaml to dir: a Component of owner in lifecycle, annotated
// with slug as written (it may be invalid on purpose).
func writeComponent(t *testing.T, dir, name, slug, owner, lifecycle string) {
	t.Helper()
	entity := fmt.Sprintf(`apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: %s
  annotations:
    buildkite.com/pipeline-slug: %s
spec: {owner: %s, type: service, lifecycle: %s}
`, name, slug, owner, lifecycle)
	if err := os.WriteFile(filepath.Join(dir, "catalog", name+".yaml"), []byte(entity), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The rebuild command against the fake, over the binary: the fixture's api fails in staging
// and passes in production.
func TestRebuildCommand(t *testing.T) {
	f := buildkitetest.New()
	components := fixture.Populate(f, time.Now())
	const writeToken = "bkua_rebuild_0123456789abcdef"
	f.SetToken(writeToken, buildkite.ScopeReadBuilds, buildkite.ScopeWriteBuilds)
	apiURL := f.Start()
	t.Cleanup(f.Close)
	dir := t.TempDir()
	if err := fixture.WriteFiles(dir, components); err != nil {
		t.Fatal(err)
	}
	writeFile := filepath.Join(dir, "rebuild-token")
	if err := os.WriteFile(writeFile, []byte(writeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(binary, append([]string{"rebuild", "--buildkite.api-url=" + apiURL,
			"--buildkite.token-file=" + filepath.Join(dir, "token"), "--catalog.file=" + filepath.Join(dir, "catalog")}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return stdout.String(), stderr.String(), exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), 0
	}
	puts := func() int {
		n := 0
		for _, r := range f.Requests() {
			if r.Method == http.MethodPut {
				n++
			}
		}
		return n
	}

	// The exporter's read-only token as the rebuild token: refused before anything, naming the scope.
	_, stderr, code := run("api", "staging", "--yes", "--rebuild.token-file="+filepath.Join(dir, "token"))
	if code != 1 || !strings.Contains(stderr, "lacks the write_builds scope") {
		t.Errorf("read-only rebuild token: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = run("api", "production", "--yes", "--rebuild.token-file="+writeFile)
	if code != 1 || !strings.Contains(stderr, "is not failing") {
		t.Errorf("production passes: exit %d, stderr %q", code, stderr)
	}
	out, stderr, code := run("api", "staging", "--rebuild.token-file="+writeFile) // stdin /dev/null, no --yes: no answer is no
	if code != 1 || !strings.Contains(out, "pass --yes") || !strings.Contains(out, "commit   ") || puts() != 0 {
		t.Errorf("without --yes: exit %d, %d PUTs, stdout %q, stderr %q", code, puts(), out, stderr)
	}
	out, stderr, code = run("api", "staging", "--yes", "--rebuild.token-file="+writeFile)
	if code != 0 || !strings.Contains(out, "Rebuilding: build #") || !strings.Contains(out, "version") || puts() != 1 {
		t.Errorf("rebuild: exit %d, %d PUTs, stdout %q, stderr %q", code, puts(), out, stderr)
	}
	if strings.Contains(out+stderr, writeToken) || strings.Contains(out+stderr, fixture.Token) {
		t.Error("a token appears in the output")
	}
}
