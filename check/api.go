package check

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/suggest"
)

// recentDeployments is how many of a pipeline's latest deployment builds the environment check
// reads.
const recentDeployments = 20

// pipelineBuildsPage is the page size of a per-pipeline builds request: enough deployments for
// the environment check in one request.
const pipelineBuildsPage = 50

var goTypeRE = regexp.MustCompile(` (?:in type|into) \S+`)

const tokenFix = "create a token at https://buildkite.com/user/api-access-tokens with the scopes read_builds and read_pipelines for the organizations of the catalog, and give it with --buildkite.token-file or $BUILDKITE_API_TOKEN"

// apiChecks are the checks that ask the Buildkite API, within the request cap.
type apiChecks struct {
	ctx      context.Context
	r        *Report
	o        Options
	cfg      *config.Config
	classify deployment.Classifier
	client   *buildkite.Client
	requests *atomic.Int64
	// scopes the token has (only read_builds and read_pipelines matter here)
	readBuilds, readPipelines bool
	// capped collects, per check and organization, what the request cap left out.
	capped map[[2]string][]string
}

// newAPIChecks checks the token's presence and, unless offline, the token itself; it returns
// nil when the API checks cannot go on.
func newAPIChecks(ctx context.Context, r *Report, o Options, cfg *config.Config, requests *atomic.Int64) *apiChecks {
	if o.TokenErr != nil {
		if errors.Is(o.TokenErr, secret.ErrMissing) {
			r.add(SeverityError, CheckToken, "token", tokenFix,
				"no Buildkite API token: serve refuses to start without one")
		} else {
			r.add(SeverityError, CheckToken, "token", "check that the file exists, is readable and holds the token alone; "+tokenFix,
				"%v", o.TokenErr)
		}
		skipAPI(r, o.Offline, "there is no usable token")
		return nil
	}
	if o.Offline {
		r.add(SeverityOK, CheckToken, "token", "", "a token is configured (not sent: --offline)")
		skipAPI(r, true, "")
		return nil
	}
	hc := &http.Client{Timeout: time.Minute}
	if o.HTTPClient != nil {
		c := *o.HTTPClient
		hc = &c
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = countingTransport{base: base, n: requests}
	client, err := buildkite.NewClient(buildkite.Config{
		BaseURL: o.APIURL, Token: o.Token, RequestsPerMinute: o.RequestsPerMinute,
		HTTPClient: hc, UserAgent: o.UserAgent, Logger: o.Logger,
		// Few retries: a checklist should answer within a minute or say it could not.
		MaxRetries: 2,
	})
	if err != nil {
		r.add(SeverityError, CheckToken, "token", "check the token file and --buildkite.api-url", "%v", err)
		skipAPI(r, false, "the Buildkite client could not be set up")
		return nil
	}
	a := &apiChecks{ctx: ctx, r: r, o: o, cfg: cfg, classify: deployment.NewClassifier(cfg), client: client,
		requests: requests, capped: map[[2]string][]string{}}
	if !a.checkToken() {
		return nil
	}
	return a
}

// skipAPI lists the API checks as not checked.
func skipAPI(r *Report, offline bool, why string) {
	if offline {
		why = "--offline: the Buildkite API was not asked"
	}
	if offline {
		r.skip(CheckToken, "token", "scopes and expiry: %s", why)
	}
	for _, c := range []string{CheckOrganization, CheckPipeline, CheckBuilds, CheckEnvironment} {
		r.skip(c, "(all)", "%s", why)
	}
}

// countingTransport counts every HTTP request sent, retries included: the request cap is on it.
type countingTransport struct {
	base http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.base.RoundTrip(req)
}

// allow reports whether one more request fits under the cap.
func (a *apiChecks) allow() bool { return a.requests.Load() < int64(a.o.MaxRequests) }

func (a *apiChecks) capHit(check, org, what string) {
	k := [2]string{check, org}
	a.capped[k] = append(a.capped[k], what)
}

func (a *apiChecks) checkToken() bool {
	tok, err := a.client.AccessToken(a.ctx)
	if err != nil {
		switch {
		case errors.Is(err, buildkite.ErrUnauthorized):
			a.r.add(SeverityError, CheckToken, "token", tokenFix,
				"Buildkite rejects the token (HTTP 401): it is invalid, expired or revoked")
		default:
			a.r.add(SeverityError, CheckToken, "token", "check --buildkite.api-url, the network path to it (proxy, firewall) and https://www.buildkitestatus.com",
				"cannot check the token: %v", err)
		}
		skipAPI(a.r, false, "the token could not be checked")
		return false
	}
	a.readBuilds, a.readPipelines = tok.HasScope(buildkite.ScopeReadBuilds), tok.HasScope(buildkite.ScopeReadPipelines)
	ok := true
	for _, s := range []struct {
		scope string
		needs string
	}{
		{buildkite.ScopeReadBuilds, "builds cannot be listed: nothing is counted"},
		{buildkite.ScopeReadPipelines, "pipelines cannot be listed: annotated pipelines cannot be checked"},
	} {
		if !tok.HasScope(s.scope) {
			ok = false
			a.r.add(SeverityError, CheckToken, "token", "edit the token at https://buildkite.com/user/api-access-tokens and add "+s.scope+" (or create one with read_builds and read_pipelines)",
				"token %s lacks the %s scope: %s (scopes: %s)", tok.UUID, s.scope, s.needs, scopeList(tok.Scopes))
		}
	}
	now := a.o.Now()
	switch exp := tok.ExpiresAt.Time; {
	case exp.IsZero():
		if ok {
			a.r.add(SeverityOK, CheckToken, "token", "", "token %s has the scopes %s and never expires", tok.UUID, scopeList(tok.Scopes))
		}
	case !exp.After(now):
		a.r.add(SeverityError, CheckToken, "token", tokenFix, "token %s expired at %s", tok.UUID, exp.UTC().Format(time.RFC3339))
	case exp.Sub(now) < tokenExpiryWarning:
		a.r.add(SeverityWarning, CheckToken, "token", "create a new token before then and replace the old one; "+tokenFix,
			"token %s expires soon, at %s (in %s)", tok.UUID, exp.UTC().Format(time.RFC3339), roundDuration(exp.Sub(now)))
	default:
		if ok {
			a.r.add(SeverityOK, CheckToken, "token", "", "token %s has the scopes %s and expires at %s",
				tok.UUID, scopeList(tok.Scopes), exp.UTC().Format(time.RFC3339))
		}
	}
	return true
}

func scopeList(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

func roundDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}

// orgState is what the checks learnt about one organization.
type orgState struct {
	*orgPipelines
	unreachable bool
	// confirmed are the annotated pipelines the listing showed; nil when the listing was not read.
	confirmed map[string]bool
}

func (a *apiChecks) run(orgs []*orgPipelines) {
	states := make([]*orgState, len(orgs))
	// Pipelines of every organization first: a missing pipeline is an error, a missing build
	// sample at most a warning, so the cap should leave out the latter.
	for i, op := range orgs {
		states[i] = &orgState{orgPipelines: op}
		a.checkPipelines(states[i])
	}
	for _, st := range states {
		a.checkBuilds(st)
	}
	a.reportCapped()
}

func (a *apiChecks) checkPipelines(st *orgState) {
	org := st.org
	if !a.readPipelines {
		a.r.skip(CheckPipeline, org, "the token lacks read_pipelines")
		return
	}
	if !a.allow() {
		a.capHit(CheckPipeline, org, "the whole pipeline listing")
		return
	}
	existing := map[string]buildkite.Pipeline{}
	truncated := false
	pages := 0
	err := a.client.ListPipelines(a.ctx, org, func(page []buildkite.Pipeline) error {
		pages++
		for _, p := range page {
			existing[p.Slug] = p
		}
		if len(page) >= buildkite.MaxPerPage && !a.allow() {
			truncated = true
			return buildkite.ErrStopPaging
		}
		return nil
	})
	if err != nil {
		a.orgError(st, err, "list its pipelines")
		return
	}
	a.r.add(SeverityOK, CheckOrganization, org, "", "reachable; the token sees %s in it", plural(len(existing), "pipeline"))
	st.confirmed = map[string]bool{}
	slugs := slices.Sorted(maps.Keys(existing))
	var missing []string
	found := 0
	for _, p := range st.pipelines {
		ref := org + "/" + p.slug
		pl, ok := existing[p.slug]
		switch {
		case ok && !pl.ArchivedAt.IsZero():
			st.confirmed[p.slug] = true
			found++
			a.r.add(SeverityWarning, CheckPipeline, ref, "point the annotation of "+strings.Join(p.components, ", ")+" at the pipeline that deploys now, or remove it",
				"archived on %s: it gets no new builds, so no new deployments are counted", pl.ArchivedAt.UTC().Format(time.DateOnly))
		case ok:
			st.confirmed[p.slug] = true
			found++
		case truncated:
			missing = append(missing, p.slug)
		default:
			fix := "correct the buildkite.com/pipeline-slug annotation of " + strings.Join(p.components, ", ")
			if s := suggest.Closest(p.slug, slugs); s != "" {
				fix = fmt.Sprintf("did you mean %s/%s? ", org, s) + fix
			}
			fix += "; Buildkite also answers 404 (No pipeline found) for a pipeline the token's user may not see: check the user's team access to it"
			a.r.add(SeverityError, CheckPipeline, ref, fix,
				"no pipeline %q among the %s the token sees in organization %s: the exporter counts nothing for it",
				p.slug, plural(len(existing), "pipeline"), org)
		}
	}
	if len(missing) > 0 {
		a.capHit(CheckPipeline, org, fmt.Sprintf("the pipeline listing stopped after %s; not seen in them: %s",
			plural(pages, "page"), strings.Join(missing, ", ")))
	}
	if found == len(st.pipelines) && found > 0 {
		a.r.add(SeverityOK, CheckPipeline, org, "", "all %s annotated in organization %s exist", plural(found, "pipeline"), org)
	}
}

// orgError reports a failed request about a whole organization.
func (a *apiChecks) orgError(st *orgState, err error, what string) {
	if st.unreachable {
		return
	}
	st.unreachable = true
	names := make([]string, len(st.pipelines))
	for i, p := range st.pipelines {
		names[i] = p.slug
	}
	var comps []string
	for _, p := range st.pipelines {
		comps = append(comps, p.components...)
	}
	slices.Sort(comps)
	comps = slices.Compact(comps)
	switch {
	case errors.Is(err, buildkite.ErrNotFound):
		a.r.add(SeverityError, CheckOrganization, st.org,
			"check the organization slug (the part before / in the annotations of "+strings.Join(comps, ", ")+
				") against the URL buildkite.com/<org>, and that the token was created with access to this organization",
			"organization %q is unknown or not visible to this token (Buildkite answers 404 for both): its %s (%s) cannot be counted",
			st.org, plural(len(names), "annotated pipeline"), strings.Join(names, ", "))
	case errors.Is(err, buildkite.ErrUnauthorized):
		a.r.add(SeverityError, CheckOrganization, st.org, tokenFix, "cannot %s: the token was rejected (HTTP 401)", what)
	case errors.Is(err, buildkite.ErrForbidden):
		a.r.add(SeverityError, CheckOrganization, st.org,
			"give the token's user access to the organization, or create the token for it, with read_builds and read_pipelines",
			"the token may not %s (HTTP 403): %v", what, err)
	default:
		a.r.add(SeverityError, CheckOrganization, st.org, "check --buildkite.api-url and the network path to it, then run check again",
			"cannot %s: %v", what, err)
	}
}

// checkBuilds reads one page of recent builds per organization (or per pipeline, when the
// organization's page cannot tell) and checks each confirmed pipeline's builds.
func (a *apiChecks) checkBuilds(st *orgState) {
	org := st.org
	if st.unreachable {
		return
	}
	if !a.readBuilds {
		a.r.skip(CheckBuilds, org, "the token lacks read_builds")
		a.r.skip(CheckEnvironment, org, "the token lacks read_builds")
		return
	}
	var want []*annotated
	for _, p := range st.pipelines {
		if st.confirmed == nil || st.confirmed[p.slug] {
			want = append(want, p)
		}
	}
	if len(want) == 0 {
		return
	}
	since := a.o.Now().Add(-a.o.Backfill)
	samples := map[string][]buildkite.Build{}
	conclusive := false // the organization's page held every build of the window
	if len(want) > 1 {
		if !a.allow() {
			for _, p := range want {
				a.capHit(CheckBuilds, org, p.slug)
			}
			return
		}
		err := a.client.ListOrganizationBuilds(a.ctx, org, buildkite.ListBuildsOptions{
			CreatedFrom: since, ExcludeJobs: true, ExcludePipeline: true, PerPage: buildkite.MaxPerPage,
		}, func(page []buildkite.Build) error {
			for _, b := range page {
				slug := b.PipelineSlug()
				samples[slug] = append(samples[slug], b)
			}
			conclusive = len(page) < buildkite.MaxPerPage
			return buildkite.ErrStopPaging
		})
		if err != nil {
			a.orgError(st, err, "list its builds")
			return
		}
	}
	okBuilds, okEnv := 0, 0
	for _, p := range want {
		builds, seen := samples[p.slug]
		// Absent from a page that held the whole window: no builds, if the pipeline exists. When
		// the listing could not confirm that, its own request tells a 404 from no builds.
		if !seen && (!conclusive || st.confirmed == nil) {
			if !a.allow() {
				a.capHit(CheckBuilds, org, p.slug)
				continue
			}
			err := a.client.ListPipelineBuilds(a.ctx, org, p.slug, buildkite.ListBuildsOptions{
				CreatedFrom: since, ExcludeJobs: true, ExcludePipeline: true, PerPage: pipelineBuildsPage,
			}, func(page []buildkite.Build) error {
				builds = page
				return buildkite.ErrStopPaging
			})
			if err != nil {
				a.pipelineBuildsError(st, p, err)
				if st.unreachable {
					return
				}
				continue
			}
		}
		b, e := a.checkPipelineBuilds(org, p, builds)
		okBuilds += b
		okEnv += e
	}
	if okBuilds == len(want) {
		a.r.add(SeverityOK, CheckBuilds, org, "", "every checked pipeline of %s (%d) has deployment builds within the last %s",
			org, okBuilds, promDuration(a.o.Backfill))
	}
	if okEnv == len(want) {
		a.r.add(SeverityOK, CheckEnvironment, org, "", "the recent deployments of every checked pipeline of %s (%d) name a known environment in their meta-data",
			org, okEnv)
	}
}

func (a *apiChecks) pipelineBuildsError(st *orgState, p *annotated, err error) {
	ref := st.org + "/" + p.slug
	var apiErr *buildkite.APIError
	if errors.As(err, &apiErr) && strings.Contains(strings.ToLower(apiErr.Message), "organization") {
		a.orgError(st, err, "list its builds")
		return
	}
	if errors.Is(err, buildkite.ErrNotFound) {
		a.r.add(SeverityError, CheckPipeline, ref,
			"correct the buildkite.com/pipeline-slug annotation of "+strings.Join(p.components, ", ")+
				"; Buildkite also answers 404 (No pipeline found) for a pipeline the token's user may not see: check the user's team access to it",
			"its builds cannot be listed: Buildkite answers 404, the pipeline is unknown or not visible to this token")
		return
	}
	a.r.add(SeverityError, CheckBuilds, ref, "check the message, then run check again", "cannot list its builds: %v", err)
}

// checkPipelineBuilds checks the builds of one pipeline, newest first; it returns 1, 1 when the
// builds and the environment checks passed.
func (a *apiChecks) checkPipelineBuilds(org string, p *annotated, builds []buildkite.Build) (okBuilds, okEnv int) {
	ref := org + "/" + p.slug
	window := promDuration(a.o.Backfill)
	if len(builds) == 0 {
		a.r.add(SeverityWarning, CheckBuilds, ref,
			"check that the annotation of "+strings.Join(p.components, ", ")+" names the pipeline that deploys, or widen --history.backfill",
			"no builds created in the last %s: the exporter has nothing to count for it yet", window)
		return 0, 0
	}
	var deploys []*buildkite.Build
	for i := range builds {
		b := &builds[i]
		if b.Finished() && (b.State == buildkite.StatePassed || b.State == buildkite.StateFailed || b.State == buildkite.StateCanceled) {
			deploys = append(deploys, b)
		}
	}
	if len(deploys) == 0 {
		a.r.add(SeverityWarning, CheckBuilds, ref,
			"wait for a build to finish, or check that the annotation names the pipeline that deploys",
			"%s in the last %s, but none finished as passed, failed or canceled (running, blocked, skipped or not run only): no deployment to count yet",
			plural(len(builds), "build"), window)
		return 0, 0
	}
	okBuilds = 1
	if len(deploys) > recentDeployments {
		deploys = deploys[:recentDeployments]
	}
	without := 0
	unknown := map[string]int{} // raw environment name -> a build number naming it
	for _, b := range deploys {
		names := deployment.MetaDataEnvironments(b.MetaData)
		if len(names) == 0 {
			without++
		}
		for _, n := range names {
			if !a.cfg.KnownEnvironment(n) {
				if _, seen := unknown[n]; !seen {
					unknown[n] = b.Number
				}
			}
		}
	}
	fallback, from := a.cfg.DefaultEnvironment, "the default environment (default_environment in --config.file)"
	if env := a.classify.SlugEnvironment(p.slug); env != "" {
		fallback, from = a.cfg.NormalizeEnvironment(env), fmt.Sprintf("the pipeline slug's token %q", env)
	}
	const metaFix = "set it in the deploy step: buildkite-agent meta-data set environment <name> (or <app>:<env>:deployed true); or accept the fallback"
	switch {
	case without == len(deploys):
		a.r.add(SeverityWarning, CheckEnvironment, ref, metaFix,
			"no environment meta-data (environment or <app>:<env>:deployed) on its recent deployment builds (%d): they are counted in %q, from %s",
			len(deploys), fallback, from)
	case without > 0:
		a.r.add(SeverityWarning, CheckEnvironment, ref, metaFix,
			"%d of the %d recent deployment builds set no environment meta-data (environment or <app>:<env>:deployed): those are counted in %q, from %s",
			without, len(deploys), fallback, from)
	}
	for _, n := range slices.Sorted(maps.Keys(unknown)) {
		norm := a.cfg.NormalizeEnvironment(n)
		a.r.add(SeverityWarning, CheckEnvironment, ref,
			fmt.Sprintf("if it is one of your environments under another name, add it to environment_aliases in --config.file, e.g. environment_aliases: {%s: production}", norm),
			"environment %q (build #%d) is not in the alias table: it is exported as its own environment %q, apart from production, staging and development",
			n, unknown[n], norm)
	}
	if without == 0 && len(unknown) == 0 {
		okEnv = 1
	}
	return okBuilds, okEnv
}

func (a *apiChecks) reportCapped() {
	keys := slices.SortedFunc(maps.Keys(a.capped), func(x, y [2]string) int {
		return strings.Compare(x[0]+"\x00"+x[1], y[0]+"\x00"+y[1])
	})
	for _, k := range keys {
		items := a.capped[k]
		what := strings.Join(items, ", ")
		if k[0] == CheckBuilds {
			what = "builds of " + what
			if len(items) > 10 {
				what = fmt.Sprintf("builds of %d pipelines: %s, …", len(items), strings.Join(items[:10], ", "))
			}
		}
		a.r.skip(k[0], k[1], "request cap of %d reached (--check.max-requests): %s", a.o.MaxRequests, what)
	}
}
