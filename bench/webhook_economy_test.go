package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/webhook"
)

var flagWebhookHours = flag.Float64("webhook-hours", 0, "hours of fake time TestEconomyWebhooks measures each mode for; 0 = 2 at -scale, 0.5 otherwise")

// handlerTransport serves requests with a handler in the calling goroutine, so that the fake's
// webhooks reach the receiver inside the synctest bubble.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// TestEconomyWebhooks measures, on the steady-state organization in fake time, the API requests
// per hour of today's 30 s poll against webhooks with a 5-minute poll, and how long a finished
// deployment takes to show in /metrics in each mode. The same live simulation (arrivals, retries)
// runs in both; with webhooks the fake sends a signed build event for
// every change of a build, through the real receiver. Both modes must count every deployment
// exactly once.
func TestEconomyWebhooks(t *testing.T) {
	scale, hours := *flagScale, *flagWebhookHours
	if scale == 0 {
		scale = 0.01
		if hours == 0 {
			hours = 0.5
		}
	}
	if hours == 0 {
		hours = 2
	}
	m := issueScale(scale, 2)
	figs := newFigures(*flagOut)
	defer func() {
		if err := figs.flush(); err != nil {
			t.Error(err)
		}
	}()
	type result struct {
		perHour  float64
		kinds    map[string]int
		p50, p99 time.Duration
		counted  int
		dropped  uint64
		rejected uint64
	}
	results := map[string]result{}
	for _, mode := range []struct {
		name     string
		interval time.Duration
		hooks    bool
	}{
		{"poll 30s", 30 * time.Second, false},
		{"webhooks + poll 5m", 5 * time.Minute, true},
		{"webhooks + poll 10m", 10 * time.Minute, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			f := buildkitetest.New()
			ds := m.load(f, epoch)
			comps := m.components()
			synctest.Test(t, func(t *testing.T) {
				checkEpoch(t)
				queue := 0
				if mode.hooks {
					queue = 4096
				}
				r := startCollectorEvery(t, f, comps, steadyBackfill, "bkua_hooks", mode.interval, queue)
				var recv *webhook.Handler
				if mode.hooks {
					var err error
					if recv, err = webhook.New(webhook.Options{Token: []byte("hook-secret"), Sink: r.c}); err != nil {
						t.Fatal(err)
					}
				}
				r.waitAppends(t, 2, time.Second) // the backfill and the catch-up
				if recv != nil {
					f.SetWebhook(&buildkitetest.Webhook{URL: "http://exporter.test" + webhook.Path, Token: "hook-secret", Signed: true,
						Client: &http.Client{Transport: handlerTransport{recv}}})
				}
				r.api.reset()
				time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1500 * time.Millisecond)))
				simStart := time.Now()
				// The same builds in both modes: the organization's own traffic, without the probe
				// build per interval of the freshness figures (an interval of years makes none).
				sim := newLiveSim(ds, f, simStart, 100000*time.Hour)
				counts := scrapeDeployments(t, r)
				expected := map[string]float64{}
				var waiting []visibility
				var fresh []time.Duration
				for time.Since(simStart) < time.Duration(hours*float64(time.Hour)) {
					time.Sleep(time.Second)
					done, err := sim.advance(time.Now())
					if err != nil {
						t.Fatal(err)
					}
					for _, ev := range done {
						if !ev.annotated {
							continue
						}
						k := deploymentsKey(m, ev.pipeline, ev.env, ev.state)
						if _, ok := expected[k]; !ok {
							expected[k] = counts[k]
						}
						expected[k]++
						waiting = append(waiting, visibility{key: k, want: expected[k], finished: ev.at})
					}
					synctest.Wait()
					if len(waiting) == 0 {
						continue
					}
					// A second of fake time passes between looks: freshness has a 1 s resolution.
					counts = scrapeDeployments(t, r)
					kept := waiting[:0]
					for _, v := range waiting {
						if counts[v.key] >= v.want {
							fresh = append(fresh, time.Since(v.finished))
						} else {
							kept = append(kept, v)
						}
					}
					waiting = kept
				}
				elapsed := time.Since(simStart)
				// Let the last builds show (a poll interval and a cycle), then check each was counted once.
				time.Sleep(mode.interval + time.Minute)
				synctest.Wait()
				final := scrapeDeployments(t, r)
				for k, want := range expected {
					if final[k] != want {
						t.Errorf("%s: /metrics counts %v deployments as %s, want %v", mode.name, final[k], k, want)
					}
				}
				reqs := r.api.requests()
				res := result{perHour: float64(len(reqs)) / (elapsed + mode.interval + time.Minute).Hours(), counted: len(fresh), kinds: countKinds(reqs)}
				sorted := sortedDurations(fresh)
				res.p50, res.p99 = percentile(sorted, 50), percentile(sorted, 99)
				if recv != nil {
					st := recv.Status()
					res.dropped = st.Dropped
					for _, c := range st.Counts {
						if c.Result != webhook.ResultAccepted && c.Result != webhook.ResultIgnored {
							res.rejected += c.Count
						}
					}
					f.SetWebhook(nil)
				}
				results[mode.name] = res
				t.Logf("%s: %.0f API requests/hour (in all: %v); %d deployments, visible in /metrics after p50 %v, p99 %v; webhooks dropped %d, rejected %d",
					mode.name, res.perHour, res.kinds, res.counted, res.p50, res.p99, res.dropped, res.rejected)
				r.stop(t)
			})
		})
	}
	poll, hooks := results["poll 30s"], results["webhooks + poll 5m"]
	sec := "webhooks"
	detail := fmt.Sprintf("steady-state organization at scale %g, %.1f h of fake time per mode, the same live simulation", scale, hours)
	figs.info(sec, "API requests per hour, 30 s poll", poll.perHour, "requests", detail)
	figs.info(sec, "API requests per hour, webhooks + 5 m poll", hooks.perHour, "requests", detail)
	figs.target(sec, "API requests saved by webhooks + 5 m poll", ratio(poll.perHour, hooks.perHour), "×", "≥ 10 (an order of magnitude)", ratio(poll.perHour, hooks.perHour) >= 10,
		fmt.Sprintf("requests by kind, 30 s poll %v, webhooks %v: Get-a-build (one per failed deployment) is paid in both", poll.kinds, hooks.kinds))
	ten := results["webhooks + poll 10m"]
	figs.info(sec, "API requests per hour, webhooks + 10 m poll", ten.perHour, "requests", detail+"; needs alerts.polling_stale_after above 10m")
	figs.info(sec, "API requests saved by webhooks + 10 m poll", ratio(poll.perHour, ten.perHour), "×", "")
	figs.info(sec, "finish → /metrics p50, 30 s poll", poll.p50.Seconds(), "s", "fake time, 1 s resolution")
	figs.info(sec, "finish → /metrics p99, 30 s poll", poll.p99.Seconds(), "s", "")
	figs.info(sec, "finish → /metrics p50, webhooks", hooks.p50.Seconds(), "s", "fake time, 1 s resolution; the CPU cost is in BenchmarkWebhookLatency")
	figs.info(sec, "finish → /metrics p99, webhooks", hooks.p99.Seconds(), "s", "")
	if hooks.rejected > 0 {
		t.Errorf("%d of the fake's webhooks were rejected", hooks.rejected)
	}
	if hooks.p99 > 2*time.Second {
		t.Errorf("with webhooks, p99 from finish to /metrics is %v of fake time, want at most the coalescing window and the 1 s resolution", hooks.p99)
	}
}
