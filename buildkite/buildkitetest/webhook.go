package buildkitetest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// Webhook configures the fake's webhook notification service (reference §12): after every
// change of a build through AddBuild, UpdateBuild, FinishBuild, RetryBuild, RetryJob, FinishJob
// and Unblock, the fake POSTs the build event its new state implies to URL, in the calling
// goroutine, before the method returns; FinishJob and RetryJob only when the build's state
// changed (a job's own change is a job event, which the exporter does not read). AddBuilds (bulk
// loading) sends nothing.
type Webhook struct {
	URL   string
	Token string
	// Signed sends X-Buildkite-Signature (HMAC-SHA256 of "<timestamp>.<body>" keyed with Token,
	// the timestamp from the fake's clock); otherwise X-Buildkite-Token, Buildkite's default.
	Signed bool
	// Client sends the deliveries; nil is a client with a 10 s timeout (Buildkite's own is short).
	Client *http.Client
	// Drop, when set, is asked before each delivery; true loses it (a lost webhook), and it is
	// recorded with Dropped set.
	Drop func(event string, b buildkite.Build) bool
}

// Delivery is one webhook the fake sent (or dropped).
type Delivery struct {
	Event   string
	Build   buildkite.Build // the build as the body rendered it
	Body    []byte
	Header  http.Header
	Status  int   // 0 when dropped or when the request failed
	Err     error // the request's error
	Dropped bool
}

type webhookState struct {
	mu  sync.Mutex
	cfg *Webhook
	log []Delivery
}

// SetWebhook makes the fake send webhooks as w says; nil stops them.
func (f *Fake) SetWebhook(w *Webhook) {
	f.hooks.mu.Lock()
	defer f.hooks.mu.Unlock()
	if w != nil {
		c := *w
		if c.Client == nil {
			c.Client = &http.Client{Timeout: 10 * time.Second}
		}
		w = &c
	}
	f.hooks.cfg = w
}

// Deliveries returns every webhook sent (or dropped) so far, oldest first.
func (f *Fake) Deliveries() []Delivery {
	f.hooks.mu.Lock()
	defer f.hooks.mu.Unlock()
	return slices.Clone(f.hooks.log)
}

// WebhookEvent is the build event Buildkite sends for a build in b's state: build.finished for
// a finished build and for a blocked one (with blocked: true, reference §4.1), build.skipped for
// a skipped one, else build.scheduled, build.running or build.failing.
func WebhookEvent(b buildkite.Build) string {
	switch {
	case b.Blocked:
		return "build.finished"
	case b.State == buildkite.StateSkipped:
		return "build.skipped"
	case b.State == buildkite.StateFailing:
		return "build.failing"
	case b.State == buildkite.StateRunning || b.State == buildkite.StateCanceling:
		return "build.running"
	case terminalStates[b.State]:
		return "build.finished"
	}
	return "build.scheduled"
}

// WebhookBody renders the body of a build event for a stored build, as Buildkite does: the
// event, the build without its jobs, the pipeline, the sender (reference §12).
func (f *Fake) WebhookBody(event, orgSlug, pipeline string, number int) ([]byte, buildkite.Build, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return nil, buildkite.Build{}, err
	}
	body := mustJSON(struct {
		Event    string        `json:"event"`
		Build    *buildJSON    `json:"build"`
		Pipeline *pipelineJSON `json:"pipeline"`
		Sender   struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"sender"`
	}{
		Event:    event,
		Build:    renderBuild(r, buildOpts{excludeJobs: true, excludePipeline: true}),
		Pipeline: renderPipeline(r.pipe, f.cfg.legacyPipelineTimes),
		Sender: struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}{ID: "01940000-0000-4000-8000-00000000000f", Name: "Fake Buildkite"},
	})
	b := r.view()
	b.Jobs = nil
	return body, b, nil
}

// SignWebhook is the X-Buildkite-Signature value for body dispatched at ts.
func SignWebhook(token string, ts time.Time, body []byte) string {
	unix := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, []byte(token))
	io.WriteString(m, unix+".")
	m.Write(body)
	return "timestamp=" + unix + ",signature=" + hex.EncodeToString(m.Sum(nil))
}

// SendWebhook sends event for the stored build now, with the configured service, whatever its
// state (tests use it for duplicates and late deliveries).
func (f *Fake) SendWebhook(event, orgSlug, pipeline string, number int) (Delivery, error) {
	f.hooks.mu.Lock()
	cfg := f.hooks.cfg
	f.hooks.mu.Unlock()
	if cfg == nil {
		return Delivery{}, fmt.Errorf("buildkitetest: no webhook configured (SetWebhook)")
	}
	body, b, err := f.WebhookBody(event, orgSlug, pipeline, number)
	if err != nil {
		return Delivery{}, err
	}
	d := Delivery{Event: event, Build: b, Body: body, Header: http.Header{}}
	d.Header.Set("Content-Type", "application/json")
	d.Header.Set("User-Agent", "Buildkite-Request")
	d.Header.Set("X-Buildkite-Event", event)
	if cfg.Signed {
		d.Header.Set("X-Buildkite-Signature", SignWebhook(cfg.Token, f.now(), body))
	} else {
		d.Header.Set("X-Buildkite-Token", cfg.Token)
	}
	if cfg.Drop != nil && cfg.Drop(event, b) {
		d.Dropped = true
	} else {
		d.Status, d.Err = post(cfg.Client, cfg.URL, d.Header, body)
	}
	f.hooks.mu.Lock()
	f.hooks.log = append(f.hooks.log, d)
	f.hooks.mu.Unlock()
	return d, nil
}

// Post sends a raw delivery (a replayed or forged one) to url and returns the status.
func Post(c *http.Client, url string, h http.Header, body []byte) (int, error) {
	return post(c, url, h, body)
}

func post(c *http.Client, url string, h http.Header, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header = h.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}

// notify sends the event of the build's new state, if a webhook is configured; called by the
// mutators after they unlocked.
func (f *Fake) notify(orgSlug, pipeline string, number int) {
	f.hooks.mu.Lock()
	on := f.hooks.cfg != nil
	f.hooks.mu.Unlock()
	if !on {
		return
	}
	b, ok := f.Build(orgSlug, pipeline, number)
	if !ok {
		return
	}
	_, _ = f.SendWebhook(WebhookEvent(b), orgSlug, pipeline, number) // recorded in Deliveries
}
