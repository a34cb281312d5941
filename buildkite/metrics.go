package buildkite

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Rate-limit scopes as Buildkite names them in RateLimit-Scope / RateLimit-User-Scope and in
// 429 bodies, plus our own local limiter.
const (
	scopeOrg   = "rest"      // RateLimit-*: the organization's bucket, shared by all its users
	scopeUser  = "rest_user" // RateLimit-User-*: the token owner's bucket
	scopeLocal = "local"     // Config.RequestsPerMinute
)

// clientMetrics is the client's self-instrumentation. Label values are bounded: endpoint is a
// route template, never a URL; code an HTTP status or "error"; scope one of the three above.
type clientMetrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	waits         *prometheus.CounterVec
	waitSeconds   *prometheus.CounterVec
	retries       *prometheus.CounterVec
	rateRemaining *prometheus.GaugeVec
	rateLimit     *prometheus.GaugeVec
	dropped       *prometheus.CounterVec
}

func newClientMetrics() *clientMetrics {
	return &clientMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "buildkite_exporter_api_requests_total",
			Help: "Buildkite REST API requests by route template and HTTP status code (\"error\" when no answer arrived). Retries count separately.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "buildkite_exporter_api_request_duration_seconds",
			Help:    "Duration of single Buildkite REST API requests, body included, rate-limit waits excluded.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "buildkite_exporter_api_throttled_waits_total",
			Help: "Times a request waited before being sent, by reason: scope=\"local\" the exporter's own request rate, \"rest\" the organization's Buildkite budget, \"rest_user\" the token owner's Buildkite budget (nearly spent or answered 429).",
		}, []string{"scope"}),
		waitSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "buildkite_exporter_api_throttled_wait_seconds_total",
			Help: "Seconds requests spent waiting before being sent, by scope as in buildkite_exporter_api_throttled_waits_total.",
		}, []string{"scope"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "buildkite_exporter_api_retries_total",
			Help: "Buildkite REST API requests retried, by route template and reason (rate_limited, server_error, transport).",
		}, []string{"endpoint", "reason"}),
		rateRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "buildkite_exporter_api_rate_limit_remaining",
			Help: "Requests left in the current Buildkite rate-limit window as of the latest answer; scope \"rest\" is the organization's budget, \"rest_user\" the token owner's.",
		}, []string{"scope"}),
		rateLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "buildkite_exporter_api_rate_limit_limit",
			Help: "Requests allowed per Buildkite rate-limit window as of the latest answer; scope \"rest\" is the organization's budget, \"rest_user\" the token owner's.",
		}, []string{"scope"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "buildkite_exporter_api_dropped_total",
			Help: fmt.Sprintf("Parts of Buildkite API answers the client dropped, by what: \"builds\" and \"pipelines\" items beyond the page size asked for, "+
				"\"meta_data_keys\" beyond %d per build or longer than %d bytes, \"meta_data_values\" cut to %d bytes, \"jobs\" beyond %d per build, "+
				"\"out_of_window\" builds outside the filters the request sent, \"annotations\" beyond %d per build or with a context longer than %d bytes, "+
				"\"annotation_bodies\" cut to %d bytes.",
				MaxMetaDataKeys, MaxMetaDataKeyLen, MaxMetaDataValueLen, MaxJobsPerBuild,
				MaxAnnotationsPerBuild, MaxAnnotationContextLen, MaxAnnotationBodyLen),
		}, []string{"what"}),
	}
}

func (m *clientMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.waits, m.waitSeconds, m.retries, m.rateRemaining, m.rateLimit, m.dropped}
}

func (m *clientMetrics) register(reg prometheus.Registerer) error {
	// Every what exists from the start, so rate() and increase() see the first drop.
	for _, what := range dropKinds {
		m.dropped.WithLabelValues(what)
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
