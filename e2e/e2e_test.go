// Package e2e runs the whole alerting path on 127.0.0.1: the fake Buildkite API → the exporter
// binary → Debian's prometheus (bundled rules, short intervals) → Debian's prometheus-alertmanager
// (the example routing) → a webhook receiver in the test. It needs the Debian packages prometheus
// and prometheus-alertmanager; without them it skips, unless CI is set, where it fails.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/alerts"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

const (
	org      = "acme"
	pipeline = "payments-deploy"
	token    = "bkua_e2e_0123456789abcdef"
	owner    = "team-payments"
	// deadline bounds the whole test, processes included.
	deadline = 3 * time.Minute
)

// notification is the part of Alertmanager's webhook payload (version 4, as sent by 0.25) we check.
type notification struct {
	Receiver string  `json:"receiver"`
	Status   string  `json:"status"`
	Alerts   []alert `json:"alerts"`
	path     string
}

type alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// receiver records every webhook call, by URL path.
type receiver struct {
	mu  sync.Mutex
	got []notification
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var n notification
	if err := json.NewDecoder(req.Body).Decode(&n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.path = req.URL.Path
	r.mu.Lock()
	r.got = append(r.got, n)
	r.mu.Unlock()
}

func (r *receiver) all() []notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notification(nil), r.got...)
}

// find returns the first alert named alertname with the given status notified on path after the
// first skip notifications.
func (r *receiver) find(skip int, path, alertname, status string) (alert, bool) {
	for i, n := range r.all() {
		if i < skip || n.path != path {
			continue
		}
		for _, a := range n.Alerts {
			if a.Labels["alertname"] == alertname && a.Status == status {
				return a, true
			}
		}
	}
	return alert{}, false
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// process is a child process whose output goes to a log file shown when the test fails.
type process struct {
	name    string
	cmd     *exec.Cmd
	log     string
	done    chan struct{}
	stopped bool // by the test, on purpose
}

// procs are the running children; waitFor fails at once when one of them dies unasked.
var (
	procsMu sync.Mutex
	procs   []*process
)

// died returns a process that exited without the test stopping it.
func died() *process {
	procsMu.Lock()
	defer procsMu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
			if !p.stopped {
				return p
			}
		default:
		}
	}
	return nil
}

// start runs name until the test ends (processes outlive the waiting deadline so that a failing
// test can still ask them what they saw).
func start(t *testing.T, dir, name string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(dir, filepath.Base(name)+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: filepath.Base(name), cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); lf.Close(); close(p.done) }()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log (last 4 KiB):\n%s", p.name, tail(b, 4096))
		}
	})
	return p
}

