// Command buildkite_deployments_exporter serves Prometheus metrics about the deployments of the
// Backstage components whose pipelines run on Buildkite. This file only parses flags, builds the
// logger, wires the parts together and serves HTTP; everything else lives in the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"golang.org/x/sync/errgroup"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/alerts"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/badge"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	checklist "github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/check"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/collector"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/dashboards"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/logging"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/webguard"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/reload"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/status"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

const exporterName = "buildkite_deployments_exporter"

// requiredScopes are the Buildkite token scopes the exporter needs, checked by serve and check.
var requiredScopes = []string{buildkite.ScopeReadBuilds, buildkite.ScopeReadPipelines}

// flags holds every command-line setting; secrets are never among them, only the files holding them.
type flags struct {
	metrics                metricsFlags
	metricsPath            string
	disableExporterMetrics bool
	maxRequests            int
	apiURL                 string
	tokenFile              string
	requestsPerMinute      float64
	organizations          []string
	catalogFiles           []string
	backstageURL           string
	backstageTokenFile     string
	catalogRefresh         model.Duration
	configFile             string
	pollInterval           model.Duration
	backfill               model.Duration
	storagePath            string
	retention              model.Duration
	grafanaURL             string
	runbookURL             string
	log                    logging.Config
	toolkit                *web.FlagConfig
	enableReportAPI        bool
	webhook                webhookFlags
	deployments            deploymentFlags
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	app := kingpin.New(exporterName, "Prometheus exporter for Buildkite deployments of Backstage components.")
	f := registerFlags(app)
	serveCmd := app.Command("serve", "Poll Buildkite and serve /metrics (the default).").Default()
	checkCmd := app.Command("check", "The troubleshooting checklist: validate --config.file, --web.config.file and the catalog, then ask the Buildkite API about the token, organizations, pipelines and recent builds. Exits 1 on any error, 0 on warnings only.")
	cf := registerCheckFlags(checkCmd)
	rulesCmd := app.Command("rules", "Print the bundled Prometheus recording and alert rules, with the thresholds of --config.file.")
	grafanaAlertsCmd, gaf := registerGrafanaAlerts(app)
	rebuildCmd, rf := registerRebuild(app)
	var badgesURL string
	backstageCmd := app.Command("backstage", "Print, for every component in the catalog, the Backstage annotations and links that point at the dashboards and alerts, and its README badge lines.")
	backstageCmd.Flag("badges.url", "The exporter's URL as README readers reach it (a reverse proxy that exposes only /badges/, see docs/badges.md), for the badge lines.").
		Default(placeholderBadgesURL).StringVar(&badgesURL)
	reportCmd := app.Command("report", "Deployment performance report (DORA keys, percentiles, change against the previous period) per component and environment, from the deployment log in --storage.path or from a running exporter (--from-url).")
	repf := registerReportFlags(reportCmd)
	app.Version(version.Print(exporterName))
	app.UsageWriter(os.Stdout)
	app.HelpFlag.Short('h')
	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v (try --help)\n", exporterName, err)
		return 2
	}

	logger, slogger, err := logging.New(f.log, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if cmd == checkCmd.FullCommand() {
		return check(f, cf, logger) // reports every --config.file problem itself
	}
	if cmd == reportCmd.FullCommand() {
		return runReport(f, repf, logger) // reads the log, needs no --config.file
	}
	cfg, err := config.Load(f.configFile)
	if err != nil {
		level.Error(logger).Log("msg", "Invalid configuration file; fix it or run without --config.file for the defaults", "file", f.configFile, "err", err)
		return 1
	}
	cfg = f.deployments.apply(cfg)

	switch cmd {
	case rulesCmd.FullCommand():
		return printRules(cfg, f, logger)
	case rebuildCmd.FullCommand():
		return runRebuild(cfg, f, rf, os.Stdin, isTerminal(os.Stdin), os.Stdout, os.Stderr)
	case grafanaAlertsCmd.FullCommand():
		return printGrafanaAlerts(cfg, f, gaf, logger)
	case backstageCmd.FullCommand():
		return printBackstage(cfg, f, badgesURL, logger)
	case serveCmd.FullCommand():
		return serve(f, cfg, logger, slogger)
	}
	return 2
}

