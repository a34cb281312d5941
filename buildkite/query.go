package buildkite

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// query builds a query string in the exact shape the API documents: Rails arrays (state[]=a),
// hashes (meta_data[k]=v), brackets written literally. Keys keep insertion order so that
// requests are reproducible in logs and tests.
type query struct{ b strings.Builder }

func (q *query) add(key, value string) {
	if q.b.Len() > 0 {
		q.b.WriteByte('&')
	}
	q.b.WriteString(key)
	q.b.WriteByte('=')
	q.b.WriteString(url.QueryEscape(value))
}

func (q *query) addAll(key string, values []string) {
	for _, v := range values {
		q.add(key+"[]", v)
	}
}

func (q *query) addTrue(key string, v bool) {
	if v {
		q.add(key, "true")
	}
}

// addTime sends t in RFC 3339 UTC with second precision, as go-buildkite does. Truncating both
// ends of a window the same way keeps adjacent windows [a,b) [b,c) gap-free: a build in the
// fraction of a second before b falls into the second window instead of the first.
func (q *query) addTime(key string, t time.Time) {
	if !t.IsZero() {
		q.add(key, t.UTC().Truncate(time.Second).Format(time.RFC3339))
	}
}

func (q *query) String() string { return q.b.String() }

func perPage(n int) int {
	if n <= 0 || n > MaxPerPage {
		return MaxPerPage
	}
	return n
}

func (o ListBuildsOptions) encode() string {
	var q query
	q.addAll("branch", o.Branches)
	q.addAll("commit", o.Commits)
	q.addTime("created_from", o.CreatedFrom)
	q.addTime("created_to", o.CreatedTo)
	q.addTime("finished_from", o.FinishedFrom)
	if o.Creator != "" {
		q.add("creator", o.Creator)
	}
	q.addAll("state", o.States)
	keys := make([]string, 0, len(o.MetaData))
	for k := range o.MetaData {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.add("meta_data["+url.QueryEscape(k)+"]", o.MetaData[k])
	}
	q.addTrue("include_retried_jobs", o.IncludeRetriedJobs)
	q.addTrue("exclude_jobs", o.ExcludeJobs)
	q.addTrue("exclude_pipeline", o.ExcludePipeline)
	if o.IncludePaused != nil {
		q.add("include_paused", strconv.FormatBool(*o.IncludePaused))
	}
	q.add("per_page", strconv.Itoa(perPage(o.PerPage)))
	return q.String()
}

func (o GetBuildOptions) encode() string {
	var q query
	q.addTrue("exclude_jobs", o.ExcludeJobs)
	q.addTrue("exclude_pipeline", o.ExcludePipeline)
	q.addTrue("include_retried_jobs", o.IncludeRetriedJobs)
	q.addAll("job_states", o.JobStates)
	return q.String()
}