// stop interrupts the process and waits for it, killing it if it lingers.
func (p *process) stop() {
	procsMu.Lock()
	p.stopped = true
	procsMu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// grepLines keeps the lines of b that start with prefix.
func grepLines(b []byte, prefix string) []byte {
	var out bytes.Buffer
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(l, []byte(prefix)) {
			out.Write(l)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if p := died(); p != nil {
			t.Fatalf("waiting for %s: %s exited: %v", what, p.name, p.cmd.ProcessState)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func httpGet(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return b, err
}

// promValue returns the value of the single sample query returns, or "" when there is none.
func promValue(ctx context.Context, promURL, query string) string {
	b, err := httpGet(ctx, promURL+"/api/v1/query?query="+url.QueryEscape(query))
	if err != nil {
		return ""
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.Unmarshal(b, &r) != nil || len(r.Data.Result) != 1 {
		return ""
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return s
}

// alertmanagerConfig is the example configuration with its webhooks pointed at base and its
// timers shortened.
func alertmanagerConfig(t *testing.T, base string) string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(alerts.AlertmanagerExample, &doc); err != nil {
		t.Fatal(err)
	}
	short := map[string]string{"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h", "resolve_timeout": "1m"}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				if d, ok := short[k]; ok && v.Kind == yaml.ScalarNode {
					v.Value = d
				}
				if k == "url" && v.Kind == yaml.ScalarNode {
					if !strings.HasPrefix(v.Value, alerts.ExampleWebhookBase) {
						t.Fatalf("webhook %q is not under %s", v.Value, alerts.ExampleWebhookBase)
					}
					v.Value = base + strings.TrimPrefix(v.Value, alerts.ExampleWebhookBase)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// runbookAnchors returns the GitHub anchors of docs/runbook.md's headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if h, ok := strings.CutPrefix(s.Text(), "#"); ok {
			anchors[alerts.GitHubAnchor(strings.TrimLeft(h, "#"))] = true
		}
	}
	return anchors
}

func TestAlertingEndToEnd(t *testing.T) {
	promBin := testenv.Binary(t, "prometheus", "prometheus")
	amBin := testenv.Binary(t, "prometheus-alertmanager", "prometheus-alertmanager")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	dir := t.TempDir()

	// The exporter binary, built from this checkout.
	exporterBin := filepath.Join(dir, "buildkite_deployments_exporter")
	build := exec.CommandContext(ctx, "go", "build", "-o", exporterBin, ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// The fake Buildkite API, with one passed production deployment in the past so that the
	// exporter knows (and zero-initialises) the component's series before anything fails.
	fake := buildkitetest.New()
	apiURL := fake.Start()
	defer fake.Close()
	fake.SetToken(token, "read_builds", "read_pipelines")
	fake.AddPipeline(org, buildkite.Pipeline{Slug: pipeline, Name: "Payments deploy"})
	now := time.Now().UTC()
	number := 0
	deploy := func(state string, at time.Time) {
		number++
		fake.AddBuild(org, pipeline, buildkite.Build{
			Number:     number,
			State:      state,
			Branch:     "main",
			Commit:     fmt.Sprintf("%040x", number),
			MetaData:   map[string]string{"environment": "production"},
			CreatedAt:  buildkite.Timestamp{Time: at.Add(-3 * time.Minute)},
			StartedAt:  buildkite.Timestamp{Time: at.Add(-2 * time.Minute)},
			FinishedAt: buildkite.Timestamp{Time: at},
		})
	}
	deploy(buildkite.StatePassed, now.Add(-time.Hour))

	tokenFile := filepath.Join(dir, "token")
	write(t, tokenFile, token+"\n")
	catalog := filepath.Join(dir, "catalog-info.yaml")
	write(t, catalog, `apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: payments
  annotations:
    buildkite.com/pipeline-slug: `+org+"/"+pipeline+`
spec:
  type: service
  lifecycle: production
  owner: `+owner+`
  system: billing
`)

	// Webhook receiver for every Alertmanager receiver.
	recv := &receiver{}
	hooks := httptest.NewServer(recv)
	defer hooks.Close()

	exporterAddr, promAddr, amAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)

	exporter := start(t, dir, exporterBin,
		"--buildkite.api-url="+apiURL,
		"--buildkite.token-file="+tokenFile,
		"--catalog.file="+catalog,
		"--poll.interval=1s",
		"--history.backfill=1d",
		"--web.listen-address="+exporterAddr,
		"--storage.path="+filepath.Join(dir, "data"),
	)

	// Rules with the bundled template, `for:` shortened so the test takes seconds.
	p := alerts.DefaultParams()
	p.FailingFor = 2 * time.Second
	p.ExporterDownFor = 2 * time.Second
	p.SLOWindowInterval = time.Second
	rules, err := alerts.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	rulesFile := filepath.Join(dir, "rules.yml")
	write(t, rulesFile, string(rules))
	promConfig := filepath.Join(dir, "prometheus.yml")
	write(t, promConfig, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: buildkite_deployments_exporter
    static_configs:
      - targets: [%q]
`, rulesFile, amAddr, exporterAddr))
	amConfig := filepath.Join(dir, "alertmanager.yml")
	write(t, amConfig, alertmanagerConfig(t, hooks.URL+"/hooks"))

	start(t, dir, amBin,
		"--config.file="+amConfig,
		"--storage.path="+filepath.Join(dir, "am"),
		"--web.listen-address="+amAddr,
		"--cluster.listen-address=", // no gossip port on 0.0.0.0
	)
	start(t, dir, promBin,
		"--config.file="+promConfig,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr,
		"--rules.alert.resend-delay=1s",
	)
	promURL, amURL := "http://"+promAddr, "http://"+amAddr
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What each stage saw, for a failure in CI.
		c, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		for _, u := range []string{
			"http://" + exporterAddr + "/metrics",
			promURL + "/api/v1/alerts",
			promURL + "/api/v1/rules?type=alert",
			amURL + "/api/v2/alerts",
		} {
			b, err := httpGet(c, u)
			if strings.HasSuffix(u, "/metrics") {
				b = grepLines(b, "buildkite_")
			}
			t.Logf("--- GET %s (err %v):\n%s", u, err, tail(b, 8192))
		}
		for _, n := range recv.all() {
			t.Logf("--- notification on %s: %+v", n.path, n)
		}
	})

	// 1. Prometheus scrapes the exporter's zero-initialised failure counter.
	failedTotal := fmt.Sprintf(`buildkite_deployments_total{component="payments",environment="production",pipeline="%s/%s",state="failed"}`, org, pipeline)
	waitFor(ctx, t, "Prometheus to scrape the failed-deployments counter at 0", func() bool {
		return promValue(ctx, promURL, failedTotal) == "0"
	})

	// 2. A production deployment fails: the owning team hears of it, with everything it needs to act.
	deploy(buildkite.StateFailed, time.Now().UTC())
	var failing alert
	waitFor(ctx, t, "BuildkiteDeploymentFailing to reach team-payments", func() bool {
		var ok bool
		failing, ok = recv.find(0, "/hooks/team-payments", "BuildkiteDeploymentFailing", "firing")
		return ok
	})
	for k, want := range map[string]string{"component": "payments", "environment": "production", "owner": owner, "severity": "warning"} {
		if got := failing.Labels[k]; got != want {
			t.Errorf("BuildkiteDeploymentFailing label %s = %q, want %q", k, got, want)
		}
	}
	rb := failing.Annotations["runbook_url"]
	base, anchor, _ := strings.Cut(rb, "#")
	if base != alerts.DefaultRunbookURL || !runbookAnchors(t)[anchor] {
		t.Errorf("runbook_url %q: want %s#<a heading of docs/runbook.md>", rb, alerts.DefaultRunbookURL)
	}
	// One click from the notification to the failed build, where Buildkite's Rebuild button is.
	failedBuild := fmt.Sprintf("https://buildkite.com/%s/%s/builds/%d", org, pipeline, number)
	if got := failing.Annotations["build_url"]; got != failedBuild {
		t.Errorf("BuildkiteDeploymentFailing build_url %q, want %s", got, failedBuild)
	}
	// The info feed got the failure too, and the info alert went nowhere else.
	var failed alert
	waitFor(ctx, t, "BuildkiteDeploymentFailed in the feed", func() bool {
		var ok bool
		failed, ok = recv.find(0, "/hooks/feed", "BuildkiteDeploymentFailed", "firing")
		return ok
	})
	if got := failed.Annotations["build_url"]; got != failedBuild {
		t.Errorf("BuildkiteDeploymentFailed build_url %q, want %s", got, failedBuild)
	}
	for _, n := range recv.all() {
		for _, a := range n.Alerts {
			if a.Labels["severity"] == "info" && n.path != "/hooks/feed" {
				t.Errorf("info alert %s notified on %s, want only the feed", a.Labels["alertname"], n.path)
			}
		}
	}

	// 3. A later passed deployment resolves it.
	mark := len(recv.all())
	deploy(buildkite.StatePassed, time.Now().UTC())
	waitFor(ctx, t, "BuildkiteDeploymentFailing to resolve for team-payments", func() bool {
		_, ok := recv.find(mark, "/hooks/team-payments", "BuildkiteDeploymentFailing", "resolved")
		return ok
	})

	// 4. It fails again, then the exporter goes away: BuildkiteExporterDown reaches the platform
	// team and the component's alerts are inhibited (held by the rules, muted by Alertmanager).
	mark = len(recv.all())
	deploy(buildkite.StateFailed, time.Now().UTC())
	waitFor(ctx, t, "BuildkiteDeploymentFailing to fire again", func() bool {
		_, ok := recv.find(mark, "/hooks/team-payments", "BuildkiteDeploymentFailing", "firing")
		return ok
	})
	exporter.stop()
	waitFor(ctx, t, "BuildkiteExporterDown to reach the platform team", func() bool {
		_, ok := recv.find(mark, "/hooks/platform", "BuildkiteExporterDown", "firing")
		return ok
	})
	waitFor(ctx, t, "Alertmanager to inhibit BuildkiteDeploymentFailing", func() bool {
		return inhibited(ctx, amURL, "BuildkiteDeploymentFailing")
	})
	// Nothing about the component is notified while the exporter is down.
	mark = len(recv.all())
	time.Sleep(3 * time.Second)
	for _, n := range recv.all()[mark:] {
		for _, a := range n.Alerts {
			if a.Labels["component"] != "" {
				t.Errorf("notified %s %s on %s while the exporter is down", a.Status, a.Labels["alertname"], n.path)
			}
		}
	}
}

// inhibited reports whether Alertmanager holds alertname as active but suppressed by an inhibition.
func inhibited(ctx context.Context, amURL, alertname string) bool {
	b, err := httpGet(ctx, amURL+"/api/v2/alerts?filter="+url.QueryEscape(`alertname="`+alertname+`"`))
	if err != nil {
		return false
	}
	var as []struct {
		Status struct {
			State       string   `json:"state"`
			InhibitedBy []string `json:"inhibitedBy"`
		} `json:"status"`
	}
	if json.Unmarshal(b, &as) != nil || len(as) == 0 {
		return false
	}
	for _, a := range as {
		if a.Status.State != "suppressed" || len(a.Status.InhibitedBy) == 0 {
			return false
		}
	}
	return true
}
