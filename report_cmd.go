package main

// The report command and the exporter's /api/v1/report: wiring only; the report itself is
// the report package.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/report"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// reportAPIPath is where a running exporter serves the report's data (--web.enable-report-api).
const reportAPIPath = "/api/v1/report"

// Limits of the report's read paths.
const (
	// reportLockTimeout is how long the report command waits for the log's lock.
	reportLockTimeout = 2 * time.Second
	// reportAPITimeout bounds one report the exporter computes; reportBuildTimeout one the
	// command computes from the log.
	reportAPITimeout   = 90 * time.Second
	reportBuildTimeout = 10 * time.Minute
	// maxReportRedirects is how many same-host redirects --from-url follows.
	maxReportRedirects = 3
)

// maxReportBody is the most of a /api/v1/report answer the command reads: a row is under 2 KiB
// of JSON, so this holds some 60,000 (component, environment) rows. A variable for the tests.
var maxReportBody int64 = 128 << 20

// reportFlags are the flags of the report command.
type reportFlags struct {
	since, until           string
	component, environment string
	format                 string
	output                 string
	groupBy                string
	fromURL                string
	httpConfigFile         string
	timeout                model.Duration
}

func registerReportFlags(cmd *kingpin.CmdClause) *reportFlags {
	r := &reportFlags{}
	cmd.Flag("since", "Start of the report: a duration before --until (7d, 24h, 4w) or a time (2026-11-23, 2026-11-23T09:00:00Z).").
		Default("7d").StringVar(&r.since)
	cmd.Flag("until", "End of the report (exclusive): now, a duration before now, or a time.").Default("now").StringVar(&r.until)
	cmd.Flag("component", "Only this component (the component label, namespace/name outside the default namespace).").StringVar(&r.component)
	cmd.Flag("environment", "Only this environment.").StringVar(&r.environment)
	cmd.Flag("format", "Output format: markdown (chat, reviews), html (one self-contained page with charts) or json (schema_version 1, see report/README.md).").
		Default("markdown").EnumVar(&r.format, report.Formats...)
	cmd.Flag("output", "Write the report to this file (atomically: complete or not at all) instead of standard output.").
		PlaceHolder("FILE").StringVar(&r.output)
	cmd.Flag("group-by", "Add totals per owner (needs the catalog: --catalog.file or --catalog.backstage-url).").
		PlaceHolder("owner").EnumVar(&r.groupBy, "owner")
	cmd.Flag("from-url", "Ask the running exporter at this base URL (its "+reportAPIPath+", served with --web.enable-report-api) instead of reading --storage.path, which the exporter holds locked. Owner and system then come from the exporter's catalog.").
		PlaceHolder("URL").StringVar(&r.fromURL)
	cmd.Flag("http.config.file", "With --from-url: Prometheus HTTP client configuration file (basic_auth with password_file, authorization, tls_config) for an exporter behind --web.config.file.").
		PlaceHolder("FILE").StringVar(&r.httpConfigFile)
	cmd.Flag("from-url.timeout", "With --from-url: how long to wait for the exporter's answer.").Default("2m").SetValue(&r.timeout)
	return r
}

// parseWhen reads a --since/--until value: "now", a duration before base, an RFC 3339 time or
// a date (midnight UTC).
func parseWhen(s string, base, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || s == "now":
		return now, nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return base.Add(-time.Duration(d)), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (7d, 24h) nor a time (2026-11-23 or 2026-11-23T09:00:00Z)", s)
}

// reportWindow resolves since and until: until against now, since against until.
func reportWindow(since, until string, now time.Time) (time.Time, time.Time, error) {
	u, err := parseWhen(until, now, now)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("until: %w", err)
	}
	s, err := parseWhen(since, u, now)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("since: %w", err)
	}
	return s, u, nil
}

// catalogEntities maps component labels to their owner and system.
func catalogEntities(comps []backstage.Component) map[string]report.Entity {
	m := make(map[string]report.Entity, len(comps))
	for _, c := range comps {
		m[c.Label] = report.Entity{Owner: c.Owner, System: c.System}
	}
	return m
}