func registerFlags(app *kingpin.Application) *flags {
	f := &flags{}
	f.metrics.register(app)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&f.metricsPath)
	app.Flag("web.disable-exporter-metrics", "Exclude the exporter's own Go and process metrics from /metrics.").BoolVar(&f.disableExporterMetrics)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests; 0 disables the limit.").Default("40").IntVar(&f.maxRequests)
	app.Flag("buildkite.api-url", "Base URL of the Buildkite REST API.").Default(buildkite.DefaultBaseURL).StringVar(&f.apiURL)
	app.Flag("buildkite.token-file", "File holding the Buildkite API access token (scopes read_builds, read_pipelines). Without it the token is read from $BUILDKITE_API_TOKEN.").
		PlaceHolder("FILE").StringVar(&f.tokenFile)
	app.Flag("buildkite.requests-per-minute", "Requests per minute this exporter may send to the Buildkite API. Buildkite allows 50 per user and 200 per organization, shared with every other client of the token's user and organization.").
		Default(fmt.Sprint(buildkite.DefaultRequestsPerMinute)).Float64Var(&f.requestsPerMinute)
	app.Flag("buildkite.organization", "Poll only the pipelines of this Buildkite organization (slug), for one shard of several instances with their own tokens. Repeatable; without it every organization of the catalog.").
		PlaceHolder("SLUG").StringsVar(&f.organizations)
	app.Flag("catalog.file", "Backstage catalog-info.yaml file, directory (walked for *.yaml, *.yml) or glob. Repeatable.").
		PlaceHolder("PATH").StringsVar(&f.catalogFiles)
	app.Flag("catalog.backstage-url", "Base URL of a Backstage instance whose catalog API lists the components (e.g. https://backstage.example.com).").
		PlaceHolder("URL").StringVar(&f.backstageURL)
	app.Flag("catalog.backstage-token-file", "File holding the Backstage API token. Without it the token is read from $BACKSTAGE_TOKEN.").
		PlaceHolder("FILE").StringVar(&f.backstageTokenFile)
	app.Flag("catalog.refresh-interval", "How often the catalog is re-read (also on SIGHUP).").Default("5m").SetValue(&f.catalogRefresh)
	app.Flag("config.file", "YAML file with environment rules, SLO objectives and alert thresholds. Defaults apply without it.").
		PlaceHolder("FILE").StringVar(&f.configFile)
	app.Flag("poll.interval", "How often each organization's builds are polled.").Default("30s").SetValue(&f.pollInterval)
	app.Flag("history.backfill", "How much history the first start reads.").Default("30d").SetValue(&f.backfill)
	app.Flag("storage.path", "Directory of the deployment log, which keeps counters across restarts. Empty keeps it in memory only.").
		Default("./data").StringVar(&f.storagePath)
	app.Flag("storage.retention", "Deployment records older than this are compacted into per-series totals.").Default("400d").SetValue(&f.retention)
	app.Flag("grafana.url", "Grafana base URL, for the links printed by the backstage command.").Default(checklist.PlaceholderGrafanaURL).StringVar(&f.grafanaURL)
	app.Flag("alerts.runbook-url", "Base URL of the runbook the rules' runbook_url annotations point at (rules command).").
		Default(alerts.DefaultRunbookURL).StringVar(&f.runbookURL)
	registerWebhookFlags(app, &f.webhook)
	registerDeploymentFlags(app, &f.deployments)
	logging.AddFlags(app, &f.log)
	app.Flag("web.enable-report-api", "Serve "+reportAPIPath+", the data of the report command (report --from-url), behind --web.config.file like /metrics. Each request reads the whole deployment log; one runs at a time.").
		BoolVar(&f.enableReportAPI)
	f.toolkit = kingpinflag.AddFlags(app, ":10150")
	return f
}

