package buildkite

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestJobRetryFields decodes the retry evidence of jobs (reference §5): null for a first attempt
// that was never retried, and the links between a retried attempt and its replacement. The
// retry_source of webhook payloads also carries retried_by, which is ignored.
func TestJobRetryFields(t *testing.T) {
	s := &script{answers: []answer{{body: `{"id":"b1","number":7,"state":"running","jobs":[
		{"id":"j0","type":"script","state":"passed","retried":false,"retried_in_job_id":null,"retries_count":null,"retry_type":null,"retry_source":null},
		{"id":"j1","type":"script","state":"failed","retried":true,"retried_in_job_id":"j2","retries_count":null,"retry_type":null,"retry_source":null},
		{"id":"j2","type":"script","state":"failed","retried":true,"retried_in_job_id":"j3","retries_count":1,"retry_type":"manual",
		 "retry_source":{"job_id":"j1","retry_type":"manual","retried_by":{"name":"Dev","email":"dev@example.com"}}},
		{"id":"j3","type":"script","state":"running","retried":false,"retried_in_job_id":null,"retries_count":2,"retry_type":"automatic",
		 "retry_source":{"job_id":"j2","retry_type":"automatic"}},
		{"id":"j4","type":"script","state":"running","retry_source":{"job_id":null,"retry_type":null}}]}`}}}
	c := newTestClient(t, s, Config{})
	b, err := c.GetBuild(context.Background(), "acme", "shop", 7, GetBuildOptions{IncludeRetriedJobs: true})
	if err != nil {
		t.Fatal(err)
	}
	type retry struct {
		Retried     bool
		InJob, Type string
		Source      *RetrySource
		Count       int
	}
	var got []retry
	for _, j := range b.Jobs {
		r := retry{Retried: j.Retried, InJob: j.RetriedInJobID, Type: j.RetryType, Source: j.RetrySource}
		if j.RetriesCount != nil {
			r.Count = *j.RetriesCount
		}
		got = append(got, r)
	}
	want := []retry{
		{},
		{Retried: true, InJob: "j2"},
		{Retried: true, InJob: "j3", Type: RetryTypeManual, Source: &RetrySource{JobID: "j1", RetryType: RetryTypeManual}, Count: 1},
		{Type: RetryTypeAutomatic, Source: &RetrySource{JobID: "j2", RetryType: RetryTypeAutomatic}, Count: 2},
		{Source: &RetrySource{}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("retry fields (-want +got):\n%s", diff)
	}
}
