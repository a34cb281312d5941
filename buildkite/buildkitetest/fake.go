// Package buildkitetest is a fake Buildkite REST API for tests and benchmarks.
//
// It is faithful to the facts in reference/buildkite-api.md rather than to our own client: it
// renders its JSON itself with the API's field names (so a wrong JSON tag in our models is caught,
// not mirrored), answers with the documented error bodies, paginates with absolute Link headers,
// counts requests in the organization and per-user rate-limit windows and refuses deep pages.
//
// Choices where the reference leaves the real behaviour open (each is documented where it is made):
//   - per_page above 100 is clamped to 100; a missing, non-numeric or non-positive per_page is 30.
//   - Listing builds beyond page 50 (WithDeepPageLimit) answers the documented 400.
//   - Rate-limit windows are fixed minutes of the clock (12:00:00–12:00:59, …).
//   - A blocked build's state for the state filter is "blocked" (as Buildkite stores it), while its
//     JSON keeps the state it had, e.g. "passed" with "blocked": true. So state=passed does not
//     list blocked builds and state=finished does.
//   - A 404 for a missing build says {"message":"No build found"}.
//   - A build finished failed has failing_at (FinishBuild), and a hard job failure makes a running
//     build failing (FinishJob); the reference defines failing_at but not when a build gets it.
//   - A retry (RetryBuild, RetryJob) appends the new attempt to the jobs and sets retry_type and
//     retry_source on it, retried and retried_in_job_id on the old one. Only script jobs retry.
//
// Every answer carries a Date header from the fake's clock (WithClock), as a real server's does.
// Hostile behaviours are opt-in: WithIgnoredFilters, and the faults of InjectFault (delays,
// truncated or trickling bodies, 429 storms, proxy errors).
//
// SetWebhook makes the fake a webhook notification service too: it POSTs the build event of every
// change of a build (signed or with the token, see Webhook) to a URL, and keeps a log of them.
//
// Use Transport for tests that run in a testing/synctest bubble: it serves requests in the
// calling goroutine, so fake time advances while a client waits; Start serves over real HTTP.
package buildkitetest

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// InProcessBaseURL is the base URL Transport serves; requests to any other host fail.
const InProcessBaseURL = "http://buildkite.test/v2/"

const inProcessHost = "buildkite.test"

// Default limits (reference §9.1) and the default deep-page threshold, which the reference says is
// undocumented: 50 pages of 100 builds is deep enough for any bounded time slice.
const (
	DefaultOrgLimit      = 200
	DefaultUserLimit     = 50
	DefaultDeepPageLimit = 50
)

// Route templates, as recorded in Request.Route and matched by Fault.Route.
const (
	RouteBuilds         = "/v2/builds"
	RouteOrgBuilds      = "/v2/organizations/{org}/builds"
	RoutePipelineBuilds = "/v2/organizations/{org}/pipelines/{pipeline}/builds"
	RouteBuild          = "/v2/organizations/{org}/pipelines/{pipeline}/builds/{number}"
	RoutePipelines      = "/v2/organizations/{org}/pipelines"
	RoutePipeline       = "/v2/organizations/{org}/pipelines/{pipeline}"
	RouteAccessToken    = "/v2/access-token"
	// RouteRebuild is the one write the fake serves: PUT, scope write_builds.
	RouteRebuild = "/v2/organizations/{org}/pipelines/{pipeline}/builds/{number}/rebuild"
)

// Option configures a Fake.
type Option func(*config)

type config struct {
	orgLimit, userLimit int
	rateLimits          bool
	clock               func() time.Time
	deepPageLimit       int
	latency             time.Duration
	legacyPipelineTimes bool
	ignoredFilters      []string
}

// WithOrgLimit sets the per-organization requests per minute (default 200).
func WithOrgLimit(perMinute int) Option { return func(c *config) { c.orgLimit = perMinute } }

// WithUserLimit sets the per-token requests per minute (default 50).
func WithUserLimit(perMinute int) Option { return func(c *config) { c.userLimit = perMinute } }

