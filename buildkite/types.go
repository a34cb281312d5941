package buildkite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Timestamp is a time the API sends either as RFC 3339 (builds, jobs: "2015-05-09T21:05:59.874Z")
// or as "2006-01-02 15:04:05 UTC" (access-token and some pipeline fields). JSON null and "" decode
// to the zero time; a zero Timestamp encodes as null.
type Timestamp struct{ time.Time }

// legacyLayout is the second format the API uses (reference/buildkite-api.md §2).
const legacyLayout = "2006-01-02 15:04:05 MST"

// UnmarshalJSON accepts both formats and null.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("timestamp is %s, not a string", jsonKind(b))
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	if v, err := time.Parse(time.RFC3339Nano, s); err == nil {
		t.Time = v.UTC()
		return nil
	}
	v, err := time.Parse(legacyLayout, s)
	if err != nil {
		return fmt.Errorf("timestamp %s is neither RFC 3339 nor %q", quoteShort(s), legacyLayout)
	}
	t.Time = v.UTC()
	return nil
}

// maxQuoted is the longest value an error quotes whole; a longer one is described by its length.
// Quoting a prefix instead could cut an echoed token in two, which scrubbing would then miss.
const maxQuoted = 64

func quoteShort(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("(a %d-byte value)", len(s))
}

// jsonKind names the kind of the JSON value b without quoting it.
func jsonKind(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "empty"
	}
	switch b[0] {
	case '{':
		return "a JSON object"
	case '[':
		return "a JSON array"
	case '"':
		return "a JSON string"
	case 't', 'f':
		return "a JSON boolean"
	case 'n':
		return "JSON null"
	}
	return "a JSON number"
}

// MarshalJSON writes RFC 3339 with milliseconds, as the builds endpoints do, or null.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

// Build states (reference §4.1). StateFinished is a filter shortcut only: passed, failed, blocked, canceled.
const (
	StateCreating  = "creating"
	StateScheduled = "scheduled"
	StateRunning   = "running"
	StatePassed    = "passed"
	StateFailing   = "failing"
	StateFailed    = "failed"
	StateBlocked   = "blocked"
	StateCanceling = "canceling"
	StateCanceled  = "canceled"
	StateSkipped   = "skipped"
	StateNotRun    = "not_run"
	StateFinished  = "finished"
)

// Job types (reference §5).
const (
	JobTypeScript  = "script"
	JobTypeWaiter  = "waiter"
	JobTypeManual  = "manual" // block and input steps
	JobTypeTrigger = "trigger"
)

// Retry types of a job attempt (reference §5, §12): a person retried it, or a step's
// automatic-retry rule did.
const (
	RetryTypeManual    = "manual"
	RetryTypeAutomatic = "automatic"
)

// RetrySource is the attempt a retried job replaces. JSON null (the first attempt) decodes to a
// nil *RetrySource, as null strings decode to "".
type RetrySource struct {
	JobID     string `json:"job_id"`
	RetryType string `json:"retry_type"`
}

// User is a Buildkite user (creator, unblocker).
type User struct {
	ID        string    `json:"id,omitempty"`
	Name      string    `json:"name,omitempty"`
	Email     string    `json:"email,omitempty"`
	AvatarURL string    `json:"avatar_url,omitempty"`
	CreatedAt Timestamp `json:"created_at"`
}

// Author is the git author of the build's commit.
type Author struct {
	Username string `json:"username,omitempty"`
	Name     string `json:"name,omitempty"`
	Email    string `json:"email,omitempty"`
}

// UnmarshalJSON also accepts a bare e-mail string, which older builds carry.
func (a *Author) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &a.Email)
	}
	type plain Author
	return json.Unmarshal(b, (*plain)(a))
}

// TriggeredBuild is the child build a trigger job created.
type TriggeredBuild struct {
	ID     string `json:"id"`
	Number int    `json:"number"`
	URL    string `json:"url"`
	WebURL string `json:"web_url"`
}

// Job is one job of a build. Fields a type does not have stay zero.
type Job struct {
	ID             string          `json:"id"`
	Type           string          `json:"type"`
	Name           string          `json:"name,omitempty"`
	Label          string          `json:"label,omitempty"`
	StepKey        string          `json:"step_key,omitempty"`
	State          string          `json:"state"`
	ExitStatus     *int            `json:"exit_status,omitempty"`
	SoftFailed     bool            `json:"soft_failed,omitempty"`
	Retried        bool            `json:"retried,omitempty"`
	RetriedInJobID string          `json:"retried_in_job_id,omitempty"` // the attempt that replaced this one
	RetriesCount   *int            `json:"retries_count,omitempty"`
	RetryType      string          `json:"retry_type,omitempty"`   // RetryTypeManual, RetryTypeAutomatic or ""
	RetrySource    *RetrySource    `json:"retry_source,omitempty"` // the attempt this one retried; nil for a first attempt
	CreatedAt      Timestamp       `json:"created_at"`
	ScheduledAt    Timestamp       `json:"scheduled_at"`
	RunnableAt     Timestamp       `json:"runnable_at"`
	StartedAt      Timestamp       `json:"started_at"`
	FinishedAt     Timestamp       `json:"finished_at"`
	UnblockedAt    Timestamp       `json:"unblocked_at"`
	UnblockedBy    *User           `json:"unblocked_by,omitempty"`
	Unblockable    *bool           `json:"unblockable,omitempty"`
	Async          *bool           `json:"async,omitempty"`
	TriggeredBuild *TriggeredBuild `json:"triggered_build,omitempty"`
	WebURL         string          `json:"web_url,omitempty"`
}

