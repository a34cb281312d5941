package status

import (
	"cmp"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// model is everything the page derives from one (deployment snapshot, catalog) pair. Both are
// immutable, so it is built once per pair and shared by every request until either is replaced:
// a request then only selects from it (filters) and renders. The model is immutable too.
type model struct {
	snap *snapshot.Snapshot
	cat  *backstage.Snapshot

	info       SnapshotInfo
	catalog    CatalogInfo
	components []*Component // sorted by label
	byLabel    map[string]*Component
	index      map[*Component]int // position in components, raw and frags
	// raw are the components' JSON, encoded once: the JSON response copies them, and they key
	// the HTML fragments (a component whose JSON did not change renders as before).
	raw []string
	// problemLabel is, per catalog problem, the label of the component it names ("" for none),
	// so that a component filter finds the problem of an entity the catalog dropped.
	problemLabel []string
	unowned      []PipelineProblem
	unknownEnvs  []string

	// frags are the components' HTML, rendered on the first HTML request: a client that
	// only reads the JSON never pays for them.
	fragsOnce sync.Once
	frags     []*fragment
	fragsErr  error
}

// fragments returns the HTML of m.components, rendering it once, with what c has of the last
// model rendered.
func (m *model) fragments(c *fragmentCache) ([]*fragment, error) {
	m.fragsOnce.Do(func() { m.frags, m.fragsErr = c.render(m) })
	return m.frags, m.fragsErr
}

func buildModel(snap *snapshot.Snapshot, cat *backstage.Snapshot) (*model, error) {
	m := &model{snap: snap, cat: cat, byLabel: map[string]*Component{}}
	if snap == nil {
		snap = &snapshot.Snapshot{}
	}
	if cat == nil {
		cat = &backstage.Snapshot{}
	}
	m.info = SnapshotInfo{Taken: snap.Taken.UTC(), Polled: snap.Polled}
	m.unknownEnvs = nonNil(slices.Clone(snap.UnknownEnvironments))

	entityProblems := m.addCatalogProblems(cat)

	byPipeline := map[string][]PipelineProblem{}
	for _, p := range snap.PipelineProblems {
		byPipeline[p.Pipeline] = append(byPipeline[p.Pipeline], PipelineProblem{
			Pipeline: p.Pipeline, Reason: p.Reason, Severity: p.Severity, Message: p.Message, Since: p.Since.UTC(),
		})
	}
	sources := make(map[string]string, len(cat.Components)) // lower-case ref -> source
	for _, c := range cat.Components {
		sources[strings.ToLower(c.Ref)] = c.Source
	}

	owned := map[string]bool{}
	add := func(c *Component) {
		for _, p := range c.Pipelines {
			owned[p.Name] = true
			if p.State != stateOK {
				c.HasProblems = true
			}
		}
		c.HasProblems = c.HasProblems || entityProblems[strings.ToLower(c.Ref)]
		m.components = append(m.components, c)
		m.byLabel[c.Label] = c
	}
	for i := range snap.Components {
		sc := &snap.Components[i]
		c := &Component{
			Label: sc.Label, Ref: sc.Ref, Owner: sc.Owner, System: sc.System, Lifecycle: sc.Lifecycle,
			Source:       sources[strings.ToLower(sc.Ref)],
			Pipelines:    pipelines(sc.Pipelines, byPipeline),
			Environments: make([]Environment, len(sc.Environments)),
		}
		for j := range sc.Environments {
			c.Environments[j] = environment(&sc.Environments[j])
		}
		add(c)
	}
	// A component the catalog gained since the last poll is listed too, so that a new
	// annotation shows up at once, as pending, instead of being silently absent.
	for i := range cat.Components {
		bc := &cat.Components[i]
		if _, seen := m.byLabel[bc.Label]; seen {
			continue
		}
		names := make([]string, len(bc.Pipelines))
		for j, p := range bc.Pipelines {
			names[j] = p.String()
		}
		add(&Component{
			Label: bc.Label, Ref: bc.Ref, Owner: bc.Owner, System: bc.System, Lifecycle: bc.Lifecycle, Source: bc.Source,
			Pending: true, Pipelines: pipelines(names, byPipeline), Environments: []Environment{},
		})
	}
	slices.SortStableFunc(m.components, func(a, b *Component) int { return cmp.Compare(a.Label, b.Label) })
	if err := m.encode(); err != nil {
		return nil, err
	}

	m.unowned = []PipelineProblem{}
	for _, p := range snap.PipelineProblems {
		if !owned[p.Pipeline] {
			m.unowned = append(m.unowned, byPipeline[p.Pipeline]...)
			owned[p.Pipeline] = true // once per pipeline: byPipeline holds all its problems
		}
	}
	return m, nil
}

// addCatalogProblems copies the catalog's problems into m and returns the entity refs they name,
// lower-cased (refs are case-insensitive).
func (m *model) addCatalogProblems(cat *backstage.Snapshot) map[string]bool {
	m.catalog = CatalogInfo{LastRefreshSuccess: cat.LastRefreshSuccess, LastSuccess: cat.LastSuccess.UTC(), Problems: []CatalogProblem{}}
	refs := map[string]bool{}
	for _, p := range cat.Problems {
		m.catalog.Problems = append(m.catalog.Problems, CatalogProblem{Reason: string(p.Reason), Source: p.Source, Entity: p.Entity, Message: p.Message})
		m.problemLabel = append(m.problemLabel, labelOfRef(p.Entity))
		if p.Entity != "" {
			refs[strings.ToLower(p.Entity)] = true
		}
	}
	return refs
}

// encode indexes the sorted components and encodes each one's JSON.
func (m *model) encode() error {
	m.index = make(map[*Component]int, len(m.components))
	m.raw = make([]string, len(m.components))
	for i, c := range m.components {
		m.index[c] = i
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		m.raw[i] = string(b)
	}
	return nil
}

// Pipeline states: the worst severity of a pipeline's problems.
const (
	stateOK      = "ok"
	stateWarning = "warning"
	stateError   = "error"
)

func pipelines(names []string, problems map[string][]PipelineProblem) []Pipeline {
	out := make([]Pipeline, len(names))
	for i, name := range names {
		p := Pipeline{Name: name, State: stateOK, Problems: nonNil(problems[name])}
		for _, pr := range p.Problems {
			// Anything but a warning counts as an error: an unknown severity must not read as ok.
			switch {
			case pr.Severity != stateWarning:
				p.State = stateError
			case p.State == stateOK:
				p.State = stateWarning
			}
		}
		out[i] = p
	}
	return out
}

func environment(e *snapshot.Environment) Environment {
	out := Environment{Name: e.Name, Failing: e.Failing, Running: e.Running, AwaitingApproval: e.Awaiting, LastFinished: LastFinished{
		Passed:   e.LastFinished[snapshot.StateIndex(snapshot.StatePassed)].UTC(),
		Failed:   e.LastFinished[snapshot.StateIndex(snapshot.StateFailed)].UTC(),
		Canceled: e.LastFinished[snapshot.StateIndex(snapshot.StateCanceled)].UTC(),
	}}
	if d := e.Deployed; d != nil {
		out.Deployed = &Deployed{
			Version: d.Version, Commit: d.Commit, FinishedAt: d.FinishedAt.UTC(), Pipeline: d.Pipeline,
			BuildNumber: d.BuildNumber, WebURL: webURL(d.WebURL),
			DeployedBy: d.DeployedBy, ReleaseNotes: d.ReleaseNotes,
		}
	}
	return out
}

// webURL returns u when it is an absolute http(s) URL, else "". The value comes from the API;
// html/template would escape it, but a javascript: or data: URL stays a working link when
// escaped, so the scheme is checked here, for the HTML and the JSON alike.
func webURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || p.Opaque != "" {
		return ""
	}
	switch strings.ToLower(p.Scheme) {
	case "http", "https":
		return u
	}
	return ""
}

// labelOfRef returns the component label of an entity ref "[component:]<namespace>/<name>", or ""
// when the ref names no component.
func labelOfRef(ref string) string {
	kind, rest, ok := strings.Cut(ref, ":")
	if !ok {
		kind, rest = "component", ref
	}
	if !strings.EqualFold(kind, "component") || rest == "" {
		return ""
	}
	ns, name, ok := strings.Cut(rest, "/")
	if !ok {
		ns, name = "default", rest
	}
	return backstage.ComponentLabel(ns, name)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
