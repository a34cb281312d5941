// Package reload re-reads the exporter's configuration on SIGHUP and POST /-/reload, as
// blackbox_exporter and Prometheus do: a file that does not load keeps the running
// configuration, the error is logged and answered, and
// buildkite_exporter_config_last_reload_successful goes to 0 until a reload succeeds.
package reload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
)

// Step is one thing a reload re-reads (the config file, the catalog). It must leave what is
// running untouched when it fails.
type Step struct {
	Name string
	Run  func(ctx context.Context) error
}

// Reloader runs the steps one reload at a time.
type Reloader struct {
	steps  []Step
	logger log.Logger

	mu        sync.Mutex // one reload at a time
	success   prometheus.Gauge
	timestamp prometheus.Gauge
}

// New returns a Reloader of steps whose metrics are registered with reg (when not nil). The
// configuration the process started with counts as a successful load.
func New(reg prometheus.Registerer, logger log.Logger, steps ...Step) *Reloader {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	r := &Reloader{steps: steps, logger: logger,
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "buildkite_exporter_config_last_reload_successful",
			Help: "Whether the last configuration reload (SIGHUP or POST /-/reload) succeeded (1) or kept the running configuration (0).",
		}),
		timestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "buildkite_exporter_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load, the start included.",
		}),
	}
	r.success.Set(1)
	r.timestamp.SetToCurrentTime()
	if reg != nil {
		reg.MustRegister(r.success, r.timestamp)
	}
	return r
}

// Reload runs every step, even after one failed (the catalog is re-read when the config file
// is broken), and returns their errors joined.
func (r *Reloader) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, s := range r.steps {
		if err := s.Run(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		r.success.Set(0)
		level.Error(r.logger).Log("msg", "Reload failed; the running configuration is kept", "err", err)
		return err
	}
	r.success.Set(1)
	r.timestamp.SetToCurrentTime()
	level.Info(r.logger).Log("msg", "Reloaded the configuration")
	return nil
}

// Handler serves POST (or PUT) /-/reload: 200 when the reload succeeded, 500 with the error
// otherwise, 405 for other methods.
func (r *Reloader) Handler(timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost && req.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "This endpoint requires a POST or PUT request.", http.StatusMethodNotAllowed)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), timeout)
		defer cancel()
		if err := r.Reload(ctx); err != nil {
			http.Error(w, "failed to reload config: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "Reloaded")
	})
}
