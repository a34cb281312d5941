package buildkite

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-kit/log/level"
)

// Limits on what the client keeps of an answer. An answer is hostile input: memory is bounded by
// what the client keeps, never by what an answer claims, so each limit drops the excess and
// counts it in buildkite_exporter_api_dropped_total{what}.
const (
	// MaxMetaDataKeys is how many meta-data keys of one build are kept. A build with more keeps
	// the MaxMetaDataKeys keys that sort first (byte order), whatever order they came in, so the
	// same build always keeps the same keys; the others count as what="meta_data_keys".
	// Deployment meta-data (environment, <app>:<env>:deployed, version) needs a handful of keys.
	MaxMetaDataKeys = 64
	// MaxMetaDataKeyLen: a longer meta-data key is dropped (what="meta_data_keys"). Keys set by
	// block steps are short slugs.
	MaxMetaDataKeyLen = 256
	// MaxMetaDataValueLen: a longer meta-data value is cut to this many bytes, on a rune boundary
	// (what="meta_data_values"). Buildkite allows 100 KB but discourages more than 1 KB.
	MaxMetaDataValueLen = 1024
	// ReleaseNotesKey is the meta-data key a block step's release-notes field writes (block
	// step fields become build meta-data keys, reference §8). Its value is kept up to
	// MaxReleaseNotesValueLen instead of MaxMetaDataValueLen, so that the 4 KiB of release notes
	// a deployment record keeps (deployment.MaxReleaseNotesLen) survive, and their cut shows.
	ReleaseNotesKey = "release-notes"
	// MaxReleaseNotesValueLen bounds the release-notes value: twice what a record keeps, so a
	// longer value is still seen as longer and marked cut.
	MaxReleaseNotesValueLen = 8 << 10
	// MaxJobsPerBuild is how many jobs of one build are kept, the first in the answer's order;
	// the rest count as what="jobs".
	MaxJobsPerBuild = 1000
)

// Values of the what label of buildkite_exporter_api_dropped_total.
const (
	dropBuilds         = "builds"           // items of a build page beyond the per_page asked for
	dropPipelines      = "pipelines"        // items of a pipeline page beyond the per_page asked for
	dropMetaDataKeys   = "meta_data_keys"   // keys beyond MaxMetaDataKeys or longer than MaxMetaDataKeyLen
	dropMetaDataValues = "meta_data_values" // values cut to MaxMetaDataValueLen
	dropJobs           = "jobs"             // jobs beyond MaxJobsPerBuild
	dropOutOfWindow    = "out_of_window"    // builds outside the filters the request sent
)

var dropKinds = []string{dropBuilds, dropPipelines, dropMetaDataKeys, dropMetaDataValues, dropJobs, dropOutOfWindow,
	dropAnnotations, dropAnnotationBodies}

// drops counts what one answer lost to the limits.
type drops map[string]int

func (d drops) add(what string, n int) {
	if n > 0 {
		d[what] += n
	}
}

// record counts d in the metric and logs it in one line for the answer (never one per item).
func (c *Client) recordDrops(endpoint string, page int, d drops) {
	total := 0
	for _, n := range d {
		total += n
	}
	if total == 0 {
		return
	}
	kv := []any{"msg", "Dropped parts of a Buildkite answer beyond the client's limits or outside the requested filters",
		"endpoint", endpoint}
	if page > 0 {
		kv = append(kv, "page", page)
	}
	for _, what := range dropKinds {
		if n := d[what]; n > 0 {
			c.metrics.dropped.WithLabelValues(what).Add(float64(n))
			kv = append(kv, what, n)
		}
	}
	level.Warn(c.logger).Log(kv...)
}

