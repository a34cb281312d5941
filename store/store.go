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
	// DeployedBy and ReleaseNotes are personal data and free text, kept only when the exporter
	// runs with --deployments.keep-people-and-notes (empty otherwise, and then not written at
	// all: see the record encoding). DeployedBy is the build's deployed_by meta-data, else its
	// creator's name; ReleaseNotes the release-notes field of its block step, at most 4 KiB.
	// Never metric labels. They go with the record when Compact folds it.
	DeployedBy   string `json:"deployed_by,omitempty"`
	ReleaseNotes string `json:"release_notes,omitempty"`
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
	// Compacted is how many records were ever folded into Base; 0 means nothing was ever
	// compacted, so the records alone are the whole history (and can be aggregated again from
	// scratch, with other histogram buckets for instance).
	Compacted uint64
	// PrunedBefore: the keys of outcomes that finished before it were pruned by Compact, and
	// Append ignores a record that finished before it and whose key is not stored (see
	// Log.Compact). Zero when nothing was pruned.
	PrunedBefore time.Time
}

// MaxOverlap is the most a caller may re-read before a watermark: Compact keeps the keys of
// outcomes that finished less than MaxOverlap before the earliest watermark of an organization
// whose backfill is done, whatever the cutoff (the collector re-reads 2 minutes).
const MaxOverlap = time.Hour

// Log is the deployment log.
type Log interface {
	// Append stores the batch atomically and durably, records before watermarks, and returns
	// the records that were new (not already stored by key), in the batch's order. A record
	// that finished before State.PrunedBefore and whose key is not stored is ignored: it cannot
	// be told from one that was stored, compacted and pruned.
	Append(b Batch) ([]Record, error)
	// Load returns the watermarks, commits, compacted base and counts.
	Load() (State, error)
	// Replay calls fn for every stored record in the order they were appended.
	Replay(fn func(Record) error) error
	// Compact folds the records that finished before cutoff into the base summary: fold gets the
	// current base and those records in append order and returns the new base; the store then
	// replaces the base and deletes the records in one transaction. fold is not called when no
	// record finished before cutoff.
	//
	// In the same transaction it prunes what would otherwise grow for ever: the first-seen
	// times of commits first seen before cutoff, and the keys of outcomes that finished before
	// the prune horizon, which is cutoff or, when earlier, MaxOverlap before the earliest
	// watermark of an organization whose backfill is done. The horizon becomes
	// State.PrunedBefore.
	//
	// Invariant: no outcome is counted twice after its key is pruned. Two rules make it hold.
	// A listing never returns an outcome that finished before the horizon: the collector lists
	// from a watermark less its overlap (at most MaxOverlap; the horizon stays MaxOverlap
	// before the earliest watermark, so a store not polled for longer than the retention keeps
	// the keys its next poll re-reads), or backfills from now − backfill, which is after any
	// earlier cutoff now − retention because the collector refuses a retention shorter than
	// the backfill. And an outcome a listing can return with an old finish time, a failure
	// recovered from the jobs of a build retried long after it failed, is ignored by Append
	// (see there). The cost: an outcome that finished before the horizon and was never stored
	// is not counted either (a pipeline annotated after a longer --history.backfill replaced a
	// shorter --storage.retention).
	Compact(cutoff time.Time, fold func(base []byte, old []Record) ([]byte, error)) error
	Close() error
}

// ErrClosed is returned by a closed Log.
var ErrClosed = errors.New("store is closed")

// pruneHorizon is the time before which Compact prunes keys: cutoff, or MaxOverlap before the
// earliest watermark the next poll re-reads from, whichever is earlier; truncated to the
// second, the precision the key index keeps finish times in.
func pruneHorizon(cutoff time.Time, wms map[string]Watermark) time.Time {
	h := cutoff
	for _, wm := range wms {
		if wm.BackfillDone && !wm.FinishedFrom.IsZero() {
			if t := wm.FinishedFrom.Add(-MaxOverlap); t.Before(h) {
				h = t
			}
		}
	}
	return time.Unix(h.Unix(), 0).UTC()
}
