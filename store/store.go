// Package store holds the deployment log: one record per deployment outcome, the poll watermarks
// and the first-seen time of commits. The collector appends to it and rebuilds its counters from
// it at start, so counters survive restarts. Log is implemented in memory (tests, --storage.path
// "") and by Bolt (a bbolt file, durable).
package store

import (
	"errors"
	"strconv"
	"time"
)

// Record is one deployment outcome: a build of a component's pipeline that reached a terminal
// state for one environment. A build retried after finishing yields one record per terminal
// outcome (each has its own FinishedAt); a build deploying to two environments yields one each.
type Record struct {
	// Key identifies the outcome; Append ignores a record whose key is already stored, which
	// makes re-reading the poll overlap harmless. Two kinds: AttemptKey
	// ("<build id>@attempt:<n>#<environment>") for a failed outcome whose build's jobs were read,
	// and Key ("<build id>@<finished_at RFC3339Nano>#<environment>") for the others. A failure
	// needs the first because a later retry overwrites the build's finished_at: an exporter
	// started after the retry can only count attempts, and must arrive at the same key.
	Key          string    `json:"key"`
	Organization string    `json:"organization"`
	Pipeline     string    `json:"pipeline"` // "<org>/<pipeline>", as in the annotation
	Component    string    `json:"component"`
	Environment  string    `json:"environment"`
	State        string    `json:"state"` // passed, failed or canceled
	BuildID      string    `json:"build_id"`
	BuildNumber  int       `json:"build_number"`
	WebURL       string    `json:"web_url,omitempty"`
	Commit       string    `json:"commit,omitempty"`
	Version      string    `json:"version,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	StartedAt    time.Time `json:"started_at,omitzero"`
	FinishedAt   time.Time `json:"finished_at"`
	// LeadTimeSeconds is commit first seen → FinishedAt for passed deployments; negative when unknown.
	LeadTimeSeconds float64 `json:"lead_time_seconds"`
	// ApprovalWaitSeconds is the block step's runnable_at → unblocked_at; negative when none.
	ApprovalWaitSeconds float64 `json:"approval_wait_seconds"`
}

// Key builds a record key from the build id, the outcome's finish time and the environment.
func Key(buildID string, finishedAt time.Time, environment string) string {
	return buildID + "@" + finishedAt.UTC().Format(time.RFC3339Nano) + "#" + environment
}

// AttemptKey keys a failed outcome by its build and attempt ordinal (0 for the build's first
// terminal outcome, n after n retries made once the build had finished), so that it does not
// depend on a finished_at a later retry overwrites. Passed and canceled outcomes, and failed ones
// whose jobs could not be read, use Key. The two kinds never collide: a formatted time does not
// start with "attempt:".
func AttemptKey(buildID string, attempt int, environment string) string {
	return buildID + "@attempt:" + strconv.Itoa(attempt) + "#" + environment
}

// Watermark is how far the poller has read an organization.
type Watermark struct {
	// FinishedFrom: every build finished before it has been read and stored.
	FinishedFrom time.Time `json:"finished_from"`
	// BackfillDone is set once the first start's history backfill finished.
	BackfillDone bool `json:"backfill_done"`
	// Pipelines are the organization's annotated pipelines (sorted slugs) the backfill and the
	// polls so far covered; a pipeline annotated later is not among them and gets its own
	// backfill. Nil in watermarks written before this field existed: then no pipeline is new.
	Pipelines []string `json:"pipelines,omitempty"`
}

// Batch is what one poll cycle stores, all or nothing.
type Batch struct {
	Records    []Record
	Watermarks map[string]Watermark // by organization
	// CommitsFirstSeen holds the earliest created_at of any build of a commit, by CommitKey. The
	// store keeps the earliest value it was ever given.
	CommitsFirstSeen map[string]time.Time
}

// CommitKey scopes a commit to a component: lead time counts from the first build of the commit
// in that component's pipelines.
func CommitKey(component, commit string) string { return component + "\x00" + commit }

// State is what a store holds besides the records.
type State struct {
	Watermarks       map[string]Watermark
	CommitsFirstSeen map[string]time.Time
	// Base is the opaque summary of compacted records (see Log.Compact); nil when none.
	Base []byte
}

// Log is the deployment log.
type Log interface {
	// Append stores the batch atomically and durably, records before watermarks, and returns
	// the records that were new (not already stored by key), in the batch's order.
	Append(b Batch) ([]Record, error)
	// Load returns the watermarks, commits and compacted base.
	Load() (State, error)
	// Replay calls fn for every stored record in the order they were appended.
	Replay(fn func(Record) error) error
	// Compact folds the records that finished before cutoff into the base summary: fold gets the
	// current base and those records in append order and returns the new base; the store then
	// replaces the base and deletes the records in one transaction.
	Compact(cutoff time.Time, fold func(base []byte, old []Record) ([]byte, error)) error
	Close() error
}

// ErrClosed is returned by a closed Log.
var ErrClosed = errors.New("store is closed")
