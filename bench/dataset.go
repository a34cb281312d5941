package main

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

// orgModel is the simulated Buildkite organization of the issue: Pipelines pipelines, of which
// Annotated are named by a Backstage component (every Pipelines/Annotated-th one), and builds
// arriving as a Poisson process of BuildsPerDay across the organization, spread evenly over the
// pipelines. Build activity is uniform on purpose: it is the case the issue states, and it is
// the hardest one for an org-wide listing (90% of what it reads belongs to no component).
type orgModel struct {
	Org          string
	Pipelines    int
	Annotated    int
	BuildsPerDay float64
	Days         int
	Seed         uint64
}

// issueScale is the issue's organization; scale multiplies pipelines and builds, not days.
func issueScale(scale float64, days int) orgModel {
	return orgModel{
		Org:          "acme",
		Pipelines:    max(2, int(math.Round(20000*scale))),
		Annotated:    max(1, int(math.Round(2000*scale))),
		BuildsPerDay: 20000 * scale,
		Days:         days,
		Seed:         20260101,
	}
}

func (m orgModel) String() string {
	return fmt.Sprintf("%d pipelines (%d annotated), %.0f builds/day, %d days", m.Pipelines, m.Annotated, m.BuildsPerDay, m.Days)
}

func (m orgModel) stride() int { return max(1, m.Pipelines/m.Annotated) }

func (m orgModel) annotated(i int) bool { return i%m.stride() == 0 && i/m.stride() < m.Annotated }

// slug names pipeline i; an annotated pipeline deploys one component.
func (m orgModel) slug(i int) string {
	if m.annotated(i) {
		return fmt.Sprintf("svc-%05d-deploy", i)
	}
	return fmt.Sprintf("ci-%05d", i)
}

func componentName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// components is the catalog: one component per annotated pipeline.
func (m orgModel) components() []backstage.Component {
	var out []backstage.Component
	for i := range m.Pipelines {
		if !m.annotated(i) {
			continue
		}
		name := componentName(i)
		out = append(out, backstage.Component{
			Name: name, Namespace: "default", Label: name, Ref: "component:default/" + name,
			Owner: "team-" + name, System: "core", Lifecycle: "production", Type: "service",
			Pipelines: []backstage.PipelineRef{{Org: m.Org, Pipeline: m.slug(i)}},
		})
	}
	return out
}

// meanGap is the mean time between two builds of one pipeline.
func (m orgModel) meanGap() time.Duration {
	return time.Duration(float64(24*time.Hour) * float64(m.Pipelines) / m.BuildsPerDay)
}

// Environments come from meta-data, as most deploy pipelines set them; the maps are shared
// between builds (AddBuilds keeps them), which keeps 1.8 million builds affordable.
var envMeta = []map[string]string{
	{"environment": "production"}, {"environment": "staging"}, {"environment": "development"},
}

// buildGen draws build attributes. Retries are drawn from a generator of their own, so that
// the builds themselves (arrivals, times, states) are those of the data set before retries were
// added.
type buildGen struct {
	rng   *rand.Rand
	retry *rand.Rand
	n     uint64
	space int // of job ids
}

func newBuildGen(seed uint64) *buildGen {
	return &buildGen{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		retry: rand.New(rand.NewPCG(seed^0x5851f42d4c957f2d, seed)),
	}
}

// next returns a build created at created, running (finished_at null), with the time it will
// finish and its final state. Queue 0–60 s, run 3–20 min; 88% pass, 9% fail, 3% are canceled.
func (g *buildGen) next(created time.Time) (buildkite.Build, time.Time, string) {
	g.n++
	started := created.Add(time.Duration(g.rng.IntN(60)) * time.Second)
	finish := started.Add(3*time.Minute + time.Duration(g.rng.IntN(17*60))*time.Second)
	state := buildkite.StatePassed
	switch p := g.rng.IntN(100); {
	case p < 9:
		state = buildkite.StateFailed
	case p < 12:
		state = buildkite.StateCanceled
	}
	b := buildkite.Build{
		State:     buildkite.StateRunning,
		Branch:    "main",
		Commit:    fmt.Sprintf("%016x%024x", g.rng.Uint64(), g.n),
		MetaData:  envMeta[g.rng.IntN(len(envMeta))],
		CreatedAt: ts(created), ScheduledAt: ts(created), StartedAt: ts(started),
	}
	return b, finish, state
}

