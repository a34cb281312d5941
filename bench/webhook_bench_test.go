package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/webhook"
)

// Webhook benchmarks at 1,000 components × 3 environments (the render figures' "typical" data
// set), over real HTTP: the receiver on one httptest server, /metrics (as main.go wires it) on
// another. The poll interval is an hour: only webhooks change the snapshot.
//
//	go test ./bench -run '^$' -bench 'Webhook' -benchtime 200x

const benchHookToken = "bench-hook-token"

type hookBench struct {
	e              *exporter
	recv           *webhook.Handler
	hooks, metrics *httptest.Server
	client         *http.Client
	counts         map[string]float64 // buildkite_deployments_total by labels, as last scraped
	nextID         atomic.Int64
}

func newHookBench(b *testing.B, n int) *hookBench {
	b.Helper()
	end := time.Now()
	mem := store.NewMemory()
	batch := store.Batch{}
	for i := range n * len(environments) * 3 {
		batch.Records = append(batch.Records, benchRecord(i, n, end))
	}
	if _, err := mem.Append(batch); err != nil {
		b.Fatal(err)
	}
	e, err := startExporter(exporterOpts{log: mem, comps: benchCatalog(n), interval: time.Hour, webhookQueue: 4096})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.stop() })
	if _, err := e.waitFirstCycle(); err != nil {
		b.Fatal(err)
	}
	recv, err := webhook.New(webhook.Options{Token: []byte(benchHookToken), Sink: e.c})
	if err != nil {
		b.Fatal(err)
	}
	hb := &hookBench{e: e, recv: recv, hooks: httptest.NewServer(recv), metrics: httptest.NewServer(e.handler),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	b.Cleanup(hb.hooks.Close)
	b.Cleanup(hb.metrics.Close)
	hb.counts = hb.scrape(b)
	return hb
}

// body is a build event of component comp's pipeline as Buildkite sends it (reference §12).
func (hb *hookBench) body(event string, comp int, state string) []byte {
	id := hb.nextID.Add(1)
	p := benchComponent(comp).Pipelines[0].Pipeline
	now := time.Now().UTC()
	build := map[string]any{
		"id": fmt.Sprintf("0190ffff-0000-4000-8000-%012x", id), "number": 100000 + id,
		"url":     fmt.Sprintf("https://api.buildkite.com/v2/organizations/%s/pipelines/%s/builds/%d", benchOrg, p, 100000+id),
		"web_url": fmt.Sprintf("https://buildkite.com/%s/%s/builds/%d", benchOrg, p, 100000+id),
		"state":   state, "blocked": false, "commit": fmt.Sprintf("%040x", id), "branch": "main", "tag": nil, "source": "webhook",
		"creator": nil, "created_at": now.Add(-10 * time.Minute), "scheduled_at": now.Add(-10 * time.Minute),
		"started_at": now.Add(-9 * time.Minute), "finished_at": nil, "failing_at": nil,
		"meta_data": map[string]string{"environment": "production"},
	}
	if state == "passed" {
		build["finished_at"] = now
	}
	out, _ := json.Marshal(map[string]any{
		"event": event, "build": build,
		"pipeline": map[string]any{"slug": p, "url": fmt.Sprintf("https://api.buildkite.com/v2/organizations/%s/pipelines/%s", benchOrg, p), "configuration": "steps:\n  - command: deploy\n"},
		"sender":   map[string]string{"id": "u1", "name": "Dev"},
	})
	return out
}

func (hb *hookBench) post(b *testing.B, event string, body []byte, signed bool) {
	req, _ := http.NewRequest(http.MethodPost, hb.hooks.URL+webhook.Path, bytes.NewReader(body))
	req.Header.Set("X-Buildkite-Event", event)
	if signed {
		req.Header.Set("X-Buildkite-Signature", webhook.Sign([]byte(benchHookToken), time.Now(), body))
	} else {
		req.Header.Set("X-Buildkite-Token", benchHookToken)
	}
	resp, err := hb.client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Errorf("%s: status %d", event, resp.StatusCode)
	}
}

// scrape GETs /metrics (text 0.0.4, as an old scraper asks) and returns buildkite_deployments_total.
func (hb *hookBench) scrape(b *testing.B) map[string]float64 {
	body := hb.get(b)
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "buildkite_deployments_total{")
		if !ok {
			continue
		}
		labels, value, _ := strings.Cut(rest, "} ")
		v, _ := strconv.ParseFloat(value, 64)
		out[labels] = v
	}
	return out
}

// get reads the whole /metrics body, as a scraper does.
func (hb *hookBench) get(b *testing.B) []byte {
	resp, err := hb.client.Get(hb.metrics.URL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// value finds one series of buildkite_deployments_total in a body; -1 when absent.
func value(body []byte, labels string) float64 {
	prefix := []byte("buildkite_deployments_total{" + labels + "} ")
	i := bytes.Index(body, prefix)
	if i < 0 {
		return -1
	}
	rest := body[i+len(prefix):]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	v, err := strconv.ParseFloat(string(rest), 64)
	if err != nil {
		return -1
	}
	return v
}

func key(comp int) string {
	c := benchComponent(comp)
	return fmt.Sprintf(`component=%q,environment="production",pipeline=%q,state="passed"`, c.Label, c.Pipelines[0].String())
}

// BenchmarkWebhookLatency: one signed build.finished at a time, from the start of its POST to the
// end of the first scrape of /metrics that shows its deployment. The first scrape is made as
// soon as a new snapshot is published (the harness polls the collector's snapshot pointer, which
// costs nothing), and again after each later publish until it shows.
func BenchmarkWebhookLatency(b *testing.B) {
	hb := newHookBench(b, 1000)
	var lat []time.Duration
	cpu := cputime.Process()
	i := 0
	for b.Loop() {
		comp := (i * 7) % 1000
		i++
		k := key(comp)
		want := hb.counts[k] + 1
		body := hb.body("build.finished", comp, "passed")
		prev := hb.e.c.Snapshot()
		start := time.Now()
		hb.post(b, "build.finished", body, true)
		for {
			for hb.e.c.Snapshot() == prev {
				time.Sleep(time.Millisecond)
			}
			prev = hb.e.c.Snapshot()
			if value(hb.get(b), k) >= want {
				hb.counts[k] = want
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("build.finished of %s not in /metrics after a minute", k)
			}
		}
		lat = append(lat, time.Since(start))
	}
	sorted := sortedDurations(lat)
	b.ReportMetric(float64(percentile(sorted, 50))/1e6, "p50-ms")
	b.ReportMetric(float64(percentile(sorted, 99))/1e6, "p99-ms")
	b.ReportMetric(float64(percentile(sorted, 100))/1e6, "max-ms")
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
}

// BenchmarkWebhookThroughput: deliveries per second the receiver answers while a scraper reads
// /metrics back to back: build.running events of linked pipelines (new builds, so every one
// changes a gauge), half token-authenticated, half signed, from 8 concurrent senders.
func BenchmarkWebhookThroughput(b *testing.B) {
	hb := newHookBench(b, 1000)
	stop := make(chan struct{})
	var scrapes atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			hb.get(b)
			scrapes.Add(1)
		}
	})
	var n atomic.Int64
	b.SetParallelism(4) // × GOMAXPROCS (2 here): 8 senders
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			hb.post(b, "build.running", hb.body("build.running", int(i%1000), "running"), i%2 == 0)
		}
	})
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(scrapes.Load())/elapsed.Seconds(), "scrapes/s")
	// Dropped deliveries (a full queue) were answered too; the poll would read their builds.
	b.ReportMetric(float64(hb.recv.Status().Dropped), "dropped")
}
