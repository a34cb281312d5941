package buildkitetest

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// The JSON is rendered from these types, not from the buildkite package's tags, with the field
// names of reference §4–§7: a wrong tag in our models must fail a test, not be mirrored here.

// ts renders a build or job timestamp: RFC 3339 UTC with milliseconds, or null.
type ts time.Time

func (t ts) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + tt.UTC().Format("2006-01-02T15:04:05.000Z") + `"`), nil
}

// legacyTS renders "2006-01-02 15:04:05 UTC" (access tokens, some pipelines), or null.
type legacyTS time.Time

func (t legacyTS) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + tt.UTC().Format("2006-01-02 15:04:05") + ` UTC"`), nil
}

func graphqlID(kind, id string) string {
	return base64.StdEncoding.EncodeToString([]byte(kind + "---" + id))
}

type userJSON struct {
	ID        string `json:"id"`
	GraphQLID string `json:"graphql_id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	AvatarURL string `json:"avatar_url"`
	CreatedAt ts     `json:"created_at"`
}

func renderUser(u *buildkite.User) *userJSON {
	if u == nil {
		return nil
	}
	avatar := u.AvatarURL
	if avatar == "" {
		avatar = "https://www.gravatar.com/avatar/" + u.ID
	}
	return &userJSON{
		ID: u.ID, GraphQLID: graphqlID("User", u.ID), Name: u.Name, Email: u.Email,
		AvatarURL: avatar, CreatedAt: ts(u.CreatedAt.Time),
	}
}

type authorJSON struct {
	Username string `json:"username"`
	Name     string `json:"name"`
	Email    string `json:"email"`
}

type buildRefJSON struct {
	ID     string `json:"id"`
	Number int    `json:"number"`
	URL    string `json:"url"`
}

type jobStateCountsJSON struct {
	Total  int            `json:"total"`
	States map[string]int `json:"states"`
}

type buildJSON struct {
	ID             string              `json:"id"`
	GraphQLID      string              `json:"graphql_id"`
	URL            string              `json:"url"`
	WebURL         string              `json:"web_url"`
	Number         int                 `json:"number"`
	State          string              `json:"state"`
	Blocked        bool                `json:"blocked"`
	BlockedState   string              `json:"blocked_state"`
	CancelReason   *string             `json:"cancel_reason"`
	Message        string              `json:"message"`
	Commit         string              `json:"commit"`
	Branch         string              `json:"branch"`
	Tag            *string             `json:"tag"`
	Env            map[string]string   `json:"env"`
	Source         string              `json:"source"`
	Author         *authorJSON         `json:"author"`
	Creator        *userJSON           `json:"creator"`
	CreatedAt      ts                  `json:"created_at"`
	ScheduledAt    ts                  `json:"scheduled_at"`
	StartedAt      ts                  `json:"started_at"`
	FinishedAt     ts                  `json:"finished_at"`
	FailingAt      ts                  `json:"failing_at"`
	MetaData       map[string]string   `json:"meta_data"`
	PullRequest    *struct{}           `json:"pull_request"`
	MergeQueue     *struct{}           `json:"merge_queue"`
	RebuiltFrom    *buildRefJSON       `json:"rebuilt_from"`
	Jobs           *[]map[string]any   `json:"jobs,omitempty"`
	JobStateCounts *jobStateCountsJSON `json:"job_state_counts,omitempty"`
	Pipeline       *pipelineJSON       `json:"pipeline,omitempty"`
}

// buildOpts are the rendering parameters of the list and get endpoints.
type buildOpts struct {
	excludeJobs, excludePipeline, includeRetried bool
	jobStates                                    map[string]bool // Get-a-build job_states[]; nil = all
	stateCounts                                  bool            // Get-a-build only
	legacyPipelines                              bool
}

var emptyMap = map[string]string{}

func renderBuild(r *buildRec, o buildOpts) *buildJSON {
	b := &r.b
	id := r.id()
	out := &buildJSON{
		ID: id, GraphQLID: graphqlID("Build", id), URL: r.url(), WebURL: r.webURL(),
		Number: b.Number, State: b.State, Blocked: b.Blocked, Message: b.Message,
		Commit: b.Commit, Branch: b.Branch, Tag: b.Tag, Env: emptyMap, Source: b.Source,
		Creator:   renderUser(b.Creator),
		CreatedAt: ts(b.CreatedAt.Time), ScheduledAt: ts(b.ScheduledAt.Time), StartedAt: ts(b.StartedAt.Time),
		FinishedAt: ts(b.FinishedAt.Time), FailingAt: ts(b.FailingAt.Time), MetaData: b.MetaData,
	}
	if out.MetaData == nil {
		out.MetaData = emptyMap
	}
	if b.Author != nil {
		out.Author = &authorJSON{Username: b.Author.Username, Name: b.Author.Name, Email: b.Author.Email}
	}
	if b.RebuiltFrom != nil {
		out.RebuiltFrom = &buildRefJSON{ID: b.RebuiltFrom.ID, Number: b.RebuiltFrom.Number, URL: b.RebuiltFrom.URL}
	}
	var visible []buildkite.Job
	for _, j := range b.Jobs {
		if j.Retried && !o.includeRetried {
			continue
		}
		visible = append(visible, j)
	}
	if o.stateCounts {
		c := &jobStateCountsJSON{Total: len(visible), States: map[string]int{}}
		for _, j := range visible {
			c.States[jobFilterState(j)]++
		}
		out.JobStateCounts = c
	}
	if !o.excludeJobs {
		jobs := make([]map[string]any, 0, len(visible))
		for _, j := range visible {
			if o.jobStates != nil && !o.jobStates[jobFilterState(j)] {
				continue
			}
			jobs = append(jobs, renderJob(j, out.URL, out.WebURL))
		}
		out.Jobs = &jobs
	}
	if !o.excludePipeline {
		out.Pipeline = renderPipeline(r.pipe, o.legacyPipelines)
	}
	return out
}

// jobFilterState is a job's state for job_states[] and job_state_counts: a finished waiter counts
// as passed (reference §5).
func jobFilterState(j buildkite.Job) string {
	if j.Type == buildkite.JobTypeWaiter && (j.State == "finished" || j.State == "") {
		return buildkite.StatePassed
	}
	return j.State
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// renderJob renders a job with the fields its type has (reference §5).
func renderJob(j buildkite.Job, buildURL, buildWebURL string) map[string]any {
	m := map[string]any{
		"id":         j.ID,
		"graphql_id": graphqlID("Job", j.ID),
		"type":       j.Type,
		"state":      j.State,
		"step_key":   nullable(j.StepKey),
	}
	webURL := buildWebURL + "#" + j.ID
	logURL := buildURL + "/jobs/" + j.ID + "/log"
	switch j.Type {
	case buildkite.JobTypeWaiter:
		m["name"] = nil
		m["web_url"] = nil
		m["log_url"] = nil
		m["exit_status"] = nil
		if j.State == "" {
			m["state"] = buildkite.StatePassed
		}
	case buildkite.JobTypeManual:
		label := j.Label
		if label == "" {
			label = j.Name
		}
		m["label"] = label
		m["web_url"] = webURL
		m["unblocked_by"] = renderUser(j.UnblockedBy)
		m["unblocked_at"] = ts(j.UnblockedAt.Time)
		unblockable := j.State == buildkite.StateBlocked
		if j.Unblockable != nil {
			unblockable = *j.Unblockable
		}
		m["unblockable"] = unblockable
		m["unblock_url"] = buildURL + "/jobs/" + j.ID + "/unblock"
		m["created_at"] = ts(j.CreatedAt.Time)
		m["runnable_at"] = ts(j.RunnableAt.Time)
	case buildkite.JobTypeTrigger:
		m["name"] = nullable(j.Name)
		m["build_url"] = buildURL
		m["web_url"] = webURL
		m["created_at"] = ts(j.CreatedAt.Time)
		m["scheduled_at"] = ts(j.ScheduledAt.Time)
		m["runnable_at"] = ts(j.RunnableAt.Time)
		m["started_at"] = ts(j.StartedAt.Time)
		m["finished_at"] = ts(j.FinishedAt.Time)
		async := false
		if j.Async != nil {
			async = *j.Async
		}
		m["async"] = async
		var tb any
		if t := j.TriggeredBuild; t != nil {
			tb = map[string]any{"id": t.ID, "number": t.Number, "url": t.URL, "web_url": t.WebURL}
		}
		m["triggered_build"] = tb
	default: // script and anything unknown
		m["name"] = nullable(j.Name)
		m["label"] = nullable(j.Label)
		m["priority"] = map[string]int{"number": 0}
		m["agent_query_rules"] = []string{"queue=default"}
		m["build_url"] = buildURL
		m["web_url"] = webURL
		m["log_url"] = logURL
		m["raw_log_url"] = logURL + ".txt"
		m["artifacts_url"] = buildURL + "/jobs/" + j.ID + "/artifacts"
		m["command"] = nil
		m["soft_failed"] = j.SoftFailed
		var exit any
		if j.ExitStatus != nil {
			exit = *j.ExitStatus
		}
		m["exit_status"] = exit
		m["artifact_paths"] = nil
		m["agent"] = nil
		m["created_at"] = ts(j.CreatedAt.Time)
		m["scheduled_at"] = ts(j.ScheduledAt.Time)
		m["runnable_at"] = ts(j.RunnableAt.Time)
		m["started_at"] = ts(j.StartedAt.Time)
		m["finished_at"] = ts(j.FinishedAt.Time)
		m["expired_at"] = nil
		m["retried"] = j.Retried
		m["retried_in_job_id"] = nullable(j.RetriedInJobID)
		var retries any
		if j.RetriesCount != nil {
			retries = *j.RetriesCount
		}
		m["retries_count"] = retries
		m["retry_type"] = nullable(j.RetryType)
		var source any
		if s := j.RetrySource; s != nil {
			source = map[string]any{"job_id": s.JobID, "retry_type": s.RetryType}
		}
		m["retry_source"] = source
		m["parallel_group_index"] = nil
		m["parallel_group_total"] = nil
	}
	return m
}

type providerJSON struct {
	ID         string         `json:"id"`
	WebhookURL string         `json:"webhook_url"`
	Settings   map[string]any `json:"settings"`
}

type pipelineJSON struct {
	ID                        string        `json:"id"`
	GraphQLID                 string        `json:"graphql_id"`
	URL                       string        `json:"url"`
	WebURL                    string        `json:"web_url"`
	Name                      string        `json:"name"`
	Description               *string       `json:"description"`
	Slug                      string        `json:"slug"`
	Repository                string        `json:"repository"`
	ClusterID                 *string       `json:"cluster_id"`
	BranchConfiguration       *string       `json:"branch_configuration"`
	DefaultBranch             string        `json:"default_branch"`
	SkipQueuedBranchBuilds    bool          `json:"skip_queued_branch_builds"`
	CancelRunningBranchBuilds bool          `json:"cancel_running_branch_builds"`
	AllowRebuilds             bool          `json:"allow_rebuilds"`
	Provider                  providerJSON  `json:"provider"`
	BuildsURL                 string        `json:"builds_url"`
	BadgeURL                  string        `json:"badge_url"`
	CreatedBy                 *userJSON     `json:"created_by"`
	CreatedAt                 any           `json:"created_at"`
	ArchivedAt                ts            `json:"archived_at"`
	Env                       *struct{}     `json:"env"`
	ScheduledBuildsCount      int           `json:"scheduled_builds_count"`
	RunningBuildsCount        int           `json:"running_builds_count"`
	ScheduledJobsCount        int           `json:"scheduled_jobs_count"`
	RunningJobsCount          int           `json:"running_jobs_count"`
	WaitingJobsCount          int           `json:"waiting_jobs_count"`
	Visibility                string        `json:"visibility"`
	Tags                      []string      `json:"tags"`
	Steps                     []interface{} `json:"steps"`
	Configuration             string        `json:"configuration"`
}

func renderPipeline(pp *pipe, legacyAll bool) *pipelineJSON {
	p := &pp.p
	out := &pipelineJSON{
		ID: p.ID, GraphQLID: graphqlID("Pipeline", p.ID), URL: p.URL, WebURL: p.WebURL,
		Name: p.Name, Slug: p.Slug, Repository: p.Repository, DefaultBranch: p.DefaultBranch,
		AllowRebuilds: true,
		Provider:      providerJSON{ID: "github", Settings: map[string]any{}},
		BuildsURL:     p.URL + "/builds",
		BadgeURL:      "https://badge.buildkite.com/" + strings.ReplaceAll(p.ID, "-", "") + ".svg",
		CreatedAt:     ts(p.CreatedAt.Time),
		ArchivedAt:    ts(p.ArchivedAt.Time),
		Visibility:    "private",
		Tags:          p.Tags,
		Steps:         []interface{}{},
	}
	if p.Description != "" {
		out.Description = &p.Description
	}
	if legacyAll || pp.legacy {
		out.CreatedAt = legacyTS(p.CreatedAt.Time)
	}
	for r := range pp.idx.open {
		switch r.filterState() {
		case buildkite.StateScheduled:
			out.ScheduledBuildsCount++
		case buildkite.StateRunning, buildkite.StateFailing:
			out.RunningBuildsCount++
		}
	}
	return out
}

type accessTokenJSON struct {
	UUID        string   `json:"uuid"`
	Scopes      []string `json:"scopes"`
	Description string   `json:"description"`
	CreatedAt   legacyTS `json:"created_at"`
	ExpiresAt   legacyTS `json:"expires_at"`
	User        struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	} `json:"user"`
}

func renderToken(t *token) *accessTokenJSON {
	out := &accessTokenJSON{
		UUID: t.uuid, Scopes: t.scopes, Description: "buildkitetest token " + strconv.Itoa(t.user),
		CreatedAt: legacyTS(t.createdAt),
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	out.User.Name = "Test User " + strconv.Itoa(t.user)
	out.User.Email = "user" + strconv.Itoa(t.user) + "@example.com"
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("buildkitetest: rendering JSON: " + err.Error())
	}
	return b
}