// retryShare is the share of failed builds someone retries once the build has finished (the
// failed job, manually); retryPassShare of the retries pass.
const (
	retryShare     = 1.0 / 3
	retryPassShare = 0.8
)

// retryPlan is a manual retry of a failed build's job, made after the build finished.
type retryPlan struct {
	at       time.Time // the retry job's created_at: the build goes back to running
	started  time.Time // the retry job starts
	finish   time.Time // the retry job and the build finish
	state    string    // the build's state after the retry
	retrying bool
}

// retryAfter draws whether a build that finished failed at failed is retried: a third are, 1 to
// 20 minutes after the failure (after the poller has seen it: a cycle is 30 s); the retried job
// queues 0–30 s and runs 3–10 min, and passes 80% of the time.
func (g *buildGen) retryAfter(failed time.Time) retryPlan {
	if g.retry.Float64() >= retryShare {
		return retryPlan{}
	}
	at := failed.Add(time.Minute + time.Duration(g.retry.IntN(19*60))*time.Second)
	started := at.Add(time.Duration(g.retry.IntN(30)) * time.Second)
	finish := started.Add(3*time.Minute + time.Duration(g.retry.IntN(7*60))*time.Second)
	state := buildkite.StateFailed
	if g.retry.Float64() < retryPassShare {
		state = buildkite.StatePassed
	}
	return retryPlan{at: at, started: started, finish: finish, state: state, retrying: true}
}

// jobID is the id of attempt a of the deploy job of the generator's build n (the builds have one
// script job); the history's and the live simulation's generators have ids of their own.
func (g *buildGen) jobID(n uint64, a int) string {
	return fmt.Sprintf("0192%04x-%04x-4000-8000-%012x", g.space, a, n)
}

// deployJob is the first attempt of a build's one script job, as created with the build.
func deployJob(id string, created time.Time) buildkite.Job {
	return buildkite.Job{
		ID: id, Type: buildkite.JobTypeScript, Name: "deploy", Label: "deploy", StepKey: "deploy",
		State: buildkite.StateScheduled, CreatedAt: ts(created), ScheduledAt: ts(created), RunnableAt: ts(created),
	}
}

// retriedJobs are the jobs of the generator's last build, whose deploy job failed (started, failed) and was retried
// as r plans: the first attempt retried in the second, which retry_source links back.
func (g *buildGen) retriedJobs(created, started, failed time.Time, r retryPlan) []buildkite.Job {
	a := deployJob(g.jobID(g.n, 0), created)
	a.State, a.StartedAt, a.FinishedAt = buildkite.StateFailed, ts(started), ts(failed)
	one := 1
	b := deployJob(g.jobID(g.n, 1), r.at)
	a.Retried, a.RetriedInJobID = true, b.ID
	b.State, b.StartedAt, b.FinishedAt = r.state, ts(r.started), ts(r.finish)
	b.RetriesCount, b.RetryType = &one, buildkite.RetryTypeManual
	b.RetrySource = &buildkite.RetrySource{JobID: a.ID, RetryType: buildkite.RetryTypeManual}
	return []buildkite.Job{a, b}
}

func ts(t time.Time) buildkite.Timestamp { return buildkite.Timestamp{Time: t.UTC()} }

// pendingBuild is a build still running at the end of the loaded history, or an event of the
// live simulation: the build finishes at finishAt in state, or, with retry, is retried then.
type pendingBuild struct {
	pipeline  int
	number    int
	finishAt  time.Time
	state     string
	env       string
	annotated bool
	probe     bool
	job       string    // the deploy job attempt that finishes, or that is retried
	started   time.Time // when that attempt started
	retry     bool      // the event is a retry of job, as plan says, not a finish
	plan      retryPlan
	retried   bool // the build was retried once (it finishes its second attempt)
}