// skipValue consumes one JSON value of any kind without keeping it.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// decodeArray streams the JSON array body, decoding its first limit items with one and skipping
// the rest, which it counts. JSON null is an empty array. Only the kept items take memory beyond
// the decoder's buffer, whatever the array's length.
func decodeArray[T any](body []byte, limit int, one func(*json.Decoder, *T) error) (items []T, skipped int, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, 0, err
	}
	switch tok {
	case nil:
		return nil, 0, endOfInput(dec)
	case json.Delim('['):
	default:
		return nil, 0, fmt.Errorf("the answer is %s, not a JSON array", describeToken(tok))
	}
	items = make([]T, 0, min(limit, 128))
	for i := 1; dec.More(); i++ {
		if len(items) >= limit {
			if err := dec.Decode(&skipValue{}); err != nil {
				return nil, 0, fmt.Errorf("item %d: %w", i, err)
			}
			skipped++
			continue
		}
		var v T
		if err := one(dec, &v); err != nil {
			return nil, 0, fmt.Errorf("item %d: %w", i, err)
		}
		items = append(items, v)
	}
	if _, err := dec.Token(); err != nil { // the closing ]
		return nil, 0, err
	}
	return items, skipped, endOfInput(dec)
}

// endOfInput fails when anything but white space follows the value dec read.
func endOfInput(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("unexpected data after the JSON value")
		}
		return err
	}
	return nil
}

// describeToken names the kind of a JSON token without quoting it: the value may be anything,
// an echoed Authorization header included.
func describeToken(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		if tok == json.Delim('{') {
			return "a JSON object"
		}
		return "a JSON array"
	case string:
		return "a JSON string"
	case float64, json.Number:
		return "a JSON number"
	case bool:
		return "a JSON boolean"
	}
	return "JSON null"
}

// expectDelim reads the opening delimiter want of the next value of dec; null reports false.
func expectDelim(dec *json.Decoder, what string, want json.Delim) (bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return false, err
	}
	if tok == nil {
		return false, nil
	}
	if tok != want {
		return false, fmt.Errorf("%s is %s, not %s", what, describeToken(tok), describeToken(want))
	}
	return true, nil
}

// boundedMetaData decodes a build's meta_data object keeping at most MaxMetaDataKeys keys (the
// sorted-first ones), none longer than MaxMetaDataKeyLen, and values cut to MaxMetaDataValueLen
// (MaxReleaseNotesValueLen for ReleaseNotesKey).
type boundedMetaData struct {
	m         map[string]string
	dropped   int // keys
	truncated int // values
}

func (b *boundedMetaData) UnmarshalJSON(data []byte) error {
	*b = boundedMetaData{}
	dec := json.NewDecoder(bytes.NewReader(data))
	ok, err := expectDelim(dec, "meta_data", '{')
	if err != nil || !ok {
		return err
	}
	m := map[string]string{}
	largest := "" // the largest kept key, once m is full
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("meta_data: %w", err)
		}
		key, _ := tok.(string)
		var v string
		if err := dec.Decode(&v); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return fmt.Errorf("meta_data: a value is a JSON %s, not a string", typeErr.Value)
			}
			return fmt.Errorf("meta_data: %w", err)
		}
		if len(key) > MaxMetaDataKeyLen {
			b.dropped++
			continue
		}
		if limit := valueLimit(key); len(v) > limit {
			v = cutRunes(v, limit)
			b.truncated++
		}
		if _, dup := m[key]; dup || len(m) < MaxMetaDataKeys {
			m[key] = v // a repeated key: the last value wins, as with a plain map
			if len(m) == MaxMetaDataKeys && largest == "" {
				largest = maxKey(m)
			}
			continue
		}
		b.dropped++
		if key < largest {
			delete(m, largest)
			m[key] = v
			largest = maxKey(m)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("meta_data: %w", err)
	}
	b.m = m
	return nil
}

// valueLimit is how long a meta-data value of key may be.
func valueLimit(key string) int {
	if key == ReleaseNotesKey {
		return MaxReleaseNotesValueLen
	}
	return MaxMetaDataValueLen
}

func maxKey(m map[string]string) string {
	largest := ""
	for k := range m {
		if k > largest {
			largest = k
		}
	}
	return largest
}

// cutRunes cuts s to at most n bytes on a rune boundary.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// boundedJobs decodes a build's jobs array keeping the first MaxJobsPerBuild jobs.
type boundedJobs struct {
	jobs    []Job
	dropped int
}