// Pipeline is a pipeline object, as listed, fetched or embedded in a build.
type Pipeline struct {
	ID            string    `json:"id"`
	URL           string    `json:"url,omitempty"`
	WebURL        string    `json:"web_url,omitempty"`
	Name          string    `json:"name"`
	Slug          string    `json:"slug"`
	Repository    string    `json:"repository,omitempty"`
	DefaultBranch string    `json:"default_branch,omitempty"`
	Description   string    `json:"description,omitempty"`
	CreatedAt     Timestamp `json:"created_at"`
	ArchivedAt    Timestamp `json:"archived_at"`
	Tags          []string  `json:"tags,omitempty"`
}

// BuildRef points at another build (rebuilt_from).
type BuildRef struct {
	ID     string `json:"id"`
	Number int    `json:"number"`
	URL    string `json:"url"`
}

// Build is a build as the list and get endpoints return it (reference §4). Jobs is nil when the
// request asked for exclude_jobs, Pipeline nil with exclude_pipeline.
type Build struct {
	ID          string            `json:"id"`
	URL         string            `json:"url"`
	WebURL      string            `json:"web_url"`
	Number      int               `json:"number"`
	State       string            `json:"state"`
	Blocked     bool              `json:"blocked"`
	Message     string            `json:"message,omitempty"`
	Commit      string            `json:"commit"`
	Branch      string            `json:"branch"`
	Tag         *string           `json:"tag"`
	Source      string            `json:"source,omitempty"`
	Author      *Author           `json:"author,omitempty"`
	Creator     *User             `json:"creator"`
	CreatedAt   Timestamp         `json:"created_at"`
	ScheduledAt Timestamp         `json:"scheduled_at"`
	StartedAt   Timestamp         `json:"started_at"`
	FinishedAt  Timestamp         `json:"finished_at"`
	FailingAt   Timestamp         `json:"failing_at"`
	MetaData    map[string]string `json:"meta_data"`
	RebuiltFrom *BuildRef         `json:"rebuilt_from,omitempty"`
	Jobs        []Job             `json:"jobs,omitempty"`
	Pipeline    *Pipeline         `json:"pipeline,omitempty"`
}

// PipelineSlug returns the build's pipeline slug: from the embedded pipeline when present, else
// parsed from url or web_url, so that exclude_pipeline=true still lets callers group builds.
func (b *Build) PipelineSlug() string {
	if b.Pipeline != nil && b.Pipeline.Slug != "" {
		return b.Pipeline.Slug
	}
	if s := slugFromURL(b.URL, "/pipelines/"); s != "" {
		return s
	}
	// web_url: https://buildkite.com/{org}/{pipeline}/builds/{n}
	return slugBeforeBuilds(b.WebURL)
}

// Finished reports whether the build is in a terminal state and not waiting on a block step.
func (b *Build) Finished() bool {
	if b.Blocked {
		return false
	}
	switch b.State {
	case StatePassed, StateFailed, StateCanceled, StateSkipped, StateNotRun:
		return true
	}
	return false
}

// AccessToken is the answer of GET /v2/access-token.
type AccessToken struct {
	UUID        string    `json:"uuid"`
	Scopes      []string  `json:"scopes"`
	Description string    `json:"description,omitempty"`
	CreatedAt   Timestamp `json:"created_at"`
	ExpiresAt   Timestamp `json:"expires_at"`
	User        *User     `json:"user,omitempty"`
}

// HasScope reports whether the token carries scope.
func (t *AccessToken) HasScope(scope string) bool {
	for _, s := range t.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

func slugFromURL(u, marker string) string {
	i := bytes.Index([]byte(u), []byte(marker))
	if i < 0 {
		return ""
	}
	rest := u[i+len(marker):]
	for j := 0; j < len(rest); j++ {
		if rest[j] == '/' {
			return rest[:j]
		}
	}
	return ""
}

func slugBeforeBuilds(u string) string {
	i := bytes.LastIndex([]byte(u), []byte("/builds/"))
	if i < 0 {
		return ""
	}
	head := u[:i]
	j := bytes.LastIndexByte([]byte(head), '/')
	if j < 0 {
		return ""
	}
	return head[j+1:]
}