// catalogSources builds the catalog sources from the --catalog.* flags: files first, so that an
// entity found in both keeps its file version.
func catalogSources(f *flags, logger log.Logger) ([]backstage.Source, error) {
	var sources []backstage.Source
	if len(f.catalogFiles) > 0 {
		sources = append(sources, backstage.NewFileSource(f.catalogFiles, logger))
	}
	if f.backstageURL != "" {
		token, err := secret.Load(f.backstageTokenFile, "BACKSTAGE_TOKEN")
		if err != nil && !errors.Is(err, secret.ErrMissing) {
			return nil, err
		}
		api, err := backstage.NewAPISource(f.backstageURL, token, nil, logger)
		if err != nil {
			return nil, err
		}
		sources = append(sources, api)
	}
	if len(sources) == 0 {
		return nil, errors.New("no catalog: give --catalog.file (catalog-info.yaml files or directories) or --catalog.backstage-url")
	}
	if len(f.organizations) > 0 {
		for i, src := range sources {
			sources[i] = backstage.NewShardSource(src, f.organizations)
		}
	}
	return sources, nil
}

// loadCatalog reads the catalog once, for the commands that print from it (backstage,
// grafana-alerts, rebuild, report). It fails only when no component could be read: entities
// skipped alongside are in the result's Problems, for the caller to name.
func loadCatalog(ctx context.Context, f *flags, logger log.Logger) (backstage.Result, error) {
	sources, err := catalogSources(f, logger)
	if err != nil {
		return backstage.Result{}, err
	}
	res, err := backstage.Load(ctx, sources...)
	if err != nil && len(res.Components) == 0 {
		return res, err
	}
	return res, nil
}

