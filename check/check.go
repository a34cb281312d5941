package check

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/common/model"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
)

// DefaultMaxRequests is the request cap when Options.MaxRequests is 0: a fifth of Buildkite's
// per-user minute, enough for the token, the pipeline listings and one builds page per
// organization of a catalog of some hundred pipelines.
const DefaultMaxRequests = 50

// PlaceholderGrafanaURL is the default of --grafana.url: links built on it point nowhere.
const PlaceholderGrafanaURL = "https://grafana.example.com"

// tokenExpiryWarning: a token that expires within this period is a warning.
const tokenExpiryWarning = 7 * 24 * time.Hour

// Options are the inputs of Run: the paths and values of the exporter's flags. Zero values mean
// the flag was not given.
type Options struct {
	// ConfigFile is --config.file; "" means the defaults.
	ConfigFile string
	// WebConfigFile is --web.config.file; "" means plain HTTP without authentication.
	WebConfigFile string
	// Catalog are the catalog sources built from the --catalog.* flags; CatalogErr is why none
	// could be built (no flag, an unreadable Backstage token file).
	Catalog    []backstage.Source
	CatalogErr error
	// GrafanaURL is --grafana.url.
	GrafanaURL string

	// Token is the Buildkite API token; TokenErr is the error of loading it (wrapping
	// secret.ErrMissing when none is configured).
	Token    secret.Secret
	TokenErr error
	// APIURL is --buildkite.api-url; "" means the public API.
	APIURL string
	// RequestsPerMinute paces the requests (--buildkite.requests-per-minute); 0 means the
	// client's default, +Inf no pace.
	RequestsPerMinute float64
	// HTTPClient is optional (tests use the fake's in-process transport).
	HTTPClient *http.Client
	// UserAgent is sent with every request.
	UserAgent string
	// Logger receives the client's retry warnings; nil logs nothing.
	Logger log.Logger

	// Backfill is --history.backfill: the window builds are looked for in. 0 means 30 days.
	Backfill time.Duration
	// MaxRequests caps the API requests (--check.max-requests); 0 means DefaultMaxRequests.
	MaxRequests int
	// Offline skips every check that needs the API (--offline).
	Offline bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Run runs the checklist and returns its report; it never returns early on a finding, so one
// problem does not hide another. It returns when ctx ends too, with what it had checked.
func Run(ctx context.Context, o Options) *Report {
	if o.MaxRequests <= 0 {
		o.MaxRequests = DefaultMaxRequests
	}
	if o.Backfill <= 0 {
		o.Backfill = 30 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Report{SchemaVersion: SchemaVersion}
	r.Summary.MaxRequests = o.MaxRequests
	r.Summary.Offline = o.Offline
	r.Summary.HistoryBackfill = promDuration(o.Backfill)

	cfg := checkConfig(r, o.ConfigFile)
	checkWebConfig(r, o.WebConfigFile)
	components := checkCatalog(ctx, r, o)
	checkGrafana(r, o.GrafanaURL)

	orgs := byOrganization(components)
	r.Summary.Components = len(components)
	r.Summary.Organizations = len(orgs)
	for _, o := range orgs {
		r.Summary.Pipelines += len(o.pipelines)
	}

	var requests atomic.Int64
	if a := newAPIChecks(ctx, r, o, cfg, &requests); a != nil {
		a.run(orgs)
	}
	r.Summary.APIRequests = int(requests.Load())
	r.finish(o.Token.Reveal())
	return r
}

func checkConfig(r *Report, path string) *config.Config {
	const fix = "edit the file; examples/config.yml lists every key with its default"
	if path == "" {
		r.add(SeverityOK, CheckConfigFile, "(none)", "", "no --config.file: the defaults apply")
		return config.Default()
	}
	cfg, err := config.Load(path)
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		for _, p := range ce.Problems {
			subject := path
			if p.Line > 0 {
				subject = fmt.Sprintf("%s:%d", path, p.Line)
			}
			msg := p.Message
			if p.Key != "" {
				msg = p.Key + ": " + msg
			}
			r.add(SeverityError, CheckConfigFile, subject, fix, "%s", msg)
		}
		// The exporter will not start with this file; the API checks use the defaults.
		return config.Default()
	case err != nil:
		r.add(SeverityError, CheckConfigFile, path, "give the path of a readable YAML file, or drop --config.file for the defaults", "%v", err)
		return config.Default()
	}
	r.add(SeverityOK, CheckConfigFile, path, "", "valid")
	return cfg
}

func checkWebConfig(r *Report, path string) {
	if path == "" {
		r.add(SeverityOK, CheckWebConfig, "(none)", "", "no --web.config.file: /metrics is served over plain HTTP without authentication")
		return
	}
	err := web.Validate(path)
	if err == nil {
		r.add(SeverityOK, CheckWebConfig, path, "", "valid: TLS and authentication settings load")
		return
	}
	msg := webConfigMessage(err)
	fix := "see https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md"
	if strings.Contains(err.Error(), "bcrypt") {
		msg = "a basic_auth_users value is not a bcrypt hash (" + msg + ")"
		fix = "basic_auth_users takes bcrypt hashes, not passwords: generate one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`; " + fix
	}
	r.add(SeverityError, CheckWebConfig, path, fix, "serve would refuse this file: %s", msg)
}

// webConfigMessage words exporter-toolkit's errors for a person: its YAML errors name Go types.
func webConfigMessage(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:")
	msg = strings.TrimPrefix(msg, "crypto/bcrypt: ")
	msg = goTypeRE.ReplaceAllString(msg, "")
	return strings.Join(strings.Fields(msg), " ")
}

// catalogFixes say how to fix each kind of catalog problem (the message says what is wrong).
var catalogFixes = map[backstage.Reason]string{
	backstage.ReasonInvalidAnnotation:    "write buildkite.com/pipeline-slug as <org-slug>/<pipeline-slug> (several: comma-separated), as in the pipeline's URL buildkite.com/<org>/<pipeline>",
	backstage.ReasonDuplicatePipeline:    "keep the annotation on the one component that deploys with the pipeline",
	backstage.ReasonDuplicateEntity:      "define each entity once, or make both copies equal",
	backstage.ReasonMissingName:          "give the entity a metadata.name",
	backstage.ReasonInvalidEntity:        "fix the entity's shape: apiVersion, kind, metadata.name, spec as in Backstage's descriptor format",
	backstage.ReasonUnknownAPIVersion:    "use apiVersion backstage.io/v1alpha1 or backstage.io/v1beta1",
	backstage.ReasonUnreadableFile:       "check the --catalog.file path, glob and permissions, and Location targets",
	backstage.ReasonMalformedYAML:        "fix the YAML at the line named",
	backstage.ReasonLocationCycle:        "remove the Location target that leads back to a file already read",
	backstage.ReasonUnsupportedLocation:  "give the file with --catalog.file, or read the catalog from --catalog.backstage-url",
	backstage.ReasonBackstageAPI:         "check --catalog.backstage-url, the Backstage token ($BACKSTAGE_TOKEN or --catalog.backstage-token-file) and that Backstage is up",
	backstage.ReasonComponentSpansShards: "give all of the component's organizations to one shard (--buildkite.organization), or split the component",
}

func checkCatalog(ctx context.Context, r *Report, o Options) []backstage.Component {
	if o.CatalogErr != nil {
		r.add(SeverityError, CheckCatalog, "(catalog)", "give --catalog.file (catalog-info.yaml files, directories or globs) or --catalog.backstage-url",
			"%v", o.CatalogErr)
		return nil
	}
	res, err := backstage.Load(ctx, o.Catalog...)
	for _, p := range res.Problems {
		subject := cmp.Or(p.Source, "(catalog)")
		msg := p.Message
		if p.Entity != "" {
			msg = p.Entity + ": " + msg
		}
		outcome := "the exporter skips it"
		if p.Reason == backstage.ReasonComponentSpansShards {
			outcome = "the exporter counts only the pipelines of its organizations"
		}
		r.add(SeverityError, CheckCatalog, subject, cmp.Or(catalogFixes[p.Reason], "see the message"),
			"%s (%s); %s", msg, p.Reason, outcome)
	}
	if err != nil && len(res.Problems) == 0 {
		r.add(SeverityError, CheckCatalog, "(catalog)", "check the --catalog.* flags", "%v", err)
	}
	if len(res.Components) == 0 {
		if len(res.Problems) == 0 && err == nil {
			r.add(SeverityWarning, CheckCatalog, "(catalog)",
				"annotate Components with buildkite.com/pipeline-slug: <org-slug>/<pipeline-slug>, or point --catalog.* at the catalog that has them",
				"no component names a Buildkite pipeline: the exporter has nothing to count")
		}
		return nil
	}
	pipelines := map[backstage.PipelineRef]bool{}
	orgs := map[string]bool{}
	for _, c := range res.Components {
		for _, p := range c.Pipelines {
			pipelines[p] = true
			orgs[p.Org] = true
		}
	}
	r.add(SeverityOK, CheckCatalog, "(catalog)", "", "%s linked to %s in %s",
		plural(len(res.Components), "component"), plural(len(pipelines), "pipeline"), plural(len(orgs), "organization"))
	return res.Components
}

func checkGrafana(r *Report, url string) {
	if url == "" || strings.TrimSuffix(url, "/") == PlaceholderGrafanaURL {
		r.add(SeverityWarning, CheckGrafanaURL, cmp.Or(url, "(none)"),
			"set --grafana.url to your Grafana's root URL, the one browsers open",
			"--grafana.url is the placeholder: the dashboard links of the backstage command would point nowhere")
		return
	}
	r.add(SeverityOK, CheckGrafanaURL, url, "", "dashboard links point here")
}

// annotated is a pipeline the catalog names, with the components that name it.
type annotated struct {
	slug       string
	components []string // "component:default/shop (catalog/shop.yaml)"
}

// orgPipelines are the annotated pipelines of one organization, sorted by slug.
type orgPipelines struct {
	org       string
	pipelines []*annotated
}

func byOrganization(components []backstage.Component) []*orgPipelines {
	byOrg := map[string]map[string]*annotated{}
	for _, c := range components {
		for _, p := range c.Pipelines {
			m := byOrg[p.Org]
			if m == nil {
				m = map[string]*annotated{}
				byOrg[p.Org] = m
			}
			a := m[p.Pipeline]
			if a == nil {
				a = &annotated{slug: p.Pipeline}
				m[p.Pipeline] = a
			}
			who := c.Ref
			if c.Source != "" {
				who += " (" + c.Source + ")"
			}
			a.components = append(a.components, who)
		}
	}
	var out []*orgPipelines
	for org, m := range byOrg {
		op := &orgPipelines{org: org}
		for _, a := range m {
			op.pipelines = append(op.pipelines, a)
		}
		sort.Slice(op.pipelines, func(i, j int) bool { return op.pipelines[i].slug < op.pipelines[j].slug })
		out = append(out, op)
	}
	slices.SortFunc(out, func(a, b *orgPipelines) int { return strings.Compare(a.org, b.org) })
	return out
}

// promDuration formats a duration the Prometheus way, as the flags take it: 30d, 2h.
func promDuration(d time.Duration) string { return model.Duration(d).String() }