// WithRateLimits(false) switches rate limiting off: no request is refused and no RateLimit-*
// headers are sent, so benchmarks measure logic, not waiting.
func WithRateLimits(on bool) Option { return func(c *config) { c.rateLimits = on } }

// WithClock sets the clock for rate-limit windows, the request log and defaulted timestamps
// (default time.Now, which inside a synctest bubble is the bubble's fake time).
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithDeepPageLimit sets the last page a build listing serves; deeper pages answer the documented
// 400 (default 50). Zero or less disables the check.
func WithDeepPageLimit(pages int) Option { return func(c *config) { c.deepPageLimit = pages } }

// WithLatency delays every response by d (waited with time.Sleep semantics, so fake time in a
// synctest bubble).
func WithLatency(d time.Duration) Option { return func(c *config) { c.latency = d } }

// WithLegacyPipelineTimestamps renders every pipeline's created_at as "2006-01-02 15:04:05 UTC",
// the format some pipeline objects use (reference §2). See also SetLegacyPipelineTimestamps.
func WithLegacyPipelineTimestamps() Option { return func(c *config) { c.legacyPipelineTimes = true } }

// ignorableFilters are the build-list parameters WithIgnoredFilters can make the fake ignore.
var ignorableFilters = []string{"created_from", "created_to", "finished_from", "state"}

// WithIgnoredFilters makes the fake a hostile API that ignores the named build-list filters
// (any of "created_from", "created_to", "finished_from" and "state"; none named = all four), as
// a mirror or proxy that drops the query string would: it serves every build regardless, newest
// created first, and its Link headers still carry the query as sent. Combine it with
// WithDeepPageLimit(0) for an API that pages on through history without end. It panics on
// another name.
func WithIgnoredFilters(params ...string) Option {
	if len(params) == 0 {
		params = ignorableFilters
	}
	for _, p := range params {
		if !slices.Contains(ignorableFilters, p) {
			panic(fmt.Sprintf("buildkitetest: WithIgnoredFilters(%q): only %v can be ignored", p, ignorableFilters))
		}
	}
	params = slices.Clone(params)
	return func(c *config) { c.ignoredFilters = params }
}

// Fake is an in-memory Buildkite REST API. All methods are safe for concurrent use.
type Fake struct {
	cfg config

	mu    sync.RWMutex // guards orgs, seq, tokens
	orgs  map[string]*org
	order []string // organization slugs, sorted
	seq   uint64   // last build sequence number; build ids derive from it
	pseq  uint64   // last pipeline sequence number
	// tokens maps bearer tokens to their scopes and identity.
	tokens map[string]*token
	tseq   int

	limits limiter

	logMu sync.Mutex
	log   []Request

	faultMu sync.Mutex
	faults  []*Fault

	srvMu sync.Mutex
	srv   *httptest.Server

	hooks webhookState
}

type org struct {
	slug      string
	pipelines map[string]*pipe
	slugs     []string // pipeline slugs, sorted
	idx       index
}

type pipe struct {
	org    *org
	p      buildkite.Pipeline
	legacy bool
	byNum  map[int]*buildRec
	next   int // number the next build gets
	idx    index
}

type token struct {
	uuid      string
	scopes    []string
	createdAt time.Time
	user      int
}

// New returns a Fake with no organizations and no accepted tokens; add them with SetToken,
// AddPipeline and AddBuild.
func New(opts ...Option) *Fake {
	cfg := config{
		orgLimit:      DefaultOrgLimit,
		userLimit:     DefaultUserLimit,
		rateLimits:    true,
		clock:         time.Now,
		deepPageLimit: DefaultDeepPageLimit,
	}
	for _, o := range opts {
		o(&cfg)
	}
	return &Fake{
		cfg:    cfg,
		orgs:   map[string]*org{},
		tokens: map[string]*token{},
		limits: limiter{orgs: map[string]*bucket{}, users: map[string]*bucket{}},
	}
}

