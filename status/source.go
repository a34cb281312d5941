package status

import (
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// Source is what the page reads, once per request. Every value it returns is immutable: the
// publisher swaps in new ones as a whole (an atomic pointer), and the page never modifies them.
// Its methods must be cheap and must not block on the API or the store.
type Source interface {
	// Snapshot is the collector's latest deployment snapshot; nil before the first.
	Snapshot() *snapshot.Snapshot
	// Catalog is the catalog watcher's latest snapshot; nil before the first refresh.
	Catalog() *backstage.Snapshot
	// Organizations are the polled organizations, in the order the page lists them (by name,
	// preferably). The page neither keeps nor modifies the slice.
	Organizations() []Organization
}

// Unknown is the value of an Organization's integer fields that are not known (yet).
const Unknown = -1

// Organization is the poll state of one Buildkite organization, as the page shows it. The poller
// fills it; a zero time.Time means "never" (or "not scheduled").
type Organization struct {
	// Name is the organization slug.
	Name string
	// LastPoll is when the last poll cycle ended, successfully or not.
	LastPoll time.Time
	// LastSuccess is when the last successful poll cycle ended.
	LastSuccess time.Time
	// NextPoll is when the next cycle is due.
	NextPoll time.Time
	// LastError is the error of the last cycle; empty when it succeeded. It must hold no
	// credentials (the page shows it verbatim, escaped).
	LastError string

	// APIBudgetRemaining and APIBudgetLimit are the REST requests left in, and allowed per,
	// the current rate-limit window of the organization, from the RateLimit-* headers of the
	// last response; Unknown (-1) before one. (The zero value means "none left", so a filler
	// must set Unknown explicitly.)
	APIBudgetRemaining int
	APIBudgetLimit     int

	// Backfilling is set while the first read of the history window runs.
	Backfilling bool
	// BackfillDone and BackfillTotal count the backfill's listings (one per pipeline, or one
	// for the organization, as the query planner chose): done so far, and in all. Both 0 when
	// there is no backfill.
	BackfillDone  int
	BackfillTotal int
	// BackfillRemainingRequests estimates the API requests the backfill still needs (the
	// metric buildkite_exporter_backfill_remaining_requests); 0 when done, Unknown when no
	// estimate exists.
	BackfillRemainingRequests int
	// BackfillETA estimates how long the backfill still takes at the current request rate; 0
	// when unknown or done.
	BackfillETA time.Duration
}

// HasProblem reports whether the organization's last poll failed: what ?problems=1 keeps.
func (o Organization) HasProblem() bool { return o.LastError != "" }

// WebhookSource is implemented by a Source whose exporter has a webhook listener
// (--webhook.listen-address); the page then shows the receiver's counters.
type WebhookSource interface {
	// Webhooks returns the receiver's counters; nil when webhooks are off.
	Webhooks() *Webhooks
}

// Webhooks are the receiver's counters: the metrics buildkite_exporter_webhook_events_total and
// buildkite_exporter_webhook_last_event_timestamp_seconds.
type Webhooks struct {
	// LastEvent is when the last accepted delivery arrived; zero: none since the start.
	LastEvent time.Time
	// Counts are the deliveries by event and result; zero counts may be left out.
	Counts []WebhookCount
	// Dropped counts build events the collector's queue had no room for.
	Dropped uint64
}

// WebhookCount is one (event, result) count.
type WebhookCount struct {
	Event, Result string
	Count         uint64
}