// runReport is the report command. Exit codes: 0 written, 1 it could not be made, 2 bad flags.
func runReport(f *flags, rf *reportFlags, logger log.Logger) int {
	usage := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "%s report: %s\n", exporterName, fmt.Sprintf(format, a...))
		return 2
	}
	since, until, err := reportWindow(rf.since, rf.until, time.Now())
	if err != nil {
		return usage("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(report.MemoryLimit)
	}

	var rep *report.Report
	if rf.fromURL != "" {
		if len(f.catalogFiles) > 0 || f.backstageURL != "" {
			return usage("--from-url reports with the running exporter's catalog; drop --catalog.file and --catalog.backstage-url")
		}
		q := url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}, "until": {until.UTC().Format(time.RFC3339Nano)}}
		for k, v := range map[string]string{"component": rf.component, "environment": rf.environment, "group_by": rf.groupBy} {
			if v != "" {
				q.Set(k, v)
			}
		}
		rep, err = fetchReport(ctx, rf.fromURL, rf.httpConfigFile, q, time.Duration(rf.timeout))
		if err != nil {
			level.Error(logger).Log("msg", "Cannot get the report from the exporter", "url", rf.fromURL, "err", err)
			return 1
		}
	} else {
		if rf.httpConfigFile != "" {
			return usage("--http.config.file is for --from-url")
		}
		o := report.Options{Since: since, Until: until, Component: rf.component, Environment: rf.environment,
			GroupByOwner: rf.groupBy == "owner", GeneratedAt: time.Now()}
		if len(f.catalogFiles) > 0 || f.backstageURL != "" {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			res, err := loadCatalog(cctx, f, logger)
			cancel()
			if err != nil {
				level.Error(logger).Log("msg", "Cannot read the catalog", "err", err)
				return 1
			}
			for _, p := range res.Problems {
				level.Warn(logger).Log("msg", "Catalog entity skipped: its components have no owner or system in the report", "problem", p)
			}
			o.Catalog = catalogEntities(res.Components)
		}
		if err := o.Validate(); err != nil {
			return usage("%v", err)
		}
		rep, err = reportFromLog(ctx, f.storagePath, o)
		if err != nil {
			level.Error(logger).Log("msg", "Cannot make the report", "err", err)
			return 1
		}
	}
	if err := writeReport(rep, rf.format, rf.output); err != nil {
		level.Error(logger).Log("msg", "Cannot write the report", "err", err)
		return 1
	}
	return 0
}

// reportFromLog opens the log read-only and builds the report from it.
func reportFromLog(ctx context.Context, path string, o report.Options) (*report.Report, error) {
	if path == "" {
		return nil, errors.New("--storage.path is empty: the report reads the exporter's deployment log, or asks a running exporter with --from-url")
	}
	l, err := store.OpenBoltReadOnly(path, store.BoltOptions{LockTimeout: reportLockTimeout})
	var le *store.LockedError
	if errors.As(err, &le) {
		who := "a process that did not record its pid"
		if le.Holder != nil {
			who = le.Holder.String()
		}
		return nil, fmt.Errorf("the deployment log in %s is held by a running exporter (%s), and reading it waits for the exporter's lock: "+
			"ask that exporter instead, with report --from-url=http://<its --web.listen-address> (it serves %s when started with --web.enable-report-api)",
			path, who, reportAPIPath)
	}
	if err != nil {
		return nil, err
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(ctx, reportBuildTimeout)
	defer cancel()
	return report.Build(ctx, l, o)
}

// writeReport writes to standard output, or to a file atomically: a temporary file beside it,
// synced, then renamed over it, so a reader never sees half a report.
func writeReport(rep *report.Report, format, output string) error {
	if output == "" || output == "-" {
		return rep.Write(os.Stdout, format)
	}
	dir := filepath.Dir(output)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(output)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, a name that no longer exists
	if err := rep.Write(tmp, format); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), output)
}