func serve(f *flags, cfg *config.Config, logger log.Logger, slogger *slog.Logger) int {
	webConfig := ""
	if f.toolkit.WebConfigFile != nil {
		webConfig = *f.toolkit.WebConfigFile
	}
	if webConfig != "" {
		if err := webguard.Check(webConfig); err != nil {
			level.Error(logger).Log("msg", "Invalid --web.config.file", "file", webConfig, "err", err)
			return 1
		}
	}
	level.Info(logger).Log("msg", "Starting "+exporterName, "version", version.Info())
	level.Info(logger).Log("msg", "Build context", "build_context", version.BuildContext())

	token, err := secret.Load(f.tokenFile, "BUILDKITE_API_TOKEN")
	if err != nil {
		level.Error(logger).Log("msg", "No Buildkite API token: create one with the read_builds and read_pipelines scopes and pass it with --buildkite.token-file or $BUILDKITE_API_TOKEN", "err", err)
		return 1
	}
	sources, err := catalogSources(f, log.With(logger, "component", "catalog"))
	if err != nil {
		level.Error(logger).Log("msg", "Cannot set up the catalog", "err", err)
		return 1
	}
	catalog := backstage.NewWatcher(sources, time.Duration(f.catalogRefresh), log.With(logger, "component", "catalog"))

	reg := prometheus.NewRegistry()
	exporterReg := prometheus.NewRegistry()
	exporterReg.MustRegister(versioncollector.NewCollector("buildkite_exporter"))
	if !f.disableExporterMetrics {
		exporterReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}

	client, err := buildkite.NewClient(buildkite.Config{
		BaseURL:           f.apiURL,
		Token:             token,
		RequestsPerMinute: f.requestsPerMinute,
		UserAgent:         version.ComponentUserAgent(exporterName),
		Logger:            log.With(logger, "component", "buildkite"),
		Registerer:        reg,
	})
	if err != nil {
		level.Error(logger).Log("msg", "Invalid Buildkite client settings", "err", err)
		return 1
	}
	tokenCheck := buildkite.NewTokenChecker(client, requiredScopes, log.With(logger, "component", "token"), reg)

	var deployLog store.Log = store.NewMemory()
	if f.storagePath != "" {
		bolt, err := store.OpenBolt(f.storagePath, store.BoltOptions{Logger: log.With(logger, "component", "store")})
		if err != nil {
			level.Error(logger).Log("msg", "Cannot open the deployment log", "path", f.storagePath, "err", err)
			return 1
		}
		deployLog = bolt
	} else {
		level.Warn(logger).Log("msg", "No --storage.path: counters restart from zero on every restart")
	}
	defer deployLog.Close()

	// The deployment series are encoded once per snapshot and format, by the poller when it
	// publishes (Warm), not at every scrape: with 1,000 components they are over 150,000 lines.
	bodies := exposition.NewBodies(exposition.BodiesOpts{ReleaseMemory: true, Body: f.metrics.bodyOptions()})
	coll, err := collector.New(collector.Options{
		Client:       client,
		Catalog:      func() []backstage.Component { return catalog.Snapshot().Components },
		Log:          deployLog,
		Config:       cfg,
		PollInterval: time.Duration(f.pollInterval),
		Backfill:     time.Duration(f.backfill),
		Retention:    time.Duration(f.retention),
		Logger:       log.With(logger, "component", "collector"),
		OnPublish:    bodies.Warm,
		CatalogReady: catalog.Ready,
		// For the backfill's time estimate.
		RequestsPerMinute: f.requestsPerMinute,
		WebhookQueue:      webhookQueue(&f.webhook),
		ReadAnnotations:   f.deployments.readAnnotations,
	})
	if err != nil {
		level.Error(logger).Log("msg", "Cannot set up the collector", "err", err)
		return 1
	}
	reg.MustRegister(collector.NewCatalogCollector(catalog.Snapshot), coll.HealthCollector())
	hooks, err := newWebhookReceiver(&f.webhook, coll, reg, log.With(logger, "component", "webhook"))
	if err != nil {
		level.Error(logger).Log("msg", "Cannot set up the webhook listener", "err", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP is caught before any member starts: until then its default action ends the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Every member runs until ctx ends; the first that fails (the collector, the HTTP server)
	// cancels ctx for the others. Wait returns only once all have stopped, so the deferred close
	// of the deployment log comes after the collector's last write.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { catalog.Run(ctx); return nil })
	g.Go(func() error { tokenCheck.Run(ctx); return nil })
	if hooks != nil {
		hooks.run(ctx, g, logger, slogger)
	}
	g.Go(func() error {
		// Poll only once the catalog has been read: a first cycle over the empty catalog would
		// finish at once and make /-/ready claim a poll that never happened.
		select {
		case <-catalog.Loaded():
		case <-ctx.Done():
			return nil
		}
		if err := coll.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			level.Error(logger).Log("msg", "Collector stopped", "err", err)
			return err
		}
		return nil
	})
	reloader := reload.New(reg, log.With(logger, "component", "reload"),
		reload.Step{Name: "config file", Run: func(context.Context) error {
			next, err := config.Load(f.configFile)
			if err != nil {
				return err
			}
			next = f.deployments.apply(next)
			if !reflect.DeepEqual(next.Alerts, cfg.Alerts) || !reflect.DeepEqual(next.SLOs.Window, cfg.SLOs.Window) {
				level.Warn(logger).Log("msg", "Alert thresholds or the SLO window changed: they live in the rules, not in this process; regenerate them with the rules command and reload Prometheus")
			}
			coll.SetConfig(next)
			cfg = next
			return nil
		}},
		reload.Step{Name: "web config file", Run: func(context.Context) error {
			if webConfig == "" {
				return nil
			}
			return webguard.Check(webConfig)
		}},
		reload.Step{Name: "catalog", Run: catalog.Refresh},
	)
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				level.Info(logger).Log("msg", "SIGHUP: reloading the config file and the catalog")
				_ = reloader.Reload(ctx) // logged by the reloader
			}
		}
	})

	var reportHandler http.Handler
	if f.enableReportAPI {
		reportHandler = newReportAPI(deployLog, func() []backstage.Component { return catalog.Snapshot().Components }, log.With(logger, "component", "report"))
	}
	srv := &http.Server{
		Handler: webguard.New(webConfig).Handler(newMux(f, coll, bodies, reloader, reportHandler, statusSource{coll, catalog, client, hooks.status},
			prometheus.Gatherers{exporterReg, reg}, exporterReg, logger, func() bool { return catalog.Ready() && tokenCheck.Ready() && coll.Ready() })),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	g.Go(func() error {
		err := web.ListenAndServe(srv, f.toolkit, slogger)
		if errors.Is(err, http.ErrServerClosed) {
			return nil // Shutdown below
		}
		level.Error(logger).Log("msg", "HTTP server failed", "err", err)
		// An error even if err is nil: a server that stopped on its own must not leave the
		// process running without /metrics.
		return fmt.Errorf("HTTP server: %v", err)
	})
	g.Go(func() error {
		<-ctx.Done()
		level.Info(logger).Log("msg", "Shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			level.Warn(logger).Log("msg", "HTTP shutdown incomplete", "err", err)
		}
		return nil
	})
	// The failing member has logged why; a signal is a clean stop. Once asked to stop, the
	// process ends within shutdownGrace even if a member hangs (a read that ignores its
	// deadline), rather than living on without its HTTP server.
	waited := make(chan error, 1)
	go func() { waited <- g.Wait() }()
	var stopErr error
	select {
	case stopErr = <-waited:
	case <-ctx.Done():
		select {
		case stopErr = <-waited:
		case <-time.After(shutdownGrace):
			level.Error(logger).Log("msg", "Shutdown did not finish in time; exiting anyway", "grace", shutdownGrace)
			return 1
		}
	}
	if stopErr != nil {
		return 1
	}
	return 0
}

