package deployment

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// nativeObserve counts v in n's exponential buckets (snapshot.NativeSchema): a value of at most
// snapshot.NativeZeroThreshold (durations are never negative) in the zero bucket, any other in
// the bucket of snapshot.NativeIndex, kept sorted. n must not be shared with a snapshot. It
// reports false when a bucket's count would overflow its 32 bits (4 billion deployments of one
// (component, environment) in one bucket): the native form cannot stay exact.
func nativeObserve(n *snapshot.Native, v float64) bool {
	if v <= snapshot.NativeZeroThreshold {
		n.ZeroCount++
		return true
	}
	idx := snapshot.NativeIndex(v)
	i, found := slices.BinarySearchFunc(n.Buckets, idx, func(b snapshot.NativeBucket, idx int32) int {
		switch {
		case b.Index < idx:
			return -1
		case b.Index > idx:
			return 1
		}
		return 0
	})
	if found {
		if n.Buckets[i].Count == math.MaxUint32 {
			return false
		}
		n.Buckets[i].Count++
		return true
	}
	n.Buckets = slices.Insert(n.Buckets, i, snapshot.NativeBucket{Index: idx, Count: 1})
	return true
}

// exemplarOf is the exemplar labels of r's observations and, when the labels had to lose
// something to keep within snapshot.ExemplarMaxRunes, the reason (a key of
// Aggregate.ExemplarsDropped). build is empty when there is no exemplar: the record names no
// build number, or even its build label is too long.
func exemplarOf(r store.Record) (o observation, dropped string) {
	o.finished = r.FinishedAt
	if r.BuildNumber <= 0 || r.Pipeline == "" || r.FinishedAt.IsZero() {
		return o, ""
	}
	build := strings.ToValidUTF8(r.Pipeline, "\uFFFD") + "/builds/" + strconv.Itoa(r.BuildNumber)
	runes := utf8.RuneCountInString(snapshot.ExemplarBuildLabel) + utf8.RuneCountInString(build)
	if runes > snapshot.ExemplarMaxRunes {
		return o, snapshot.ExemplarDroppedAll
	}
	o.build = build
	commit := shortCommit(r.Commit)
	if commit == "" {
		return o, ""
	}
	if runes+len(snapshot.ExemplarCommitLabel)+len(commit) > snapshot.ExemplarMaxRunes {
		return o, snapshot.ExemplarDroppedCommit
	}
	// A copy: the record's strings may share one allocation (the store's decoder makes one
	// per record), which a substring would keep alive with every exemplar.
	o.commit = strings.Clone(commit)
	return o, ""
}

// shortCommit is the first snapshot.ShortCommitLength hex digits of a sha, lower case; empty
// when commit is not one (Buildkite accepts "HEAD" or a branch name as a build's commit).
func shortCommit(commit string) string {
	if len(commit) < 7 {
		return ""
	}
	short := commit[:min(len(commit), snapshot.ShortCommitLength)]
	for _, c := range []byte(short) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return ""
		}
	}
	return strings.ToLower(short)
}
