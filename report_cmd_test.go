package main

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
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/report"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// webConfigBasicAuth is a --web.config.file for user prometheus, password "test" (bcrypt, cost 10).
const webConfigBasicAuth = "basic_auth_users:\n  prometheus: $2a$10$wDppQrkCaWlCyhqfEb0mlOFRlOphJq1AbVcCIQwdwf02wRGIq/q3.\n"

// runCmd runs the binary to its end and returns its exit code, stdout and stderr.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestReportAgainstRunningExporter runs the exporter on the fixture organization with the report
// API behind basic auth, and then the report command as a user would: reading the held log
// fails with the way out; --from-url without credentials is refused with the fix; with them,
// the report's counts equal the exporter's own /metrics.
func TestReportAgainstRunningExporter(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	webFile := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webFile, []byte(webConfigBasicAuth), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startExporter(t, nil, append(fixtureArgs(dir, apiURL), "--web.config.file="+webFile, "--web.enable-report-api")...)
	authGet := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
		req.SetBasicAuth("prometheus", "test")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := authGet("/-/ready"); return code == 200 })

	// The log is held: the report command says what to do instead.
	code, _, stderr := runCmd(t, "report", "--storage.path="+filepath.Join(dir, "data"))
	if code != 1 || !strings.Contains(stderr, "--from-url") || !strings.Contains(stderr, fmt.Sprint("pid ", e.cmd.Process.Pid)) {
		t.Errorf("report on the held log: exit %d, stderr:\n%s\nwant exit 1 naming the holder's pid and --from-url", code, stderr)
	}
	// The API sits behind the web config, like /metrics.
	if code, _ := e.get(reportAPIPath); code != http.StatusUnauthorized {
		t.Errorf("%s without credentials: %d, want 401", reportAPIPath, code)
	}
	code, _, stderr = runCmd(t, "report", "--from-url="+e.url, "--format=json")
	if code != 1 || !strings.Contains(stderr, "401") || !strings.Contains(stderr, "--http.config.file") {
		t.Errorf("--from-url without credentials: exit %d, stderr:\n%s", code, stderr)
	}

	pw := filepath.Join(dir, "password")
	httpCfg := filepath.Join(dir, "http.yml")
	if err := os.WriteFile(pw, []byte("test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(httpCfg, []byte("basic_auth:\n  username: prometheus\n  password_file: "+pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A window over the whole backfill: every deployment the exporter counted.
	code, stdout, stderr := runCmd(t, "report", "--from-url="+e.url, "--http.config.file="+httpCfg, "--format=json", "--since=60d")
	if code != 0 {
		t.Fatalf("report --from-url: exit %d\n%s", code, stderr)
	}
	rep, err := report.ReadJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	_, metrics := authGet("/metrics")
	want := map[string]int{}
	for _, m := range parseExposition(t, metrics)["buildkite_deployments_total"].GetMetric() {
		var comp, env string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "component":
				comp = l.GetValue()
			case "environment":
				env = l.GetValue()
			}
		}
		if n := int(m.GetCounter().GetValue()); n > 0 {
			want[comp+" "+env] += n
		}
	}
	got := map[string]int{}
	owners := 0
	for _, r := range rep.Rows {
		got[r.Component+" "+r.Environment] = r.Current.Deployments
		if r.Owner != "" {
			owners++
		}
	}
	if len(want) == 0 || fmt.Sprint(want) != fmt.Sprint(got) {
		t.Errorf("report deployments %v, /metrics counts %v", got, want)
	}
	if owners == 0 {
		t.Error("no row has an owner: the exporter's catalog was not used")
	}

	// Markdown to a file, grouped by owner.
	out := filepath.Join(t.TempDir(), "weekly.md")
	code, stdout, stderr = runCmd(t, "report", "--from-url="+e.url+"/", "--http.config.file="+httpCfg, "--since=60d", "--group-by=owner", "--output="+out)
	if code != 0 || stdout != "" {
		t.Fatalf("report --output: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	md, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(md), "## By owner") || !strings.Contains(string(md), "| Component |") {
		t.Errorf("%s: %v\n%s", out, err, md)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".weekly.md.tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %q", left)
	}
}