// dataset is what load put into the fake, with the counts the figures are compared against.
type dataset struct {
	model   orgModel
	end     time.Time
	builds  int
	pending []pendingBuild
	// finishedSince[w]: builds finished in the last w before end; per annotated pipeline and org-wide.
	windows      []time.Duration
	orgFinished  map[time.Duration]int
	annFinished  map[time.Duration]int
	annPipePages map[time.Duration]int // Σ over annotated pipelines of max(1, ⌈builds/100⌉)
	// annRetried[w]: builds of annotated pipelines finished in the last w that failed, were
	// retried once finished, and finished again: each holds two outcomes, the recovered failure
	// and the retry's. retried and annFailed count them, and every failed build, over the history.
	annRetried    map[time.Duration]int
	retried       int
	annFailed     int
	openAnnotated int
	openOrg       int
	lastNumber    []int // by pipeline
}

// load adds Days of history before end to f, pipeline by pipeline; builds finishing after end
// stay running and are returned as pending. windows are the backfill windows to count builds for.
//
// A third of the failed builds were retried once finished (retryAfter), and finished again
// before end; their finished_at and state are the retry's, failing_at the first failure's. Jobs
// cost memory at 1.8 million builds, so only the builds whose jobs the exporter reads for their
// outcome carry them: the failed and retried builds of annotated pipelines (a failed deploy job,
// and its retry), and the builds still running at the end (a deploy job the live simulation
// finishes). The others list with no jobs, which no outcome of theirs depends on.
func (m orgModel) load(f *buildkitetest.Fake, end time.Time, windows ...time.Duration) *dataset {
	ds := &dataset{
		model: m, end: end, windows: windows,
		orgFinished: map[time.Duration]int{}, annFinished: map[time.Duration]int{}, annPipePages: map[time.Duration]int{},
		annRetried: map[time.Duration]int{},
	}
	gen := newBuildGen(m.Seed)
	start := end.Add(-time.Duration(m.Days) * 24 * time.Hour)
	gap := float64(m.meanGap())
	var batch []buildkite.Build
	perWindow := make(map[time.Duration]int, len(windows))
	for p := range m.Pipelines {
		batch = batch[:0]
		clear(perWindow)
		ann := m.annotated(p)
		t := start
		for {
			t = t.Add(time.Duration(gen.rng.ExpFloat64() * gap)).Truncate(time.Second)
			if !t.Before(end) {
				break
			}
			b, finish, state := gen.next(t)
			b.Number = len(batch) + 1
			var retry retryPlan
			if state == buildkite.StateFailed && !finish.After(end) {
				if retry = gen.retryAfter(finish); retry.retrying && retry.finish.After(end) {
					retry = retryPlan{} // not retried before the end of the history
				}
			}
			if finish.After(end) {
				id := gen.jobID(gen.n, 0)
				b.Jobs = []buildkite.Job{deployJob(id, t)}
				ds.pending = append(ds.pending, pendingBuild{pipeline: p, number: b.Number, finishAt: finish, state: state, env: b.MetaData["environment"], annotated: ann, job: id, started: b.StartedAt.Time})
				ds.openOrg++
				if ann {
					ds.openAnnotated++
				}
			} else {
				b.State, b.FinishedAt = state, ts(finish)
				if state == buildkite.StateFailed {
					b.FailingAt = ts(finish) // as the fake's FinishBuild infers
					if ann {
						ds.annFailed++
						b.Jobs = []buildkite.Job{deployJob(gen.jobID(gen.n, 0), t)}
						b.Jobs[0].State, b.Jobs[0].StartedAt, b.Jobs[0].FinishedAt = state, b.StartedAt, b.FinishedAt
					}
				}
				if retry.retrying {
					ds.retried++
					if ann {
						b.Jobs = gen.retriedJobs(t, b.StartedAt.Time, finish, retry)
					}
					b.State, b.FinishedAt = retry.state, ts(retry.finish)
					finish = retry.finish
				}
				for _, w := range windows {
					if !finish.Before(end.Add(-w)) {
						ds.orgFinished[w]++
						perWindow[w]++
						if ann && retry.retrying {
							ds.annRetried[w]++
						}
					}
				}
			}
			batch = append(batch, b)
		}
		ds.builds += len(batch)
		ds.lastNumber = append(ds.lastNumber, len(batch))
		if ann {
			for _, w := range windows {
				ds.annFinished[w] += perWindow[w]
				ds.annPipePages[w] += pagesFor(perWindow[w])
			}
		}
		f.AddPipeline(m.Org, buildkite.Pipeline{Slug: m.slug(p), DefaultBranch: "main"})
		f.AddBuilds(m.Org, m.slug(p), batch)
	}
	slices.SortFunc(ds.pending, func(a, b pendingBuild) int { return a.finishAt.Compare(b.finishAt) })
	return ds
}

