package webhook

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	eventsDesc = prometheus.NewDesc("buildkite_exporter_webhook_events_total",
		"Buildkite webhook deliveries, by event (a known name or other) and result (accepted, ignored, rejected_auth, rejected_replay, rejected_body).",
		[]string{"event", "result"}, nil)
	lastEventDesc = prometheus.NewDesc("buildkite_exporter_webhook_last_event_timestamp_seconds",
		"When the last accepted webhook delivery arrived (0: none since the exporter started).", nil, nil)
	droppedDesc = prometheus.NewDesc("buildkite_exporter_webhook_events_dropped_total",
		"Build events of linked pipelines dropped because the collector's queue was full (counted as ignored too); the next poll reads their builds.", nil, nil)
)

// stats are the handler's counters. Every (known event, result) pair and other exist from the
// start, so that rate() sees the first rejection.
type stats struct {
	mu       sync.Mutex
	counts   map[[2]string]uint64
	last     time.Time
	droppedN uint64
}

func newStats() *stats {
	s := &stats{counts: map[[2]string]uint64{}}
	for _, e := range append(Events[:len(Events):len(Events)], EventOther) {
		for _, r := range Results {
			s.counts[[2]string{e, r}] = 0
		}
	}
	return s
}

func (s *stats) count(event, result string, received time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[[2]string{event, result}]++
	if result == ResultAccepted && received.After(s.last) {
		s.last = received
	}
}

func (s *stats) dropped() {
	s.mu.Lock()
	s.droppedN++
	s.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (h *Handler) Describe(ch chan<- *prometheus.Desc) {
	ch <- eventsDesc
	ch <- lastEventDesc
	ch <- droppedDesc
}

// Collect implements prometheus.Collector.
func (h *Handler) Collect(ch chan<- prometheus.Metric) {
	st := h.Status()
	for _, c := range st.Counts {
		ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(c.Count), c.Event, c.Result)
	}
	last := 0.0
	if !st.LastEvent.IsZero() {
		last = float64(st.LastEvent.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(lastEventDesc, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(st.Dropped))
}

// Status is what /status shows of the receiver.
type Status struct {
	// LastEvent is when the last accepted delivery arrived; zero: none.
	LastEvent time.Time
	// Counts are every (event, result) pair, sorted by event then result order.
	Counts  []Count
	Dropped uint64
}

// Count is one series of buildkite_exporter_webhook_events_total.
type Count struct {
	Event, Result string
	Count         uint64
}

// Status returns a copy of the counters.
func (h *Handler) Status() Status {
	s := h.stats
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{LastEvent: s.last, Dropped: s.droppedN}
	for _, e := range append(Events[:len(Events):len(Events)], EventOther) {
		for _, r := range Results {
			st.Counts = append(st.Counts, Count{Event: e, Result: r, Count: s.counts[[2]string{e, r}]})
		}
	}
	return st
}