// fetchReport asks a running exporter for the report. The answer is bounded in time (timeout)
// and size (maxReportBody); a redirect is followed only to the same scheme and host, so the
// credentials of httpConfigFile never go anywhere else.
func fetchReport(ctx context.Context, base, httpConfigFile string, q url.Values, timeout time.Duration) (*report.Report, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--from-url %q is not an http(s) base URL such as http://exporter:10150", base)
	}
	if u.User != nil {
		return nil, errors.New("--from-url must not hold credentials; put them in --http.config.file (basic_auth with password_file)")
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + reportAPIPath
	u.RawQuery = q.Encode()

	client := &http.Client{}
	if httpConfigFile != "" {
		cfg, _, err := promconfig.LoadHTTPConfigFile(httpConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--http.config.file: %w", err)
		}
		client, err = promconfig.NewClientFromConfig(*cfg, "report", promconfig.WithUserAgent(version.ComponentUserAgent(exporterName)))
		if err != nil {
			return nil, fmt.Errorf("--http.config.file: %w", err)
		}
	}
	client.Timeout = timeout
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxReportRedirects {
			return fmt.Errorf("more than %d redirects", maxReportRedirects)
		}
		if req.URL.Scheme != u.Scheme || req.URL.Host != u.Host {
			return fmt.Errorf("refusing a redirect to %s://%s: credentials go only to %s", req.URL.Scheme, req.URL.Host, u.Host)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", version.ComponentUserAgent(exporterName))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		hint := ""
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			hint = ": the exporter's --web.config.file asks for credentials; give them with --http.config.file (basic_auth: {username: …, password_file: …})"
		case http.StatusNotFound:
			hint = ": the exporter does not serve " + reportAPIPath + "; start it with --web.enable-report-api"
		case http.StatusTooManyRequests:
			hint = ": the exporter is making another report; try again in a moment"
		}
		return nil, fmt.Errorf("%s answered %s%s (%q)", u.Redacted(), resp.Status, hint, strings.TrimSpace(strings.ToValidUTF8(string(msg), "?")))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		return nil, fmt.Errorf("%s answered with %q, not JSON: is --from-url the exporter's base URL?", u.Redacted(), resp.Header.Get("Content-Type"))
	}
	body := &io.LimitedReader{R: resp.Body, N: maxReportBody + 1}
	rep, err := report.ReadJSON(body)
	if body.N <= 0 {
		return nil, fmt.Errorf("the answer of %s is larger than %d MiB: narrow it with --component or --environment", u.Redacted(), maxReportBody>>20)
	}
	if err != nil {
		return nil, fmt.Errorf("the answer of %s: %w", u.Redacted(), err)
	}
	return rep, nil
}

// reportAPI serves /api/v1/report from the exporter's own log: the same report as the command
// makes, as JSON. One report at a time (a second request meanwhile gets 429), each bounded by
// reportAPITimeout: a report reads the whole log (about 1.5 s for 1,000,000 records), in short
// read transactions that never block the poller's writes.
type reportAPI struct {
	log     report.Log
	catalog func() []backstage.Component
	logger  log.Logger
	busy    chan struct{}
	now     func() time.Time
}

func newReportAPI(l report.Log, catalog func() []backstage.Component, logger log.Logger) *reportAPI {
	return &reportAPI{log: l, catalog: catalog, logger: logger, busy: make(chan struct{}, 1), now: time.Now}
}

func (a *reportAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "use GET", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "since", "until", "component", "environment", "group_by":
		default:
			http.Error(w, fmt.Sprintf("unknown parameter %q (since, until, component, environment, group_by)", k), http.StatusBadRequest)
			return
		}
	}
	since, until := q.Get("since"), q.Get("until")
	if since == "" {
		since = "7d"
	}
	s, u, err := reportWindow(since, until, a.now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o := report.Options{Since: s, Until: u, Component: q.Get("component"), Environment: q.Get("environment"),
		Catalog: catalogEntities(a.catalog()), GeneratedAt: a.now()}
	switch q.Get("group_by") {
	case "":
	case "owner":
		o.GroupByOwner = true
	default:
		http.Error(w, "group_by can only be owner", http.StatusBadRequest)
		return
	}
	if err := o.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	select {
	case a.busy <- struct{}{}:
		defer func() { <-a.busy }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "another report is being made; try again in a moment", http.StatusTooManyRequests)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), reportAPITimeout)
	defer cancel()
	began := time.Now()
	rep, err := report.Build(ctx, a.log, o)
	if err != nil {
		level.Error(a.logger).Log("msg", "Cannot make the report", "err", err)
		http.Error(w, "cannot make the report: "+err.Error(), http.StatusInternalServerError)
		return
	}
	level.Debug(a.logger).Log("msg", "Made a report", "records", rep.RecordsRead, "rows", len(rep.Rows), "duration", time.Since(began))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	if err := rep.WriteJSON(w); err != nil {
		level.Debug(a.logger).Log("msg", "Writing the report failed", "err", err)
	}
}