func (f *Fake) now() time.Time { return f.cfg.clock() }

// Handler returns the fake API as an http.Handler.
func (f *Fake) Handler() http.Handler { return http.HandlerFunc(f.serveHTTP) }

// Transport returns a RoundTripper that serves requests to InProcessBaseURL in the calling
// goroutine, with no socket, so it is safe inside a testing/synctest bubble.
func (f *Fake) Transport() http.RoundTripper { return transport{f} }

// Start serves the fake on an httptest server on 127.0.0.1 and returns its base URL, ending in
// "/v2/". Calling it again returns the running server's URL.
func (f *Fake) Start() string {
	f.srvMu.Lock()
	defer f.srvMu.Unlock()
	if f.srv == nil {
		f.srv = httptest.NewServer(f.Handler())
	}
	return f.srv.URL + "/v2/"
}

// URL returns the base URL of the started server, or InProcessBaseURL before Start.
func (f *Fake) URL() string {
	f.srvMu.Lock()
	defer f.srvMu.Unlock()
	if f.srv == nil {
		return InProcessBaseURL
	}
	return f.srv.URL + "/v2/"
}

// Close stops the server started by Start, if any.
func (f *Fake) Close() {
	f.srvMu.Lock()
	defer f.srvMu.Unlock()
	if f.srv != nil {
		f.srv.Close()
		f.srv = nil
	}
}

// SetToken accepts token as a bearer token with the given scopes (e.g. "read_builds",
// "read_pipelines"), replacing the scopes of a token set before. Each token is one user with its
// own per-user rate-limit bucket.
func (f *Fake) SetToken(token string, scopes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.tokens[token]; ok {
		t.scopes = slices.Clone(scopes)
		return
	}
	f.tseq++
	f.tokens[token] = newToken(f.tseq, scopes, f.now())
}

func newToken(n int, scopes []string, now time.Time) *token {
	return &token{
		uuid:      fmt.Sprintf("01920000-0000-4000-8000-%012x", n),
		scopes:    slices.Clone(scopes),
		createdAt: now.UTC().Truncate(time.Second),
		user:      n,
	}
}

func (t *token) has(scope string) bool { return slices.Contains(t.scopes, scope) }

func (f *Fake) orgLocked(slug string) *org {
	o, ok := f.orgs[slug]
	if !ok {
		o = &org{slug: slug, pipelines: map[string]*pipe{}}
		f.orgs[slug] = o
		i, _ := slices.BinarySearch(f.order, slug)
		f.order = slices.Insert(f.order, i, slug)
	}
	return o
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// AddPipeline adds (or replaces the attributes of) a pipeline, creating the organization if
// needed, and returns the stored copy. It fills slug (from the name), name (from the slug), id,
// url/web_url on api.buildkite.com and buildkite.com, and created_at (clock) when
// they are empty. It panics when both slug and name are empty.
func (f *Fake) AddPipeline(orgSlug string, p buildkite.Pipeline) buildkite.Pipeline {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addPipelineLocked(orgSlug, p).p
}

func (f *Fake) addPipelineLocked(orgSlug string, p buildkite.Pipeline) *pipe {
	if p.Slug == "" {
		p.Slug = strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(p.Name), "-"), "-")
	}
	if p.Slug == "" {
		panic("buildkitetest: AddPipeline needs a pipeline with a slug or a name")
	}
	if p.Name == "" {
		p.Name = p.Slug
	}
	o := f.orgLocked(orgSlug)
	pp, ok := o.pipelines[p.Slug]
	if !ok {
		f.pseq++
		pp = &pipe{org: o, byNum: map[int]*buildRec{}, next: 1}
		o.pipelines[p.Slug] = pp
		i, _ := slices.BinarySearch(o.slugs, p.Slug)
		o.slugs = slices.Insert(o.slugs, i, p.Slug)
		if p.ID == "" {
			p.ID = fmt.Sprintf("01930000-0000-4000-8000-%012x", f.pseq)
		}
	} else if p.ID == "" {
		p.ID = pp.p.ID
	}
	if p.URL == "" {
		p.URL = "https://api.buildkite.com/v2/organizations/" + orgSlug + "/pipelines/" + p.Slug
	}
	if p.WebURL == "" {
		p.WebURL = "https://buildkite.com/" + orgSlug + "/" + p.Slug
	}
	if p.CreatedAt.IsZero() {
		if ok {
			p.CreatedAt = pp.p.CreatedAt
		} else {
			p.CreatedAt = buildkite.Timestamp{Time: f.now().UTC()}
		}
	}
	p.Tags = slices.Clone(p.Tags)
	pp.p = p
	return pp
}

