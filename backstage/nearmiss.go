package backstage

import (
	"strings"
	"unicode/utf8"
)

// maxNearMiss is the largest edit distance at which a key or kind counts as a misspelling of an
// accepted one. Two edits catch a dropped, doubled, swapped or wrong letter or two; three would
// start to match real, unrelated names.
const maxNearMiss = 2

// The kinds whose near misses are reported. Backstage compares kinds case-sensitively: the
// built-in kind schemas (packages/catalog-model src/schema/kinds/*.schema.json) allow exactly
// "Component" and "Location", and the catalog rejects an entity no kind validator accepts ("No
// processor recognized the entity"), so `kind: component` is not a Component there either.
const (
	kindComponent = "Component"
	kindLocation  = "Location"
)

// nearestAnnotation returns the accepted annotation key that key is a near miss of: not equal to
// it, but equal ignoring case or within maxNearMiss edits. Ties go to the first of Annotations.
func nearestAnnotation(key string) (string, bool) {
	return nearest(key, Annotations, false)
}

// nearestKind returns Component or Location when kind is a near miss of one of them.
func nearestKind(kind string) (string, bool) {
	return nearest(kind, []string{kindComponent, kindLocation}, true)
}

func nearest(s string, targets []string, foldCase bool) (string, bool) {
	best, bestDist := "", maxNearMiss+1
	for _, t := range targets {
		if s == t {
			return "", false
		}
		if strings.EqualFold(s, t) {
			return t, true
		}
		a, b := s, t
		if foldCase {
			a, b = strings.ToLower(a), strings.ToLower(b)
		}
		if d := editDistance(a, b, maxNearMiss); d < bestDist {
			best, bestDist = t, d
		}
	}
	return best, bestDist <= maxNearMiss
}

// editDistance returns the optimal-string-alignment distance between a and b (Damerau–
// Levenshtein where no substring is edited twice: insertions, deletions, substitutions and
// transpositions of adjacent runes), or limit+1 when it is larger than limit. Only a band of width
// 2*limit+1 around the diagonal is computed, so a long string costs O(len*limit), and strings whose
// lengths differ by more than limit cost nothing.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d > 4*limit || -d > 4*limit {
		return limit + 1 // rune counts cannot be within limit either (a rune is at most 4 bytes)
	}
	ra, rb := []rune(a), []rune(b)
	if !utf8.ValidString(a) || !utf8.ValidString(b) {
		return limit + 1
	}
	n, m := len(ra), len(rb)
	if n-m > limit || m-n > limit {
		return limit + 1
	}
	inf := limit + 1
	// Three rows of the DP matrix: two back (for transpositions), previous and current.
	prev2 := make([]int, m+1)
	prev := make([]int, m+1)
	cur := make([]int, m+1)
	for j := range prev {
		prev[j] = min(j, inf)
	}
	for i := 1; i <= n; i++ {
		lo, hi := max(1, i-limit), min(m, i+limit)
		for j := range cur {
			cur[j] = inf
		}
		if i <= limit {
			cur[0] = i
		}
		rowMin := cur[0]
		for j := lo; j <= hi; j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = min(v, inf)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return inf
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return min(prev[m], inf)
}