// shutdownGrace is how long a stopping process waits for its members.
const shutdownGrace = 30 * time.Second

// newMux serves the metrics, health and readiness endpoints and the landing page. /metrics is
// the exporter's own registries (gathered at each scrape, merged as node_exporter merges them)
// followed by the deployment series of the latest snapshot, from bodies.
func newMux(f *flags, coll *collector.Collector, bodies *exposition.Bodies, reloader *reload.Reloader, reportAPI http.Handler, src status.Source,
	own prometheus.Gatherer, exporterReg *prometheus.Registry, logger log.Logger, ready func() bool,
) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/-/reload", reloader.Handler(time.Minute))
	// Badges render the same snapshot as /metrics, behind the same web config; docs/badges.md
	// says how to expose only /badges/ publicly.
	mux.Handle(badge.Prefix, badge.NewHandler(coll.Snapshot, badge.Options{MaxAge: time.Duration(f.pollInterval)}))
	if reportAPI != nil {
		mux.Handle(reportAPIPath, reportAPI)
	}
	mux.Handle("/status", status.NewHandler(src, status.Options{Version: version.Version, Logger: log.With(logger, "component", "status")}))
	handler := exposition.NewHandler(coll.Snapshot, own, exposition.HandlerOpts{
		Logger: logger, MaxRequestsInFlight: f.maxRequests, Bodies: bodies,
	})
	mux.Handle(f.metricsPath, promhttp.InstrumentMetricHandler(exporterReg, handler))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "Not ready: waiting for a complete catalog read, a valid token and the first successful poll of every organization (see /status, the log and buildkite_exporter_token_missing_scopes)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready")
	})
	if f.metricsPath != "/" {
		links := []web.LandingLinks{
			{Address: f.metricsPath, Text: "Metrics"},
			{Address: "/status", Text: "Status: components, pipelines and their problems"},
			{Address: "/-/healthy", Text: "Health"},
			{Address: "/-/ready", Text: "Readiness"},
		}
		if reportAPI != nil {
			links = append(links, web.LandingLinks{Address: reportAPIPath, Text: "Report data of the last 7 days (JSON)"})
		}
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "Buildkite deployments exporter",
			Description: "Deployment frequency, duration, failures, recovery, lead time and SLOs of Backstage components built on Buildkite",
			Version:     version.Info(),
			Links:       links,
			// The exporter serves no /debug/pprof: show only links that work.
			Profiling: "false",
		})
		if err != nil {
			level.Error(logger).Log("msg", "Cannot build the landing page", "err", err)
		} else {
			mux.Handle("/", landing)
		}
	}
	return mux
}

func printRules(cfg *config.Config, f *flags, logger log.Logger) int {
	out, err := alerts.Render(alerts.ParamsFromConfig(cfg, f.runbookURL))
	if err != nil {
		level.Error(logger).Log("msg", "Cannot render the rules", "err", err)
		return 1
	}
	os.Stdout.Write(out)
	return 0
}

// checkFlags are the flags of the check command.
type checkFlags struct {
	output      string
	maxRequests int
	offline     bool
}