// SetLegacyPipelineTimestamps makes one pipeline render its created_at as
// "2006-01-02 15:04:05 UTC" (legacy true) or RFC 3339 (false).
func (f *Fake) SetLegacyPipelineTimestamps(orgSlug, pipeline string, legacy bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	pp, err := f.pipeLocked(orgSlug, pipeline)
	if err != nil {
		return err
	}
	pp.legacy = legacy
	return nil
}

func (f *Fake) pipeLocked(orgSlug, pipeline string) (*pipe, error) {
	o, ok := f.orgs[orgSlug]
	if !ok {
		return nil, fmt.Errorf("buildkitetest: no organization %q", orgSlug)
	}
	pp, ok := o.pipelines[pipeline]
	if !ok {
		return nil, fmt.Errorf("buildkitetest: no pipeline %q in organization %q", pipeline, orgSlug)
	}
	return pp, nil
}

func (f *Fake) buildLocked(orgSlug, pipeline string, number int) (*buildRec, error) {
	pp, err := f.pipeLocked(orgSlug, pipeline)
	if err != nil {
		return nil, err
	}
	r, ok := pp.byNum[number]
	if !ok {
		return nil, fmt.Errorf("buildkitetest: no build %s/%s#%d", orgSlug, pipeline, number)
	}
	return r, nil
}

// AddBuild stores a build of the pipeline (creating the organization and pipeline if needed) and
// returns the stored copy. It fills, when zero: number (next of the pipeline; a given number must
// be unused, gaps are fine), id (unique, UUID-like), url and web_url (on api.buildkite.com and
// buildkite.com), created_at (clock), state ("scheduled", or "passed" when finished_at is set),
// source ("webhook"), job ids, and sets the embedded pipeline. The fake copies meta_data and jobs,
// so the caller may reuse b. It panics on a duplicate number.
func (f *Fake) AddBuild(orgSlug, pipeline string, b buildkite.Build) buildkite.Build {
	b.MetaData = maps.Clone(b.MetaData)
	b.Jobs = cloneJobs(b.Jobs)
	f.mu.Lock()
	r := f.addBuildLocked(orgSlug, pipeline, b)
	v := r.view()
	f.mu.Unlock()
	f.notify(orgSlug, pipeline, v.Number)
	return v
}

// AddBuilds stores many builds of one pipeline under one lock, for loading benchmark data sets;
// it fills fields like AddBuild. Unlike AddBuild it keeps the meta_data maps and job slices it is
// given (so a data set can share one map between builds): do not modify them afterwards.
// Builds may come in any order; indexes are sorted once, at the next query.
func (f *Fake) AddBuilds(orgSlug, pipeline string, builds []buildkite.Build) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range builds {
		f.addBuildLocked(orgSlug, pipeline, b)
	}
}

