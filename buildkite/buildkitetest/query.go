package buildkitetest

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// Pagination defaults (reference §3): per_page 30, at most 100. Larger values are clamped, which
// the reference leaves open (§18).
const (
	defaultPerPage = 30
	maxPerPage     = 100
)

// validStates are the values the state filter accepts (reference §3).
var validStates = map[string]bool{
	"creating": true, "scheduled": true, "running": true, "passed": true, "failing": true,
	"failed": true, "blocked": true, "canceling": true, "canceled": true, "skipped": true,
	"not_run": true, "finished": true,
}

// finishedStates is what the state filter's "finished" shortcut means.
var finishedStates = []string{buildkite.StatePassed, buildkite.StateFailed, buildkite.StateBlocked, buildkite.StateCanceled}

// buildFilter is a parsed build-list query.
type buildFilter struct {
	branches     []string // patterns; '*' matches any run of characters
	commits      map[string]bool
	createdFrom  int64 // inclusive; 0 = unset
	createdTo    int64 // exclusive; 0 = unset
	finishedFrom int64 // inclusive; 0 = unset
	creator      string
	states       map[string]bool // filter states; nil = any
	metaData     map[string]string
}

// params is a query's values; both "x" and "x[]" spellings count, empty values do not.
func params(q url.Values, name string) []string {
	var out []string
	for _, k := range []string{name, name + "[]"} {
		for _, v := range q[k] {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

func boolParam(q url.Values, name string) bool {
	v := q.Get(name)
	return v == "true" || v == "1"
}

// errBadRequest is a 400 with a message naming what to fix.
type errBadRequest string

func (e errBadRequest) Error() string { return string(e) }

func parseTime(q url.Values, name string) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			if t.UnixNano() == 0 {
				return 1, nil // 0 means unset; one nanosecond later changes nothing real
			}
			return t.UnixNano(), nil
		}
	}
	return 0, errBadRequest(fmt.Sprintf("%s must be an ISO 8601 time such as 2025-01-08T23:22:05Z, got %q", name, v))
}

func parseBuildFilter(q url.Values) (*buildFilter, error) {
	f := &buildFilter{branches: params(q, "branch"), creator: q.Get("creator")}
	var err error
	if f.createdFrom, err = parseTime(q, "created_from"); err != nil {
		return nil, err
	}
	if f.createdTo, err = parseTime(q, "created_to"); err != nil {
		return nil, err
	}
	if f.finishedFrom, err = parseTime(q, "finished_from"); err != nil {
		return nil, err
	}
	if cs := params(q, "commit"); len(cs) > 0 {
		f.commits = map[string]bool{}
		for _, c := range cs {
			f.commits[c] = true
		}
	}
	if ss := params(q, "state"); len(ss) > 0 {
		f.states = map[string]bool{}
		for _, s := range ss {
			if !validStates[s] {
				return nil, errBadRequest(fmt.Sprintf("state %q is not one of creating, scheduled, running, passed, failing, failed, blocked, canceling, canceled, skipped, not_run, finished", s))
			}
			if s == buildkite.StateFinished {
				for _, fs := range finishedStates {
					f.states[fs] = true
				}
				continue
			}
			f.states[s] = true
		}
	}
	for k, vs := range q {
		if key, ok := strings.CutPrefix(k, "meta_data["); ok && strings.HasSuffix(key, "]") && len(vs) > 0 {
			if f.metaData == nil {
				f.metaData = map[string]string{}
			}
			f.metaData[strings.TrimSuffix(key, "]")] = vs[0]
		}
	}
	return f, nil
}

// onlyCreated reports whether the filter is nothing but a created_at range, so a range of the
// created index is exactly the answer.
func (f *buildFilter) onlyCreated() bool {
	return len(f.branches) == 0 && f.commits == nil && f.finishedFrom == 0 && f.creator == "" &&
		f.states == nil && f.metaData == nil
}