func (b *boundedJobs) UnmarshalJSON(data []byte) error {
	*b = boundedJobs{}
	dec := json.NewDecoder(bytes.NewReader(data))
	ok, err := expectDelim(dec, "jobs", '[')
	if err != nil || !ok {
		return err
	}
	jobs := []Job{} // [] stays an empty, non-nil slice, as with a plain []Job
	for i := 1; dec.More(); i++ {
		if len(jobs) >= MaxJobsPerBuild {
			if err := dec.Decode(&skipValue{}); err != nil {
				return fmt.Errorf("jobs: %w", err)
			}
			b.dropped++
			continue
		}
		var j Job
		if err := dec.Decode(&j); err != nil {
			return fmt.Errorf("job %d: %w", i, err)
		}
		jobs = append(jobs, j)
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	b.jobs = jobs
	return nil
}

// buildFields has Build's fields and none of its methods, so decoding it does not recurse into
// Build.UnmarshalJSON.
type buildFields Build

// wireBuild is a build as decoded from an answer: meta_data and jobs go through the bounded
// decoders (the outer fields shadow the embedded ones of the same JSON name).
type wireBuild struct {
	buildFields
	MetaData boundedMetaData `json:"meta_data"`
	Jobs     boundedJobs     `json:"jobs"`
}

func (w *wireBuild) build(d drops) Build {
	b := Build(w.buildFields)
	b.MetaData = w.MetaData.m
	b.Jobs = w.Jobs.jobs
	if d != nil {
		d.add(dropMetaDataKeys, w.MetaData.dropped)
		d.add(dropMetaDataValues, w.MetaData.truncated)
		d.add(dropJobs, w.Jobs.dropped)
	}
	return b
}

// UnmarshalJSON decodes a build with the client's limits (MaxMetaDataKeys, MaxMetaDataKeyLen,
// MaxMetaDataValueLen, MaxJobsPerBuild), so that a build decoded anywhere, a webhook payload
// too, is bounded like one the client lists.
func (b *Build) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	var w wireBuild
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*b = w.build(nil)
	return nil
}

// window is the filters of a build listing the client checks on every build it is given: a
// build outside them is dropped (what="out_of_window"), and a page of nothing else stops the
// listing with *FilterIgnoredError. Times are truncated to the second, as the query sends them.
type window struct {
	finishedFrom, createdFrom, createdTo time.Time
	states                               map[string]bool // nil: any state
	stateList                            string          // as sent, for the error
}

func newWindow(o ListBuildsOptions) window {
	w := window{
		finishedFrom: o.FinishedFrom.Truncate(time.Second),
		createdFrom:  o.CreatedFrom.Truncate(time.Second),
		createdTo:    o.CreatedTo.Truncate(time.Second),
	}
	if len(o.States) > 0 {
		w.states = map[string]bool{}
		for _, s := range o.States {
			if s == StateFinished { // the API's shortcut (reference §3)
				for _, f := range []string{StatePassed, StateFailed, StateBlocked, StateCanceled} {
					w.states[f] = true
				}
			}
			w.states[s] = true
		}
		w.stateList = strings.Join(o.States, ",")
	}
	return w
}

// violation returns the filter b lies outside of and its value, or "" when b matches them all.
// A blocked build keeps the state it had (reference §4.1), so state[]=blocked also matches a
// build with blocked: true whatever its state says.
func (w window) violation(b *Build) (filter, value string) {
	switch {
	case !w.finishedFrom.IsZero() && (b.FinishedAt.IsZero() || b.FinishedAt.Before(w.finishedFrom)):
		return "finished_from", w.finishedFrom.UTC().Format(time.RFC3339)
	case !w.createdFrom.IsZero() && b.CreatedAt.Before(w.createdFrom):
		return "created_from", w.createdFrom.UTC().Format(time.RFC3339)
	case !w.createdTo.IsZero() && !b.CreatedAt.Before(w.createdTo):
		return "created_to", w.createdTo.UTC().Format(time.RFC3339)
	case w.states != nil && !w.states[b.State] && !(b.Blocked && w.states[StateBlocked]):
		return "state[]", w.stateList
	}
	return "", ""
}
