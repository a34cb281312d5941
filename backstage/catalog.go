package backstage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Source reads entities from one place: catalog files or the Backstage catalog API.
type Source interface {
	// Load returns the valid Components of the source and the Problems found. It returns an error
	// when the source as a whole failed (API unreachable, no file readable); the Result then holds
	// Problems describing the failure and must not replace a previous good result.
	Load(ctx context.Context) (Result, error)
	// String names the source in logs and problems; it never contains credentials.
	String() string
}

// Result is the outcome of loading one or more sources.
type Result struct {
	// Components straight out of a Source are in the order they were read and only individually
	// valid. After Merge they are sorted by Label (then Ref) and each pipeline belongs to at most
	// one component.
	Components []Component
	// Problems are the errors found: each names what was skipped and how to fix it.
	Problems []Problem
	// Ignored are annotated entities of another kind than Component (ReasonUnsupportedKind). They
	// are not errors, but a `check` command may want to show them.
	Ignored []Problem
}

// Merge combines the results of several sources and applies the catalog-wide rules:
//
//   - An entity ref seen twice (refs are case-insensitive, as in Backstage) is kept once, from the
//     first result that has it; files come before the API when the caller lists them that way. If
//     the two copies link different pipelines or owners, a ReasonDuplicateEntity problem is added.
//   - Two components with the same Label (the metrics' component label) would mix their series:
//     the one with the smallest entity ref (lower-cased) is kept, every other one is dropped with a
//     ReasonDuplicateComponentLabel problem naming both.
//   - A pipeline claimed by two components goes to the component with the smallest entity ref
//     (lower-cased); every other claimant loses that pipeline and gets a ReasonDuplicatePipeline
//     problem naming both. A component left with no pipeline is dropped.
func Merge(results ...Result) Result {
	var out Result
	byRef := map[string]int{} // lower-case ref -> index in all
	var all []Component
	for _, r := range results {
		out.Problems = append(out.Problems, r.Problems...)
		out.Ignored = append(out.Ignored, r.Ignored...)
		for _, c := range r.Components {
			key := refKey(c.Ref)
			if i, seen := byRef[key]; seen {
				if first := all[i]; !sameComponent(first, c) {
					out.Problems = append(out.Problems, Problem{
						Reason: ReasonDuplicateEntity, Source: c.Source, Entity: c.Ref,
						Message: fmt.Sprintf("%s is also defined in %s with different content; that one is used, remove or rename one of them", c.Ref, first.Source),
					})
				}
				continue
			}
			byRef[key] = len(all)
			all = append(all, cloneComponent(c))
		}
	}

	// Claims are settled in ref order, so the winner does not depend on file or page order.
	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	keys := make([]string, len(all))
	for i, c := range all {
		keys[i] = refKey(c.Ref)
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(keys[a], keys[b]) })
	byLabel := map[string]int{}
	kept := order[:0:0]
	for _, i := range order {
		c := all[i]
		if w, taken := byLabel[c.Label]; taken {
			winner := all[w]
			out.Problems = append(out.Problems, newProblem(ReasonDuplicateComponentLabel, c.Source, c.Ref,
				"%s (%s) and %s (%s) both have the component label %q, so their series would mix; %s is skipped. Rename one of them (the label is the name, or namespace/name outside the default namespace; bytes that are not UTF-8 become U+FFFD)",
				showRef(winner.Ref), winner.Source, showRef(c.Ref), c.Source, c.Label, showRef(c.Ref)))
			continue
		}
		byLabel[c.Label] = i
		kept = append(kept, i)
	}
	order = kept

	owner := map[PipelineRef]int{}
	for _, i := range order {
		c := &all[i]
		kept := c.Pipelines[:0]
		for _, p := range c.Pipelines {
			if w, taken := owner[p]; taken {
				winner := all[w]
				out.Problems = append(out.Problems, Problem{
					Reason: ReasonDuplicatePipeline, Source: c.Source, Entity: c.Ref,
					Message: fmt.Sprintf("pipeline %s is claimed by both %s (%s) and %s (%s); %s keeps it. Remove the annotation from the component that does not deploy with it",
						p, winner.Ref, winner.Source, c.Ref, c.Source, winner.Ref),
				})
				continue
			}
			owner[p] = i
			kept = append(kept, p)
		}
		c.Pipelines = kept
	}
	for _, i := range order {
		if c := all[i]; len(c.Pipelines) > 0 {
			out.Components = append(out.Components, c)
		}
	}
	sortComponents(out.Components)
	return out
}

// refKey is the entity ref compared case-insensitively, as Backstage compares refs. Bytes that
// are not UTF-8 are kept as they are (strings.ToLower would turn them all into U+FFFD and make
// two different entities one).
func refKey(ref string) string {
	if utf8.ValidString(ref) {
		return strings.ToLower(ref)
	}
	var b strings.Builder
	for i := 0; i < len(ref); {
		r, size := utf8.DecodeRuneInString(ref[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteByte(ref[i])
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
		i += size
	}
	return b.String()
}

// showRef quotes a ref that is not valid UTF-8 (\xff escapes), so that two refs differing only
// there can be told apart in a message.
func showRef(ref string) string {
	if utf8.ValidString(ref) {
		return ref
	}
	return strconv.Quote(ref)
}

func sameComponent(a, b Component) bool {
	return a.Owner == b.Owner && a.System == b.System && a.Lifecycle == b.Lifecycle &&
		a.Type == b.Type && slices.Equal(a.Pipelines, b.Pipelines)
}

// cloneComponent copies the slices so that Merge never writes into a Source's result, which the
// Watcher keeps as the last good one.
func cloneComponent(c Component) Component {
	c.Pipelines = slices.Clone(c.Pipelines)
	c.Tags = slices.Clone(c.Tags)
	return c
}

func sortComponents(cs []Component) {
	slices.SortFunc(cs, func(a, b Component) int {
		return cmp.Or(cmp.Compare(a.Label, b.Label), cmp.Compare(a.Ref, b.Ref))
	})
}

// Load reads every source once and merges them: the one-shot form for a `check` command, which
// passes a deadline (ctx). The error joins the failures of the sources that failed; the Result
// still holds what the others found, and what a failed source returned: its problems, and the
// components of a file load cut short by the deadline.
func Load(ctx context.Context, sources ...Source) (Result, error) {
	results := make([]Result, 0, len(sources))
	var errs []error
	for _, s := range sources {
		r, err := s.Load(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
		}
		results = append(results, r)
	}
	return Merge(results...), errors.Join(errs...)
}