// pagesFor is how many pages of 100 a listing of n builds costs; an empty listing costs one.
func pagesFor(n int) int { return max(1, (n+99)/100) }

// liveSim keeps the organization building after the history: new builds arrive at BuildsPerDay
// on uniformly chosen pipelines and finish after their run time; a third of the failed builds
// are retried once finished (retryAfter) and finish again. Besides, one probe deployment per poll
// interval finishes at a random moment of the interval on an annotated pipeline, so freshness has
// samples at any scale. Events happen at the times advance is called with (the harness steps
// fake time by one second), never between two steps; the fake's clock must be the simulation's
// (it stamps the retry job's created_at).
type liveSim struct {
	m         orgModel
	f         *buildkitetest.Fake
	gen       *buildGen
	next      time.Time // next arrival
	nextProbe time.Time
	probes    int
	interval  time.Duration
	pending   []pendingBuild
	numbers   map[int]int // pipeline → last build number
	// retries and annRetries count the retries made, in every pipeline and in annotated ones.
	retries, annRetries int
}

// finishedEvent is a build the simulation finished.
type finishedEvent struct {
	pendingBuild
	at    time.Time
	probe bool
	// retrying: the build failed and the simulation will retry it, 1 to 20 minutes later. A
	// poller that lists it only after the retry recovers the failure from its jobs when the
	// retry finishes.
	retrying bool
}

func newLiveSim(ds *dataset, f *buildkitetest.Fake, from time.Time, interval time.Duration) *liveSim {
	s := &liveSim{m: ds.model, f: f, gen: newBuildGen(ds.model.Seed + 1), numbers: map[int]int{}, interval: interval}
	s.gen.space = 1
	for p, n := range ds.lastNumber {
		s.numbers[p] = n
	}
	// Builds that were running when the history ends finish as they would have, shifted to the
	// simulation's start (the backfill ran in between, while nothing changed).
	shift := from.Sub(ds.end)
	for _, p := range ds.pending {
		p.finishAt = p.finishAt.Add(shift)
		s.pending = append(s.pending, p)
	}
	s.next = from.Add(s.gap())
	s.nextProbe = from
	return s
}

// withoutProbes stops the probe deployments: the month's organization deploys at its own rate
// only (probes would add one deployment per poll interval, 2,880 a day at 30 s).
func (s *liveSim) withoutProbes() *liveSim {
	s.nextProbe = time.Unix(1<<62, 0)
	return s
}

// due is the earliest time an event is due: an arrival, a probe, a finish or a retry. advance
// at any time before it changes nothing.
func (s *liveSim) due() time.Time {
	t := s.next
	if s.nextProbe.Before(t) {
		t = s.nextProbe
	}
	if len(s.pending) > 0 && s.pending[0].finishAt.Before(t) {
		t = s.pending[0].finishAt
	}
	return t
}