func (f *buildFilter) match(r *buildRec) bool {
	if f.createdFrom != 0 && r.created < f.createdFrom {
		return false
	}
	if f.createdTo != 0 && r.created >= f.createdTo {
		return false
	}
	if f.finishedFrom != 0 && (r.finished == 0 || r.finished < f.finishedFrom) {
		return false
	}
	if f.states != nil && !f.states[r.filterState()] {
		return false
	}
	if f.commits != nil && !f.commits[r.b.Commit] {
		return false
	}
	if f.creator != "" && (r.b.Creator == nil || r.b.Creator.ID != f.creator) {
		return false
	}
	if len(f.branches) > 0 {
		ok := false
		for _, p := range f.branches {
			if globMatch(p, r.b.Branch) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for k, v := range f.metaData {
		if got, ok := r.b.MetaData[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// globMatch matches s against pattern, where '*' stands for any run of characters.
func globMatch(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// allOpen reports whether every state the filter asks for is non-terminal, so the open set
// holds every candidate.
func (f *buildFilter) allOpen() bool {
	if f.states == nil {
		return false
	}
	for s := range f.states {
		if terminalStates[s] {
			return false
		}
	}
	return true
}

// page is the part of a result a request asked for.
type page struct {
	number, perPage int
}

func (p page) offset() int { return (p.number - 1) * p.perPage }

func parsePage(q url.Values) page {
	p := page{number: 1, perPage: defaultPerPage}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 1 {
		p.number = min(n, 1<<30) // no overflow when the deep-page check is off
	}
	if n, err := strconv.Atoi(q.Get("per_page")); err == nil && n > 0 {
		p.perPage = min(n, maxPerPage)
	}
	return p
}

// query answers one index: the requested page of matching builds, newest created first, and the
// number of matches. It picks the smallest candidate set the indexes give: a binary-searched
// created_at range, the builds finished since finished_from, or the open builds.
func (ix *index) query(f *buildFilter, p page) ([]*buildRec, int) {
	lo, hi := 0, len(ix.byCreated)
	if f.createdFrom != 0 {
		lo = sort.Search(hi, func(i int) bool { return ix.byCreated[i].created >= f.createdFrom })
	}
	if f.createdTo != 0 {
		hi = sort.Search(hi, func(i int) bool { return ix.byCreated[i].created >= f.createdTo })
	}
	hi = max(lo, hi)
	best := hi - lo
	var cands []*buildRec
	if f.finishedFrom != 0 {
		i := sort.Search(len(ix.byFinished), func(i int) bool { return ix.byFinished[i].finished >= f.finishedFrom })
		if n := len(ix.byFinished) - i; n < best {
			best, cands = n, ix.byFinished[i:]
		}
	}
	if f.allOpen() && len(ix.open) < best {
		cands = make([]*buildRec, 0, len(ix.open))
		for r := range ix.open {
			cands = append(cands, r)
		}
	}
	if cands != nil {
		out := collect(cands, f)
		sortNewestFirst(out)
		return cut(out, p), len(out)
	}
	rng := ix.byCreated[lo:hi]
	off := p.offset()
	if f.onlyCreated() {
		var out []*buildRec
		for i := len(rng) - 1 - off; i >= 0 && len(out) < p.perPage; i-- {
			out = append(out, rng[i])
		}
		return out, len(rng)
	}
	var out []*buildRec
	total := 0
	for i := len(rng) - 1; i >= 0; i-- {
		if !f.match(rng[i]) {
			continue
		}
		if total >= off && len(out) < p.perPage {
			out = append(out, rng[i])
		}
		total++
	}
	return out, total
}

func collect(cands []*buildRec, f *buildFilter) []*buildRec {
	var out []*buildRec
	for _, r := range cands {
		if f.match(r) {
			out = append(out, r)
		}
	}
	return out
}

func sortNewestFirst(rs []*buildRec) {
	slices.SortFunc(rs, func(a, b *buildRec) int { return createdCmp(b, a) })
}

func cut[T any](all []T, p page) []T {
	off := p.offset()
	if off >= len(all) {
		return nil
	}
	return all[off:min(len(all), off+p.perPage)]
}
