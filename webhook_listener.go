package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sync/errgroup"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/collector"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/webguard"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/webhook"
)

// webhookFlags are the settings of the webhook listener (docs/webhooks.md).
type webhookFlags struct {
	listenAddress string
	tokenFile     string
	webConfigFile string
}

func registerWebhookFlags(app *kingpin.Application, f *webhookFlags) {
	app.Flag("webhook.listen-address", "Address of a second listener serving POST "+webhook.Path+" for Buildkite's webhook notification service, apart from /metrics. Empty: no webhooks.").
		Default("").StringVar(&f.listenAddress)
	app.Flag("webhook.token-file", "File holding the token of the webhook notification service (checked against X-Buildkite-Token or the HMAC of X-Buildkite-Signature). Without it the token is read from $BUILDKITE_WEBHOOK_TOKEN.").
		PlaceHolder("FILE").StringVar(&f.tokenFile)
	app.Flag("webhook.web-config.file", "exporter-toolkit web configuration (TLS, basic auth) of the webhook listener.").
		PlaceHolder("FILE").StringVar(&f.webConfigFile)
}

// Timeouts of the webhook listener: Buildkite's deliveries are small and its own timeout short,
// and a peer that trickles its request must not hold a connection.
const (
	webhookReadHeaderTimeout = 5 * time.Second
	webhookReadTimeout       = 15 * time.Second
	webhookWriteTimeout      = 15 * time.Second
	webhookIdleTimeout       = time.Minute
	webhookMaxHeaderBytes    = 16 << 10
)

// webhookReceiver is the webhook listener, set up before the collector runs.
type webhookReceiver struct {
	handler *webhook.Handler
	srv     *http.Server
	flags   *web.FlagConfig
}

// newWebhookReceiver checks the webhook settings and builds the handler; nil, nil when
// --webhook.listen-address is empty. The token is required: a listener that accepts anyone
// would let anyone set the gauges.
func newWebhookReceiver(f *webhookFlags, coll *collector.Collector, reg prometheus.Registerer, logger log.Logger) (*webhookReceiver, error) {
	if f.listenAddress == "" {
		if f.tokenFile != "" || f.webConfigFile != "" {
			level.Warn(logger).Log("msg", "--webhook.token-file or --webhook.web-config.file given without --webhook.listen-address: webhooks are off")
		}
		return nil, nil
	}
	token, err := secret.Load(f.tokenFile, "BUILDKITE_WEBHOOK_TOKEN")
	if err != nil {
		return nil, fmt.Errorf("no webhook token: copy the token of the webhook notification service into --webhook.token-file or $BUILDKITE_WEBHOOK_TOKEN: %w", err)
	}
	if f.webConfigFile != "" {
		if err := webguard.Check(f.webConfigFile); err != nil {
			return nil, fmt.Errorf("invalid --webhook.web-config.file %s: %w", f.webConfigFile, err)
		}
	}
	h, err := webhook.New(webhook.Options{Token: []byte(token), Sink: coll, Logger: logger})
	if err != nil {
		return nil, err
	}
	if err := reg.Register(h); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(webhook.Path, h)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy") })
	addrs := []string{f.listenAddress}
	systemd := false
	return &webhookReceiver{
		handler: h,
		srv: &http.Server{
			Handler:           webguard.New(f.webConfigFile).Handler(mux),
			ReadHeaderTimeout: webhookReadHeaderTimeout,
			ReadTimeout:       webhookReadTimeout,
			WriteTimeout:      webhookWriteTimeout,
			IdleTimeout:       webhookIdleTimeout,
			MaxHeaderBytes:    webhookMaxHeaderBytes,
		},
		flags: &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &f.webConfigFile},
	}, nil
}

// run serves the listener in g until ctx ends.
func (w *webhookReceiver) run(ctx context.Context, g *errgroup.Group, logger log.Logger, slogger *slog.Logger) {
	g.Go(func() error {
		level.Info(logger).Log("msg", "Listening for Buildkite webhooks", "address", *w.flags.WebListenAddresses, "path", webhook.Path)
		err := web.ListenAndServe(w.srv, w.flags, slogger)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		level.Error(logger).Log("msg", "Webhook listener failed", "err", err)
		return fmt.Errorf("webhook listener: %v", err)
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.srv.Shutdown(shutdownCtx); err != nil {
			level.Warn(logger).Log("msg", "Webhook listener shutdown incomplete", "err", err)
		}
		return nil
	})
}

// webhookQueue is the collector's webhook queue: off without a listener.
func webhookQueue(f *webhookFlags) int {
	if f.listenAddress == "" {
		return 0
	}
	return collector.DefaultWebhookQueue
}

// status is what /status shows of the receiver; nil without one.
func (w *webhookReceiver) status() *webhook.Status {
	if w == nil {
		return nil
	}
	st := w.handler.Status()
	return &st
}
