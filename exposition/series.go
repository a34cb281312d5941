package exposition

import (
	"cmp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// The series functions walk the snapshot in its own order (components by Label, environments by
// Name, pipelines by Pipeline), which is the order Gather sorts series in as long as the labels
// are valid UTF-8; what the snapshot does not order (states, SLOs, info's commit-first labels)
// they sort. Invalid UTF-8 is replaced, which may reorder a few series relative to Gather:
// parsers do not care about the order of series inside a family.

// valid replaces invalid UTF-8, which client_golang refuses in label values; values from the
// catalog, the API or an old log are not trusted to be valid.
func valid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// stateOrder are the indexes of snapshot.States sorted by state name: the order of the state
// label's values in Gather's output.
var stateOrder = func() []int {
	order := make([]int, len(snapshot.States))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(snapshot.States[a], snapshot.States[b]) })
	return order
}()

// forEnv calls fn for every (component, environment) of s with their label values.
func forEnv(s *snapshot.Snapshot, fn func(comp, env string, e *snapshot.Environment)) {
	for i := range s.Components {
		c := &s.Components[i]
		comp := valid(c.Label)
		for j := range c.Environments {
			e := &c.Environments[j]
			fn(comp, valid(e.Name), e)
		}
	}
}

// envGauge is a family labelled (component, environment) with one gauge per environment where
// value reports one.
func envGauge(value func(e *snapshot.Environment) (float64, bool)) func(*snapshot.Snapshot, *series, func()) {
	return func(s *snapshot.Snapshot, sr *series, emit func()) {
		forEnv(s, func(comp, env string, e *snapshot.Environment) {
			v, ok := value(e)
			if !ok {
				return
			}
			sr.values[0], sr.values[1], sr.value = comp, env, v
			emit()
		})
	}
}

// envHistogram is a family labelled (component, environment) with a histogram per environment
// that observed one.
func envHistogram(hist func(e *snapshot.Environment) *snapshot.Histogram) func(*snapshot.Snapshot, *series, func()) {
	return func(s *snapshot.Snapshot, sr *series, emit func()) {
		forEnv(s, func(comp, env string, e *snapshot.Environment) {
			h := hist(e)
			if h == nil {
				return
			}
			sr.values[0], sr.values[1], sr.hist = comp, env, h
			emit()
		})
	}
}

func eachDuration(s *snapshot.Snapshot, sr *series, emit func()) {
	forEnv(s, func(comp, env string, e *snapshot.Environment) {
		for _, st := range stateOrder {
			if h := e.Duration[st]; h != nil {
				sr.values[0], sr.values[1], sr.values[2], sr.hist = comp, env, snapshot.States[st], h
				emit()
			}
		}
	})
}

func eachLastFinished(s *snapshot.Snapshot, sr *series, emit func()) {
	forEnv(s, func(comp, env string, e *snapshot.Environment) {
		for _, st := range stateOrder {
			if t := e.LastFinished[st]; !t.IsZero() {
				sr.values[0], sr.values[1], sr.values[2], sr.value = comp, env, snapshot.States[st], unixSeconds(t)
				emit()
			}
		}
	})
}

// forPipelineState calls fn for every (component, environment, pipeline, state) of s, states
// in label order, with sr's labels set to them.
func forPipelineState(s *snapshot.Snapshot, sr *series, fn func(d *snapshot.PipelineDeployments, st int)) {
	forEnv(s, func(comp, env string, e *snapshot.Environment) {
		for k := range e.Deployments {
			d := &e.Deployments[k]
			p := valid(d.Pipeline)
			for _, st := range stateOrder {
				sr.values = [maxLabels]string{comp, env, p, snapshot.States[st]}
				fn(d, st)
			}
		}
	})
}

func eachDeployments(s *snapshot.Snapshot, sr *series, emit func()) {
	forPipelineState(s, sr, func(d *snapshot.PipelineDeployments, st int) {
		sr.value, sr.created = float64(d.Total[st]), d.Created
		emit()
	})
}