func (f *Fake) addBuildLocked(orgSlug, pipeline string, b buildkite.Build) *buildRec {
	o := f.orgLocked(orgSlug)
	pp, ok := o.pipelines[pipeline]
	if !ok {
		pp = f.addPipelineLocked(orgSlug, buildkite.Pipeline{Slug: pipeline})
	}
	if b.Number == 0 {
		b.Number = pp.next
	}
	if _, dup := pp.byNum[b.Number]; dup {
		panic(fmt.Sprintf("buildkitetest: build %s/%s#%d already exists", orgSlug, pipeline, b.Number))
	}
	if b.Number >= pp.next {
		pp.next = b.Number + 1
	}
	f.seq++
	r := &buildRec{seq: f.seq, pipe: pp}
	if b.CreatedAt.IsZero() {
		b.CreatedAt = buildkite.Timestamp{Time: f.now().UTC()}
	}
	if b.State == "" {
		b.State = buildkite.StateScheduled
		if !b.FinishedAt.IsZero() {
			b.State = buildkite.StatePassed
		}
	}
	if b.Source == "" {
		b.Source = "webhook"
	}
	// id, url and web_url are derived at render time unless given: at 1.8 million builds their
	// strings would cost more memory than everything else.
	if b.ID == r.defaultID() {
		b.ID = ""
	}
	if b.URL == r.defaultURL() {
		b.URL = ""
	}
	if b.WebURL == r.defaultWebURL() {
		b.WebURL = ""
	}
	for i := range b.Jobs {
		if b.Jobs[i].ID == "" {
			b.Jobs[i].ID = jobID(r.seq, i)
		}
	}
	b.Pipeline = nil
	r.b = b
	r.keys()
	pp.byNum[b.Number] = r
	pp.idx.add(r)
	o.idx.add(r)
	return r
}

func jobID(buildSeq uint64, i int) string {
	return fmt.Sprintf("01910000-%04x-4000-8000-%012x", i, buildSeq)
}

func cloneJobs(jobs []buildkite.Job) []buildkite.Job {
	if jobs == nil {
		return nil
	}
	out := make([]buildkite.Job, len(jobs))
	for i, j := range jobs {
		if j.UnblockedBy != nil {
			u := *j.UnblockedBy
			j.UnblockedBy = &u
		}
		if j.TriggeredBuild != nil {
			t := *j.TriggeredBuild
			j.TriggeredBuild = &t
		}
		if j.RetrySource != nil {
			s := *j.RetrySource
			j.RetrySource = &s
		}
		out[i] = j
	}
	return out
}

// Build returns the stored copy of a build, as AddBuild returned it.
func (f *Fake) Build(orgSlug, pipeline string, number int) (buildkite.Build, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return buildkite.Build{}, false
	}
	return r.view(), true
}

