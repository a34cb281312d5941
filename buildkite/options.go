package buildkite

import "time"

// ListBuildsOptions are the filters of the three build-list endpoints (reference §3). Zero values
// are not sent. Time filters: CreatedFrom and FinishedFrom are inclusive, CreatedTo exclusive.
type ListBuildsOptions struct {
	Branches           []string          // branch[]
	Commits            []string          // commit[] (full SHAs)
	CreatedFrom        time.Time         // created_from
	CreatedTo          time.Time         // created_to
	FinishedFrom       time.Time         // finished_from
	Creator            string            // creator (user UUID)
	States             []string          // state[]; StateFinished is the API's shortcut
	MetaData           map[string]string // meta_data[key]=value
	IncludeRetriedJobs bool              // include_retried_jobs=true
	ExcludeJobs        bool              // exclude_jobs=true
	ExcludePipeline    bool              // exclude_pipeline=true
	IncludePaused      *bool             // include_paused
	PerPage            int               // per_page; 0 means 100, the maximum
}

// GetBuildOptions are the parameters of Get-a-build.
type GetBuildOptions struct {
	ExcludeJobs        bool
	ExcludePipeline    bool
	IncludeRetriedJobs bool
	JobStates          []string // job_states[]
}