func eachObjective(s *snapshot.Snapshot, sr *series, emit func()) {
	var sorted []snapshot.Objective // reused: environments have one or two
	forEnv(s, func(comp, env string, e *snapshot.Environment) {
		sorted = append(sorted[:0], e.Objectives...)
		slices.SortStableFunc(sorted, func(a, b snapshot.Objective) int { return strings.Compare(a.SLO, b.SLO) })
		for _, o := range sorted {
			sr.values[0], sr.values[1], sr.values[2], sr.value = comp, env, valid(o.SLO), o.Ratio
			emit()
		}
	})
}

// eachInfo sorts: its first label is commit, not component. It holds one row of strings per
// deployed environment, not a dto per series.
func eachInfo(s *snapshot.Snapshot, sr *series, emit func()) {
	type row struct{ commit, comp, env, version string }
	n := 0
	forEnv(s, func(_, _ string, e *snapshot.Environment) {
		if e.Deployed != nil {
			n++
		}
	})
	rows := make([]row, 0, n) // one allocation, not a doubling per thousand rows
	forEnv(s, func(comp, env string, e *snapshot.Environment) {
		if d := e.Deployed; d != nil {
			rows = append(rows, row{valid(d.Commit), comp, env, valid(d.Version)})
		}
	})
	slices.SortFunc(rows, func(a, b row) int {
		if c := strings.Compare(a.commit, b.commit); c != 0 {
			return c
		}
		return cmp.Or(strings.Compare(a.comp, b.comp), strings.Compare(a.env, b.env), strings.Compare(a.version, b.version))
	})
	for _, r := range rows {
		sr.values = [maxLabels]string{r.commit, r.comp, r.env, r.version}
		sr.value = 1
		emit()
	}
}

// eachPipelineError is every reason of every pipeline the components link, 1 while the
// snapshot has that problem, sorted by pipeline then reason.
func eachPipelineError(s *snapshot.Snapshot, sr *series, emit func()) {
	has := make(map[[2]string]bool, len(s.PipelineProblems))
	for _, p := range s.PipelineProblems {
		has[[2]string{p.Pipeline, p.Reason}] = true
	}
	var pipelines []string
	seen := map[string]bool{}
	for i := range s.Components {
		for _, p := range s.Components[i].Pipelines {
			if !seen[p] {
				seen[p] = true
				pipelines = append(pipelines, p)
			}
		}
	}
	slices.Sort(pipelines)
	for _, p := range pipelines {
		for _, r := range snapshot.PipelineReasons {
			sr.values[0], sr.values[1], sr.value = valid(p), r, 0
			if has[[2]string{p, r}] {
				sr.value = 1
			}
			emit()
		}
	}
}

// eachComponentInfo is one series per (component, linked pipeline), in component then pipeline
// order. It comes from the snapshot, so that the tens of thousands of series of a large
// catalog are encoded once per poll instead of at every scrape.
func eachComponentInfo(s *snapshot.Snapshot, sr *series, emit func()) {
	for i := range s.Components {
		c := &s.Components[i]
		pipelines := slices.Clone(c.Pipelines)
		slices.Sort(pipelines)
		for j, p := range pipelines {
			if j > 0 && pipelines[j-1] == p {
				continue
			}
			sr.values[0], sr.values[1], sr.values[2], sr.values[3], sr.values[4] = valid(c.Label), valid(c.Lifecycle), valid(c.Owner), valid(p), valid(c.System)
			sr.value = 1
			emit()
		}
	}
}

// eachExemplarDropped is both reasons, always.
func eachExemplarDropped(s *snapshot.Snapshot, sr *series, emit func()) {
	for i, r := range snapshot.ExemplarDropReasons {
		sr.values[0], sr.value = r, float64(s.ExemplarsDropped[i])
		emit()
	}
}
