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

// buildGen draws build attributes.
type buildGen struct {
	rng *rand.Rand
	n   uint64
}

func newBuildGen(seed uint64) *buildGen {
	return &buildGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
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

func ts(t time.Time) buildkite.Timestamp { return buildkite.Timestamp{Time: t.UTC()} }

// pendingBuild is a build still running at the end of the loaded history.
type pendingBuild struct {
	pipeline  int
	number    int
	finishAt  time.Time
	state     string
	env       string
	annotated bool
	probe     bool
}

// dataset is what load put into the fake, with the counts the figures are compared against.
type dataset struct {
	model   orgModel
	end     time.Time
	builds  int
	pending []pendingBuild
	// finishedSince[w]: builds finished in the last w before end; per annotated pipeline and org-wide.
	windows       []time.Duration
	orgFinished   map[time.Duration]int
	annFinished   map[time.Duration]int
	annPipePages  map[time.Duration]int // Σ over annotated pipelines of max(1, ⌈builds/100⌉)
	openAnnotated int
	openOrg       int
	lastNumber    []int // by pipeline
}

// load adds Days of history before end to f, pipeline by pipeline; builds finishing after end
// stay running and are returned as pending. windows are the backfill windows to count builds for.
func (m orgModel) load(f *buildkitetest.Fake, end time.Time, windows ...time.Duration) *dataset {
	ds := &dataset{
		model: m, end: end, windows: windows,
		orgFinished: map[time.Duration]int{}, annFinished: map[time.Duration]int{}, annPipePages: map[time.Duration]int{},
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
			if finish.After(end) {
				ds.pending = append(ds.pending, pendingBuild{pipeline: p, number: b.Number, finishAt: finish, state: state, env: b.MetaData["environment"], annotated: ann})
				ds.openOrg++
				if ann {
					ds.openAnnotated++
				}
			} else {
				b.State, b.FinishedAt = state, ts(finish)
				for _, w := range windows {
					if !finish.Before(end.Add(-w)) {
						ds.orgFinished[w]++
						perWindow[w]++
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
// on uniformly chosen pipelines and finish after their run time. Besides, one probe deployment
// per poll interval finishes at a random moment of the interval on an annotated pipeline, so
// freshness has samples at any scale. Events happen at the times advance is called with (the
// harness steps fake time by one second), never between two steps.
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
}

// finishedEvent is a build the simulation finished.
type finishedEvent struct {
	pendingBuild
	at    time.Time
	probe bool
}

func newLiveSim(ds *dataset, f *buildkitetest.Fake, from time.Time, interval time.Duration) *liveSim {
	s := &liveSim{m: ds.model, f: f, gen: newBuildGen(ds.model.Seed + 1), numbers: map[int]int{}, interval: interval}
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

// start adds a running build of pipeline p created at now that finishes at finish.
func (s *liveSim) start(p int, now time.Time, finish func(time.Time) time.Time, probe bool) {
	b, fin, state := s.gen.next(now)
	if finish != nil {
		fin = finish(fin)
	}
	b.Number = s.number(p)
	s.f.AddBuild(s.m.Org, s.m.slug(p), b)
	s.schedule(pendingBuild{pipeline: p, number: b.Number, finishAt: fin, state: state, env: b.MetaData["environment"], annotated: s.m.annotated(p), probe: probe})
}

// advance applies every arrival and finish due by now, at now, and returns the builds it finished.
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
		if err := s.f.FinishBuild(s.m.Org, s.m.slug(p.pipeline), p.number, p.state, now); err != nil {
			return done, err
		}
		done = append(done, finishedEvent{pendingBuild: p, at: now, probe: p.probe})
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
