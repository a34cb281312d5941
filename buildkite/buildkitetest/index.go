package buildkitetest

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// buildRec is one stored build. created and finished are copies of the build's timestamps (Unix
// nanoseconds, 0 for null) as the indexes last saw them; seq orders builds added at the same time.
type buildRec struct {
	b                 buildkite.Build
	seq               uint64
	pipe              *pipe
	created, finished int64
	open              bool
	// annotations are the build's annotations in the order they were made (Annotate).
	annotations []buildkite.Annotation
}

func (r *buildRec) keys() {
	r.created = nanos(r.b.CreatedAt)
	r.finished = nanos(r.b.FinishedAt)
	r.open = !terminalStates[r.filterState()]
}

func nanos(t buildkite.Timestamp) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// filterState is the state the state[] filter sees: a blocked build is "blocked" whatever state
// its JSON shows.
func (r *buildRec) filterState() string {
	if r.b.Blocked {
		return buildkite.StateBlocked
	}
	return r.b.State
}

func (r *buildRec) orgSlug() string { return r.pipe.org.slug }

func (r *buildRec) defaultID() string {
	return fmt.Sprintf("01900000-0000-4000-8000-%012x", r.seq)
}

func (r *buildRec) id() string {
	if r.b.ID != "" {
		return r.b.ID
	}
	return r.defaultID()
}

func (r *buildRec) defaultURL() string {
	return "https://api.buildkite.com/v2/organizations/" + r.orgSlug() + "/pipelines/" + r.pipe.p.Slug +
		"/builds/" + strconv.Itoa(r.b.Number)
}

func (r *buildRec) url() string {
	if r.b.URL != "" {
		return r.b.URL
	}
	return r.defaultURL()
}

func (r *buildRec) defaultWebURL() string {
	return "https://buildkite.com/" + r.orgSlug() + "/" + r.pipe.p.Slug + "/builds/" + strconv.Itoa(r.b.Number)
}

func (r *buildRec) webURL() string {
	if r.b.WebURL != "" {
		return r.b.WebURL
	}
	return r.defaultWebURL()
}

// view is the build as callers of the Go API see it: derived fields filled, nothing shared.
func (r *buildRec) view() buildkite.Build {
	b := r.b
	b.ID = r.id()
	b.URL = r.url()
	b.WebURL = r.webURL()
	p := r.pipe.p
	p.Tags = slices.Clone(p.Tags)
	b.Pipeline = &p
	b.MetaData = maps.Clone(b.MetaData)
	b.Jobs = cloneJobs(b.Jobs)
	return b
}

// index keeps one organization's or pipeline's builds ordered for the list endpoints:
// byCreated holds every build by (created_at, seq); byFinished the finished ones by
// (finished_at, seq); open the builds in a non-terminal filter state. Builds usually arrive and
// finish in time order, so both slices are appended to; anything else marks them dirty and they
// are sorted once, by fix, before the next query.
type index struct {
	byCreated    []*buildRec
	createdDirty bool
	byFinished   []*buildRec
	finDirty     bool
	open         map[*buildRec]struct{}
}

func createdCmp(a, b *buildRec) int {
	if c := cmp.Compare(a.created, b.created); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

func finishedCmp(a, b *buildRec) int {
	if c := cmp.Compare(a.finished, b.finished); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

func (ix *index) add(r *buildRec) {
	if n := len(ix.byCreated); n > 0 && createdCmp(r, ix.byCreated[n-1]) < 0 {
		ix.createdDirty = true
	}
	ix.byCreated = append(ix.byCreated, r)
	if r.finished != 0 {
		ix.insertFinished(r)
	}
	ix.setOpen(r)
}

func (ix *index) setOpen(r *buildRec) {
	if r.open {
		if ix.open == nil {
			ix.open = map[*buildRec]struct{}{}
		}
		ix.open[r] = struct{}{}
	} else {
		delete(ix.open, r)
	}
}

// insertFinished files r under its finished key, in place when that is cheap.
func (ix *index) insertFinished(r *buildRec) {
	if ix.finDirty {
		return // rebuilt from byCreated by fix
	}
	n := len(ix.byFinished)
	if n == 0 || finishedCmp(r, ix.byFinished[n-1]) > 0 {
		ix.byFinished = append(ix.byFinished, r)
		return
	}
	i, _ := slices.BinarySearchFunc(ix.byFinished, r, finishedCmp)
	if n-i > 1<<16 {
		ix.finDirty = true
		return
	}
	ix.byFinished = slices.Insert(ix.byFinished, i, r)
}

// unfile takes r out of byFinished; r must still carry the keys it was filed under.
func (ix *index) unfile(r *buildRec) {
	if r.finished == 0 || ix.finDirty {
		return
	}
	i, found := slices.BinarySearchFunc(ix.byFinished, r, finishedCmp)
	if found && ix.byFinished[i] == r {
		ix.byFinished = slices.Delete(ix.byFinished, i, i+1)
		return
	}
	ix.finDirty = true
}

// refile files r again after its keys changed from oldCreated; unfile came first.
func (ix *index) refile(r *buildRec, oldCreated int64) {
	if r.created != oldCreated {
		ix.createdDirty = true
	}
	if r.finished != 0 {
		ix.insertFinished(r)
	}
	ix.setOpen(r)
}

// drop removes the builds old selects and returns how many there were. Removing keeps both
// slices in the order they had, sorted or dirty.
func (ix *index) drop(old func(*buildRec) bool) int {
	n := len(ix.byCreated)
	ix.byCreated = slices.DeleteFunc(ix.byCreated, old)
	ix.byFinished = slices.DeleteFunc(ix.byFinished, old)
	maps.DeleteFunc(ix.open, func(r *buildRec, _ struct{}) bool { return old(r) })
	return n - len(ix.byCreated)
}

func (ix *index) dirty() bool { return ix.createdDirty || ix.finDirty }

// fix sorts what add and changed left unsorted. It needs the write lock.
func (ix *index) fix() {
	if ix.createdDirty {
		slices.SortFunc(ix.byCreated, createdCmp)
		ix.createdDirty = false
	}
	if ix.finDirty {
		ix.byFinished = ix.byFinished[:0]
		for _, r := range ix.byCreated {
			if r.finished != 0 {
				ix.byFinished = append(ix.byFinished, r)
			}
		}
		slices.SortFunc(ix.byFinished, finishedCmp)
		ix.finDirty = false
	}
}