// TestReportFromLog writes a log, then runs the command on it with no exporter running: each
// format, the filters, and the figures of the window.
func TestReportFromLog(t *testing.T) {
	dir := t.TempDir()
	b, err := store.OpenBolt(dir, store.BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var recs []store.Record
	for i := range 40 {
		state := []string{"passed", "passed", "failed", "canceled"}[i%4]
		fin := now.Add(-time.Duration(i) * 5 * time.Hour)
		recs = append(recs, store.Record{Key: store.Key(fmt.Sprint("b", i), fin, "production"), Component: []string{"api", "web"}[i%2],
			Environment: "production", Pipeline: "acme/deploy", State: state, BuildID: fmt.Sprint("b", i), FinishedAt: fin,
			StartedAt: fin.Add(-10 * time.Minute), LeadTimeSeconds: 3600, ApprovalWaitSeconds: -1})
	}
	if _, err := b.Append(store.Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, "report", "--storage.path="+dir, "--format=json", "--since=2d", "--component=api")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	rows, _ := doc["rows"].([]any)
	if doc["schema_version"] != float64(1) || len(rows) != 1 {
		t.Fatalf("document %.500s", stdout)
	}
	cur := rows[0].(map[string]any)["current"].(map[string]any)
	// api: the even i; within 48 h: i = 0, 2, …, 8 (i·5 h < 48 h → i ≤ 9): passed at 0, 4, 8; failed at 2, 6.
	if cur["deployments"] != float64(5) || cur["deployments_failed"] != float64(2) || cur["change_failure_rate"] != 0.4 || cur["lead_time_p50_seconds"] != float64(3600) {
		t.Errorf("api, last 2 days: %v", cur)
	}
	for _, format := range []string{"html", "markdown"} {
		code, stdout, stderr := runCmd(t, "report", "--storage.path="+dir, "--format="+format)
		if code != 0 || !strings.Contains(stdout, "api") || !strings.Contains(stdout, "web") {
			t.Errorf("--format=%s: exit %d\n%s\n%.300s", format, code, stderr, stdout)
		}
	}
	for _, bad := range [][]string{
		{"--since=yesterday"}, {"--since=2026-11-30", "--until=2026-11-01"}, {"--group-by=owner"}, {"--http.config.file=x"},
	} {
		if code, _, stderr := runCmd(t, append([]string{"report", "--storage.path=" + dir}, bad...)...); code != 2 {
			t.Errorf("report %q: exit %d, want 2\n%s", bad, code, stderr)
		}
	}
	if code, _, stderr := runCmd(t, "report", "--storage.path="+t.TempDir()); code != 1 || !strings.Contains(stderr, "no deployment log") {
		t.Errorf("an empty storage path: exit %d\n%s", code, stderr)
	}
}

// TestFetchReportRefusesOtherHosts: the credentials of --http.config.file go to the --from-url
// host only: a redirect elsewhere is refused before anything is sent there.
func TestFetchReportRefusesOtherHosts(t *testing.T) {
	reached := make(chan string, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached <- r.Header.Get("Authorization")
	}))
	defer other.Close()
	exp := httptest.NewServer(http.RedirectHandler(other.URL+reportAPIPath, http.StatusFound))
	defer exp.Close()
	dir := t.TempDir()
	pw, cfg := filepath.Join(dir, "pw"), filepath.Join(dir, "http.yml")
	_ = os.WriteFile(pw, []byte("secret"), 0o600)
	_ = os.WriteFile(cfg, []byte("basic_auth:\n  username: u\n  password_file: "+pw+"\n"), 0o600)
	_, err := fetchReport(context.Background(), exp.URL, cfg, url.Values{}, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "refusing a redirect") {
		t.Errorf("a redirect to another host: %v", err)
	}
	select {
	case auth := <-reached:
		t.Errorf("the other host was asked (Authorization %q)", auth)
	default:
	}
	if _, err := fetchReport(context.Background(), "http://u:p@"+strings.TrimPrefix(exp.URL, "http://"), "", nil, time.Second); err == nil {
		t.Error("credentials in --from-url accepted")
	}
}