func registerCheckFlags(cmd *kingpin.CmdClause) *checkFlags {
	c := &checkFlags{}
	cmd.Flag("output", "Output format: table (for a person) or json (schema_version 1, see the README).").
		Default("table").EnumVar(&c.output, "table", "json")
	cmd.Flag("check.max-requests", "At most this many Buildkite API requests; what the cap leaves out is listed as not checked.").
		Default(fmt.Sprint(checklist.DefaultMaxRequests)).IntVar(&c.maxRequests)
	cmd.Flag("offline", "Do not ask the Buildkite API: check the files and the catalog only (CI, init containers).").BoolVar(&c.offline)
	return c
}

// check runs the troubleshooting checklist and prints it as a table or JSON; it exits 1 when a
// finding is an error, so it fits a CI step or an init container.
func check(f *flags, cf *checkFlags, logger log.Logger) int {
	if cf.maxRequests < 1 {
		fmt.Fprintf(os.Stderr, "%s: --check.max-requests must be at least 1 (use --offline to ask the API nothing)\n", exporterName)
		return 2
	}
	sources, catalogErr := catalogSources(f, log.NewNopLogger())
	token, tokenErr := secret.Load(f.tokenFile, "BUILDKITE_API_TOKEN")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	report := checklist.Run(ctx, checklist.Options{
		ConfigFile:        f.configFile,
		WebConfigFile:     *f.toolkit.WebConfigFile,
		Catalog:           sources,
		CatalogErr:        catalogErr,
		GrafanaURL:        f.grafanaURL,
		Token:             token,
		TokenErr:          tokenErr,
		APIURL:            f.apiURL,
		RequestsPerMinute: f.requestsPerMinute,
		UserAgent:         version.ComponentUserAgent(exporterName),
		Logger:            logger,
		Backfill:          time.Duration(f.backfill),
		MaxRequests:       cf.maxRequests,
		Offline:           cf.offline,
	})
	write := report.WriteTable
	if cf.output == "json" {
		write = report.WriteJSON
	}
	if err := write(os.Stdout); err != nil {
		level.Error(logger).Log("msg", "Cannot write the report", "err", err)
		return 1
	}
	return report.ExitCode()
}

// catalogToPrint reads the catalog for a command that prints from it (backstage,
// grafana-alerts) and names every entity left out on stderr, so that stdout holds only the
// valid ones and nobody mistakes it for the whole catalog. ok is false when nothing could be
// read (logged).
func catalogToPrint(f *flags, logger log.Logger) (res backstage.Result, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := loadCatalog(ctx, f, logger)
	if err != nil {
		level.Error(logger).Log("msg", "Cannot read the catalog", "err", err)
		return res, false
	}
	for _, p := range res.Problems {
		fmt.Fprintf(os.Stderr, "skipped: %s\n", p)
	}
	return res, true
}

func printBackstage(cfg *config.Config, f *flags, badgesURL string, logger log.Logger) int {
	res, ok := catalogToPrint(f, logger)
	if !ok {
		return 1
	}
	if strings.TrimSuffix(f.grafanaURL, "/") == checklist.PlaceholderGrafanaURL {
		fmt.Fprintf(os.Stderr, "warning: --grafana.url is the placeholder %s: the links below point nowhere; set --grafana.url to your Grafana's root URL\n", checklist.PlaceholderGrafanaURL)
	}
	if strings.TrimSuffix(badgesURL, "/") == placeholderBadgesURL {
		fmt.Fprintf(os.Stderr, "warning: --badges.url is the placeholder %s: the badge lines point nowhere; set it to where readers reach the exporter's /badges/\n", placeholderBadgesURL)
	}
	opts := dashboards.BackstageOptions{BadgeURL: badgesURL, Environments: slugEnvironments(cfg)}
	if err := dashboards.BackstageAnnotationsWith(os.Stdout, res.Components, f.grafanaURL, opts); err != nil {
		level.Error(logger).Log("msg", "Cannot print the annotations", "err", err)
		return 1
	}
	if len(res.Problems) > 0 {
		fmt.Fprintf(os.Stderr, "%d catalog problem(s): the entities above were skipped; run the check command for fixes\n", len(res.Problems))
		return 1
	}
	return 0
}