func (s *liveSim) gap() time.Duration {
	return time.Duration(s.gen.rng.ExpFloat64() * float64(24*time.Hour) / s.m.BuildsPerDay)
}

func (s *liveSim) number(p int) int {
	s.numbers[p]++
	return s.numbers[p]
}

func (s *liveSim) schedule(p pendingBuild) {
	i, _ := slices.BinarySearchFunc(s.pending, p.finishAt, func(e pendingBuild, t time.Time) int { return e.finishAt.Compare(t) })
	s.pending = slices.Insert(s.pending, i, p)
}

// start adds a running build of pipeline p created at now, with its deploy job, that finishes at finish.
func (s *liveSim) start(p int, now time.Time, finish func(time.Time) time.Time, probe bool) {
	b, fin, state := s.gen.next(now)
	if finish != nil {
		fin = finish(fin)
	}
	b.Number = s.number(p)
	job := s.gen.jobID(s.gen.n, 0)
	b.Jobs = []buildkite.Job{deployJob(job, now)}
	s.f.AddBuild(s.m.Org, s.m.slug(p), b)
	s.schedule(pendingBuild{pipeline: p, number: b.Number, finishAt: fin, state: state, env: b.MetaData["environment"], annotated: s.m.annotated(p), probe: probe,
		job: job, started: b.StartedAt.Time})
}

// advance applies every arrival, retry and finish due by now, at now, and returns the builds it
// finished.
func (s *liveSim) advance(now time.Time) ([]finishedEvent, error) {
	for !s.next.After(now) {
		s.start(s.gen.rng.IntN(s.m.Pipelines), now, nil, false)
		s.next = s.next.Add(s.gap())
	}
	if !s.nextProbe.After(now) {
		p := (s.probes % s.m.Annotated) * s.m.stride()
		s.probes++
		offset := time.Duration(1+s.gen.rng.IntN(int(s.interval/time.Second))) * time.Second
		s.start(p, now, func(time.Time) time.Time { return now.Add(offset) }, true)
		s.nextProbe = s.nextProbe.Add(s.interval)
	}
	var done []finishedEvent
	for len(s.pending) > 0 && !s.pending[0].finishAt.After(now) {
		p := s.pending[0]
		s.pending = s.pending[1:]
		org, slug := s.m.Org, s.m.slug(p.pipeline)
		if p.retry {
			if err := s.f.RetryJob(org, slug, p.number, p.job, buildkite.RetryTypeManual); err != nil {
				return done, err
			}
			b, _ := s.f.Build(org, slug, p.number)
			r := p.plan
			s.retries++
			if p.annotated {
				s.annRetries++
			}
			// The retry starts after its queue time and runs as retryAfter drew it, shifted to now.
			shift := now.Sub(r.at)
			next := p
			next.retry, next.retried, next.plan = false, true, retryPlan{}
			next.job, next.started, next.finishAt, next.state = b.Jobs[len(b.Jobs)-1].ID, r.started.Add(shift), r.finish.Add(shift), r.state
			s.schedule(next)
			continue
		}
		if err := s.f.FinishJob(org, slug, p.number, p.job, p.state, p.started, now); err != nil {
			return done, err
		}
		if err := s.f.FinishBuild(org, slug, p.number, p.state, now); err != nil {
			return done, err
		}
		done = append(done, finishedEvent{pendingBuild: p, at: now, probe: p.probe})
		if p.state == buildkite.StateFailed && !p.retried {
			if r := s.gen.retryAfter(now); r.retrying {
				retry := p
				retry.retry, retry.plan, retry.finishAt, retry.probe = true, r, r.at, false
				s.schedule(retry)
				done[len(done)-1].retrying = true
			}
		}
	}
	return done, nil
}

// sortedDurations returns the values sorted, for percentiles.
func sortedDurations(ds []time.Duration) []time.Duration {
	out := slices.Clone(ds)
	slices.SortFunc(out, cmp.Compare)
	return out
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