// TestFetchReportBounded: an answer larger than the limit, or not JSON, is refused.
func TestFetchReportBounded(t *testing.T) {
	old := maxReportBody
	maxReportBody = 1 << 10
	defer func() { maxReportBody = old }()
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"schema_version": 1, "notes": [%q]}`, strings.Repeat("x", 4<<10))
	}))
	defer big.Close()
	if _, err := fetchReport(context.Background(), big.URL, "", nil, 5*time.Second); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a large answer: %v", err)
	}
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html>")
	}))
	defer html.Close()
	if _, err := fetchReport(context.Background(), html.URL, "", nil, 5*time.Second); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("an HTML answer: %v", err)
	}
}

// TestReportAPI: the handler's parameters, its one-at-a-time rule, and a report equal to the
// one report.Build makes of the same log.
func TestReportAPI(t *testing.T) {
	mem := store.NewMemory()
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	if _, err := mem.Append(store.Batch{Records: []store.Record{
		{Key: "a", Component: "api", Environment: "production", State: "passed", FinishedAt: now.Add(-time.Hour), LeadTimeSeconds: 60, ApprovalWaitSeconds: -1},
		{Key: "b", Component: "api", Environment: "production", State: "failed", FinishedAt: now.Add(-2 * time.Hour), LeadTimeSeconds: -1, ApprovalWaitSeconds: -1},
	}}); err != nil {
		t.Fatal(err)
	}
	api := newReportAPI(mem, func() []backstage.Component { return []backstage.Component{{Label: "api", Owner: "team-a"}} }, log.NewNopLogger())
	api.now = func() time.Time { return now }
	srv := httptest.NewServer(api)
	defer srv.Close()
	get := func(q string) (int, string) {
		resp, err := http.Get(srv.URL + reportAPIPath + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	code, body := get("?since=1d&group_by=owner")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	rep, err := report.ReadJSON(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 1 || rep.Rows[0].Owner != "team-a" || rep.Rows[0].Current.Deployments != 2 || len(rep.Groups) != 1 || !rep.Until.Equal(now) {
		t.Errorf("report %+v", rep)
	}
	for _, q := range []string{"?since=x", "?since=2026-11-30T00:00:00Z&until=2026-11-01T00:00:00Z", "?group_by=system", "?foo=1", "?since=3000d"} {
		if code, _ := get(q); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	api.busy <- struct{}{} // a report under way
	if code, _ := get(""); code != http.StatusTooManyRequests {
		t.Errorf("a second report at once: %d, want 429", code)
	}
	<-api.busy
	resp, err := http.Post(srv.URL+reportAPIPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		since, until string
		s, u         time.Time
	}{
		{"7d", "now", now.Add(-7 * 24 * time.Hour), now},
		{"7d", "1d", now.Add(-8 * 24 * time.Hour), now.Add(-24 * time.Hour)},
		{"2026-11-23", "2026-11-30", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)},
		{"1w", "2026-11-30T12:00:00+01:00", time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)},
	} {
		s, u, err := reportWindow(c.since, c.until, now)
		if err != nil || !s.Equal(c.s) || !u.Equal(c.u) {
			t.Errorf("reportWindow(%q, %q) = %v, %v, %v; want %v, %v", c.since, c.until, s, u, err, c.s, c.u)
		}
	}
	if _, _, err := reportWindow("last week", "now", now); err == nil {
		t.Error("a bad --since accepted")
	}
}