// UpdateBuild changes a stored build: fn gets a copy (meta_data and jobs included) and the copy is
// stored if fn keeps the build's number, id and pipeline. Indexes follow the new timestamps and state.
func (f *Fake) UpdateBuild(orgSlug, pipeline string, number int, fn func(*buildkite.Build)) (err error) {
	defer func() {
		if err == nil {
			f.notify(orgSlug, pipeline, number)
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return err
	}
	b := r.view()
	b.MetaData = maps.Clone(b.MetaData)
	fn(&b)
	switch {
	case b.Number != number:
		return fmt.Errorf("buildkitetest: UpdateBuild must not change the number of %s/%s#%d", orgSlug, pipeline, number)
	case b.ID != r.id():
		return fmt.Errorf("buildkitetest: UpdateBuild must not change the id of %s/%s#%d", orgSlug, pipeline, number)
	}
	if b.URL == r.defaultURL() {
		b.URL = ""
	}
	if b.WebURL == r.defaultWebURL() {
		b.WebURL = ""
	}
	b.ID = r.b.ID
	b.Pipeline = nil
	for i := range b.Jobs {
		if b.Jobs[i].ID == "" {
			b.Jobs[i].ID = jobID(r.seq, i)
		}
	}
	f.replaceLocked(r, b)
	return nil
}

func (f *Fake) replaceLocked(r *buildRec, b buildkite.Build) {
	r.pipe.idx.unfile(r)
	r.pipe.org.idx.unfile(r)
	oldCreated := r.created
	r.b = b
	r.keys()
	r.pipe.idx.refile(r, oldCreated)
	r.pipe.org.idx.refile(r, oldCreated)
}

// DeleteFinishedBefore deletes every build that finished before t, in every organization, as a
// Buildkite build retention policy deletes old builds: listings no longer return them and
// Get-a-build answers 404. Their numbers are not reused. Builds in a non-terminal state are kept
// whatever their age: running ones (finished_at null, a retried build say) and blocked ones. Long simulations call it to keep the
// fake's memory bounded by the builds of a recent window rather than by every build ever added.
// It returns how many builds it deleted.
func (f *Fake) DeleteFinishedBefore(t time.Time) int {
	cut := t.UnixNano()
	old := func(r *buildRec) bool { return r.finished != 0 && r.finished < cut && !r.open }
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, o := range f.orgs {
		n += o.idx.drop(old)
		for _, pp := range o.pipelines {
			pp.idx.drop(old)
			maps.DeleteFunc(pp.byNum, func(_ int, r *buildRec) bool { return old(r) })
		}
	}
	return n
}

var terminalStates = map[string]bool{
	buildkite.StatePassed: true, buildkite.StateFailed: true, buildkite.StateCanceled: true,
	buildkite.StateSkipped: true, buildkite.StateNotRun: true,
}

// FinishBuild moves a build to a terminal state (passed, failed, canceled, skipped, not_run) at
// time at: finished_at is set, blocked cleared; started_at is set to at if the build never started.
//
// A build finished failed gets failing_at = at when it has none. That is an inference: the API
// documents failing_at only as "when the build first entered failing (hard failure before
// finishing); never cleared even if a retry passes" (reference §4), and we assume a build that
// finished failed went through that hard failure. A failing_at already set is kept.
func (f *Fake) FinishBuild(orgSlug, pipeline string, number int, state string, at time.Time) (err error) {
	defer func() {
		if err == nil {
			f.notify(orgSlug, pipeline, number)
		}
	}()
	if !terminalStates[state] {
		return fmt.Errorf("buildkitetest: FinishBuild state %q is not terminal (passed, failed, canceled, skipped, not_run)", state)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return err
	}
	b := r.b
	b.State = state
	b.Blocked = false
	b.FinishedAt = buildkite.Timestamp{Time: at.UTC()}
	if b.StartedAt.IsZero() {
		b.StartedAt = b.FinishedAt
	}
	if state == buildkite.StateFailed && b.FailingAt.IsZero() {
		b.FailingAt = b.FinishedAt
	}
	f.replaceLocked(r, b)
	return nil
}

// RetryBuild re-opens a finished build as retrying a failed job does (reference §4.2): the build
// goes back to running with finished_at null (failing_at is kept), and the last failed (else last)
// script job is retried manually, as RetryJob does.
func (f *Fake) RetryBuild(orgSlug, pipeline string, number int) (err error) {
	defer func() {
		if err == nil {
			f.notify(orgSlug, pipeline, number)
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return err
	}
	b := r.b
	if !terminalStates[b.State] || b.Blocked {
		return fmt.Errorf("buildkitetest: build %s/%s#%d is %s, only a finished build can be retried", orgSlug, pipeline, number, r.filterState())
	}
	b.State = buildkite.StateRunning
	b.FinishedAt = buildkite.Timestamp{}
	b.Jobs = cloneJobs(b.Jobs)
	retry := -1
	for i, j := range b.Jobs {
		if j.Type != buildkite.JobTypeScript || j.Retried {
			continue
		}
		if retry < 0 || j.State == buildkite.StateFailed || b.Jobs[retry].State != buildkite.StateFailed {
			retry = i
		}
	}
	if retry >= 0 {
		f.retryLocked(r, &b, retry, buildkite.RetryTypeManual)
	}
	f.replaceLocked(r, b)
	return nil
}

// finishedJobStates are the terminal job states of reference §5.1 that RetryJob retries from;
// which states the API allows a retry from is not documented.
var finishedJobStates = map[string]bool{
	buildkite.StatePassed: true, buildkite.StateFailed: true, buildkite.StateCanceled: true,
	"timed_out": true, "expired": true,
}

// RetryJob retries one finished script job of a build, manually or automatically (retryType
// buildkite.RetryTypeManual or buildkite.RetryTypeAutomatic). The old attempt gets retried:true
// and retried_in_job_id; the new one is scheduled now (the fake's clock) with retry_source,
// retry_type and retries_count one more than the old one's. A running or failing build stays as it
// is; a finished build goes back to running with finished_at null, as RetryBuild does.
func (f *Fake) RetryJob(orgSlug, pipeline string, number int, jobID, retryType string) (err error) {
	// A job change is a job event at Buildkite; a build event only when the build's state changes.
	before, _ := f.Build(orgSlug, pipeline, number)
	defer func() {
		if after, _ := f.Build(orgSlug, pipeline, number); err == nil && after.State != before.State {
			f.notify(orgSlug, pipeline, number)
		}
	}()
	if retryType != buildkite.RetryTypeManual && retryType != buildkite.RetryTypeAutomatic {
		return fmt.Errorf("buildkitetest: retry type %q is neither %q nor %q", retryType, buildkite.RetryTypeManual, buildkite.RetryTypeAutomatic)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return err
	}
	b := r.b
	i := slices.IndexFunc(b.Jobs, func(j buildkite.Job) bool { return j.ID == jobID })
	switch {
	case i < 0:
		return fmt.Errorf("buildkitetest: build %s/%s#%d has no job %q", orgSlug, pipeline, number, jobID)
	case b.Jobs[i].Type != buildkite.JobTypeScript:
		return fmt.Errorf("buildkitetest: job %q is a %s job; only script jobs are retried", jobID, b.Jobs[i].Type)
	case b.Jobs[i].Retried:
		return fmt.Errorf("buildkitetest: job %q was retried already, in job %q", jobID, b.Jobs[i].RetriedInJobID)
	case !finishedJobStates[b.Jobs[i].State]:
		return fmt.Errorf("buildkitetest: job %q is %s; only a finished job can be retried", jobID, b.Jobs[i].State)
	}
	switch s := r.filterState(); {
	case s == buildkite.StateRunning || s == buildkite.StateFailing:
	case terminalStates[s]:
		b.State = buildkite.StateRunning
		b.FinishedAt = buildkite.Timestamp{}
	default:
		return fmt.Errorf("buildkitetest: build %s/%s#%d is %s; jobs are retried in running, failing or finished builds", orgSlug, pipeline, number, s)
	}
	b.Jobs = cloneJobs(b.Jobs)
	f.retryLocked(r, &b, i, retryType)
	f.replaceLocked(r, b)
	return nil
}

// retryLocked marks job i of b (a copy of r's build, jobs cloned) retried and appends its new
// attempt, linked both ways.
func (f *Fake) retryLocked(r *buildRec, b *buildkite.Build, i int, retryType string) {
	old := b.Jobs[i]
	n := 1
	if old.RetriesCount != nil {
		n = *old.RetriesCount + 1
	}
	now := buildkite.Timestamp{Time: f.now().UTC()}
	next := buildkite.Job{
		ID:           jobID(r.seq, len(b.Jobs)),
		Type:         old.Type,
		Name:         old.Name,
		Label:        old.Label,
		StepKey:      old.StepKey,
		State:        buildkite.StateScheduled,
		RetriesCount: &n,
		RetryType:    retryType,
		RetrySource:  &buildkite.RetrySource{JobID: old.ID, RetryType: retryType},
		CreatedAt:    now,
		ScheduledAt:  now,
		RunnableAt:   now,
	}
	b.Jobs[i].Retried = true
	b.Jobs[i].RetriedInJobID = next.ID
	b.Jobs = append(b.Jobs, next)
}

// jobStates are the REST job states (reference §5.1), and "finished", which the fake renders for
// waiters as passed.
var jobStates = map[string]bool{
	"pending": true, "waiting": true, "waiting_failed": true, "blocked": true, "blocked_failed": true,
	"unblocked": true, "unblocked_failed": true, "scheduled": true, "assigned": true, "accepted": true,
	"running": true, "passed": true, "failed": true, "timed_out": true, "timing_out": true, "canceled": true,
	"canceling": true, "skipped": true, "broken": true, "expired": true, "limited": true, "finished": true,
}

// FinishJob sets a job's state, started_at and finished_at (a zero time renders null), for tests
// that script job timelines. A job set failed (and not soft-failed) in a running build is a hard
// failure before the build finishes: the build becomes failing, with failing_at = finished (the
// fake's clock when finished is zero) unless it has one.
func (f *Fake) FinishJob(orgSlug, pipeline string, number int, jobID, state string, started, finished time.Time) (err error) {
	// A job change is a job event at Buildkite; a build event only when the build's state changes.
	before, _ := f.Build(orgSlug, pipeline, number)
	defer func() {
		if after, _ := f.Build(orgSlug, pipeline, number); err == nil && after.State != before.State {
			f.notify(orgSlug, pipeline, number)
		}
	}()
	if !jobStates[state] {
		return fmt.Errorf("buildkitetest: %q is not a job state", state)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return err
	}
	b := r.b
	i := slices.IndexFunc(b.Jobs, func(j buildkite.Job) bool { return j.ID == jobID })
	if i < 0 {
		return fmt.Errorf("buildkitetest: build %s/%s#%d has no job %q", orgSlug, pipeline, number, jobID)
	}
	b.Jobs = cloneJobs(b.Jobs)
	j := &b.Jobs[i]
	j.State = state
	j.StartedAt = buildkite.Timestamp{Time: started.UTC()}
	j.FinishedAt = buildkite.Timestamp{Time: finished.UTC()}
	if s := r.filterState(); state == buildkite.StateFailed && !j.SoftFailed && (s == buildkite.StateRunning || s == buildkite.StateFailing) {
		b.State = buildkite.StateFailing
		if b.FailingAt.IsZero() {
			b.FailingAt = j.FinishedAt
			if b.FailingAt.IsZero() {
				b.FailingAt = buildkite.Timestamp{Time: f.now().UTC()}
			}
		}
	}
	f.replaceLocked(r, b)
	return nil
}

// Unblock unblocks the build's first blocked manual job at time at (state unblocked, unblocked_at,
// unblockable false) and sets the build running with blocked false.
func (f *Fake) Unblock(orgSlug, pipeline string, number int, at time.Time) (err error) {
	defer func() {
		if err == nil {
			f.notify(orgSlug, pipeline, number)
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return err
	}
	b := r.b
	b.Jobs = cloneJobs(b.Jobs)
	found := false
	for i := range b.Jobs {
		j := &b.Jobs[i]
		if j.Type == buildkite.JobTypeManual && j.State == buildkite.StateBlocked {
			no := false
			j.State = "unblocked"
			j.UnblockedAt = buildkite.Timestamp{Time: at.UTC()}
			j.Unblockable = &no
			if j.UnblockedBy == nil {
				j.UnblockedBy = &buildkite.User{ID: "01940000-0000-4000-8000-000000000001", Name: "Approver", Email: "approver@example.com"}
			}
			found = true
			break
		}
	}
	if !found && !b.Blocked {
		return fmt.Errorf("buildkitetest: build %s/%s#%d is not blocked", orgSlug, pipeline, number)
	}
	b.Blocked = false
	b.State = buildkite.StateRunning
	b.FinishedAt = buildkite.Timestamp{}
	f.replaceLocked(r, b)
	return nil
}

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Route  string // template, e.g. RouteOrgBuilds; "" when no route matched
	Query  url.Values
	Status int // 0 when the client went away during an injected delay
	Time   time.Time
}

// Requests returns the log of every request so far, oldest first.
func (f *Fake) Requests() []Request {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return slices.Clone(f.log)
}

// ResetRequests empties the request log.
func (f *Fake) ResetRequests() {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	f.log = nil
}

func (f *Fake) record(r Request) {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	f.log = append(f.log, r)
}
