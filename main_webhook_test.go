package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// TestWebhooksEndToEnd: with an hour between polls, the fake's signed webhooks to the second
// listener alone move the worker's gauges and counters; /metrics and /status show the receiver.
func TestWebhooksEndToEnd(t *testing.T) {
	f, dir, apiURL := liveOrg(t)
	hookAddr := testenv.FreeAddr(t)
	args := liveArgs(dir, apiURL)
	for i, a := range args {
		if strings.HasPrefix(a, "--poll.interval=") {
			args[i] = "--poll.interval=1h"
		}
	}
	e := startExporter(t, []string{"BUILDKITE_WEBHOOK_TOKEN=hook-secret"}, append(args, "--webhook.listen-address="+hookAddr)...)
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })
	f.SetWebhook(&buildkitetest.Webhook{URL: "http://" + hookAddr + "/webhooks/buildkite", Token: "hook-secret", Signed: true})

	worker := map[string]string{"component": "worker", "environment": "production"}
	passed := map[string]string{"component": "worker", "environment": "production", "pipeline": fixture.Org + "/" + fixture.PipelineWorker, "state": "passed"}
	_, body := e.get("/metrics")
	running0, passed0 := sample(t, body, "buildkite_deployments_running", worker), sample(t, body, "buildkite_deployments_total", passed)
	requests := len(f.Requests())

	now := time.Now()
	b := f.AddBuild(fixture.Org, fixture.PipelineWorker, buildkite.Build{State: buildkite.StateRunning, Branch: "main",
		Commit: strings.Repeat("3", 40), CreatedAt: buildkite.Timestamp{Time: now}, StartedAt: buildkite.Timestamp{Time: now}})
	e.waitFor("the webhook's running build", 20*time.Second, func() bool {
		_, body := e.get("/metrics")
		return sample(t, body, "buildkite_deployments_running", worker) == running0+1
	})
	if err := f.FinishBuild(fixture.Org, fixture.PipelineWorker, b.Number, buildkite.StatePassed, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the webhook's deployment", 20*time.Second, func() bool {
		_, body := e.get("/metrics")
		return sample(t, body, "buildkite_deployments_total", passed) == passed0+1 && sample(t, body, "buildkite_deployments_running", worker) == running0
	})
	if n := len(f.Requests()) - requests; n != 0 {
		t.Errorf("%d API requests while webhooks did the work, want none", n)
	}
	for _, d := range f.Deliveries() {
		if d.Status != http.StatusAccepted {
			t.Errorf("delivery %s: status %d (%v)", d.Event, d.Status, d.Err)
		}
	}
	_, body = e.get("/metrics")
	if got := sample(t, body, "buildkite_exporter_webhook_events_total", map[string]string{"event": "build.finished", "result": "accepted"}); got != 1 {
		t.Errorf("accepted build.finished = %v, want 1", got)
	}
	if got := sample(t, body, "buildkite_exporter_webhook_last_event_timestamp_seconds", nil); got < float64(now.Unix()) {
		t.Errorf("last event timestamp %v, want after %d", got, now.Unix())
	}
	_, js := e.get("/status?format=json")
	var page struct {
		Webhooks *struct {
			LastEventAt time.Time `json:"last_event_at"`
			Events      []struct {
				Event    string `json:"event"`
				Accepted int    `json:"accepted"`
			} `json:"events"`
		} `json:"webhooks"`
	}
	if err := json.Unmarshal([]byte(js), &page); err != nil {
		t.Fatal(err)
	}
	if page.Webhooks == nil || page.Webhooks.LastEventAt.IsZero() || len(page.Webhooks.Events) == 0 {
		t.Errorf("/status has no webhook counters: %s", js)
	}
	// Each listener serves its own paths only.
	if code, _ := e.get("/webhooks/buildkite"); code != http.StatusNotFound {
		t.Errorf("/webhooks/buildkite on the metrics listener: %d, want 404", code)
	}
	resp, err := http.Get("http://" + hookAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the webhook listener: %d, want 404", resp.StatusCode)
	}
}

// TestWebhookListenerNeedsToken: a webhook listener without a token, or with an empty web
// configuration, is refused at start.
func TestWebhookListenerNeedsToken(t *testing.T) {
	dir, apiURL := fixtureOrg(t)
	cmd := exec.Command(binary, append(fixtureArgs(dir, apiURL), "--web.listen-address="+testenv.FreeAddr(t), "--webhook.listen-address="+testenv.FreeAddr(t))...)
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v\n%s", err, out)
	}
	for _, want := range []string{"BUILDKITE_WEBHOOK_TOKEN", "--webhook.token-file"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not mention %s:\n%s", want, out)
		}
	}

	// Nor with an empty web configuration of its own, which would serve it without the TLS or
	// authentication it was meant to have.
	empty := filepath.Join(t.TempDir(), "webhook-web.yml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(binary, append(fixtureArgs(dir, apiURL), "--web.listen-address="+testenv.FreeAddr(t), "--webhook.listen-address="+testenv.FreeAddr(t),
		"--webhook.web-config.file="+empty)...)
	cmd.Env = append(os.Environ(), "BUILDKITE_WEBHOOK_TOKEN=t")
	out, err = cmd.CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "--webhook.web-config.file") {
		t.Errorf("an empty --webhook.web-config.file: want exit status 1 naming it, got %v\n%s", err, out)
	}
}
