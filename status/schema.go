package status

import "time"

// SchemaVersion is the version of the JSON schema below. Adding a field keeps it; renaming,
// removing or changing the meaning of one increments it (with a CHANGELOG line).
const SchemaVersion = 1

// Page is the document /status?format=json serves, and the data the HTML page renders. Times are
// RFC 3339 in UTC; a time field that is absent means "never" or "unknown". Lists are never null:
// an empty list is [].
type Page struct {
	// SchemaVersion is SchemaVersion: 1.
	SchemaVersion int `json:"schema_version"`
	// GeneratedAt is when this response was rendered. Ages on the HTML page are measured from
	// it: the age of a deployment is generated_at − finished_at.
	GeneratedAt time.Time `json:"generated_at"`
	// Filter echoes the filters applied.
	Filter Filter `json:"filter"`
	// Snapshot describes the deployment snapshot the page renders.
	Snapshot SnapshotInfo `json:"snapshot"`
	// Catalog describes the last catalog refresh and its problems.
	Catalog CatalogInfo `json:"catalog"`
	// Organizations are the polled organizations (with ?problems=1: those whose last poll
	// failed), by name.
	Organizations []OrganizationStatus `json:"organizations"`
	// ComponentsTotal counts every component known, before filters; len(components) is what the
	// filters kept.
	ComponentsTotal int `json:"components_total"`
	// Components are the components the filters kept, sorted by label.
	Components []*Component `json:"components"`
	// UnownedPipelineProblems are pipeline problems of pipelines that no listed component names
	// (the catalog changed since the poll); left out when a component or owner filter is set.
	UnownedPipelineProblems []PipelineProblem `json:"unowned_pipeline_problems"`
	// UnknownEnvironments are environment names in use that the alias table does not know
	// (add them to the environments of --config.file), sorted.
	UnknownEnvironments []string `json:"unknown_environments"`
	// Webhooks are the webhook receiver's counters; absent when webhooks are off.
	Webhooks *WebhooksStatus `json:"webhooks,omitempty"`
}

// WebhooksStatus is the webhook receiver (buildkite_exporter_webhook_* metrics).
type WebhooksStatus struct {
	// LastEventAt is when the last accepted delivery arrived; absent: none since the start.
	LastEventAt time.Time `json:"last_event_at,omitzero"`
	// Events are the events with at least one delivery, by event name.
	Events []WebhookEventStatus `json:"events"`
	// Dropped counts build events dropped for a full queue (the next poll reads them).
	Dropped uint64 `json:"dropped"`
}

// WebhookEventStatus counts one event's deliveries by result.
type WebhookEventStatus struct {
	Event          string `json:"event"`
	Accepted       uint64 `json:"accepted"`
	Ignored        uint64 `json:"ignored"`
	RejectedAuth   uint64 `json:"rejected_auth"`
	RejectedReplay uint64 `json:"rejected_replay"`
	RejectedBody   uint64 `json:"rejected_body"`
}

// Rejected sums the rejections.
func (e WebhookEventStatus) Rejected() uint64 {
	return e.RejectedAuth + e.RejectedReplay + e.RejectedBody
}

// Filter is the query that selected the page's content.
type Filter struct {
	// Component is ?component=: an exact component label ("" for all).
	Component string `json:"component"`
	// Owner is ?owner=: an exact spec.owner ("" for all).
	Owner string `json:"owner"`
	// Problems is ?problems=1: only components, organizations and catalog problems that need
	// fixing.
	Problems bool `json:"problems"`
}

// SnapshotInfo describes the deployment snapshot.
type SnapshotInfo struct {
	// Taken is when the collector built it; absent before the first.
	Taken time.Time `json:"taken,omitzero"`
	// Polled is false until a poll cycle of every organization has ended: the data then comes
	// from the deployment log alone.
	Polled bool `json:"polled"`
}

// CatalogInfo describes the Backstage catalog as last read.
type CatalogInfo struct {
	// LastRefreshSuccess is true when every catalog source was read in the last refresh.
	LastRefreshSuccess bool `json:"last_refresh_success"`
	// LastSuccess is when every source was last read.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Problems are the catalog entries that could not be used, in the catalog's order (with a
	// component or owner filter: those of the listed components only).
	Problems []CatalogProblem `json:"problems"`
}

// CatalogProblem is one catalog entry the exporter skipped (buildkite_exporter_catalog_errors).
type CatalogProblem struct {
	// Reason is the reason label: invalid_annotation, duplicate_pipeline, malformed_yaml, …
	Reason string `json:"reason"`
	// Source is where: "path/to/catalog-info.yaml:12", or the Backstage URL.
	Source string `json:"source"`
	// Entity is the entity ref ("component:default/shop"), when known.
	Entity string `json:"entity,omitempty"`
	// Message says what is wrong and how to fix it.
	Message string `json:"message"`
}

// OrganizationStatus is one organization's polling (see Organization for the meanings).
type OrganizationStatus struct {
	Name        string    `json:"name"`
	LastPoll    time.Time `json:"last_poll,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	NextPoll    time.Time `json:"next_poll,omitzero"`
	// LastError is the last cycle's error; absent when it succeeded.
	LastError string `json:"last_error,omitempty"`
	// APIBudgetRemaining and APIBudgetLimit are REST requests left and allowed in the current
	// rate-limit window; -1 when unknown.
	APIBudgetRemaining int `json:"api_budget_remaining"`
	APIBudgetLimit     int `json:"api_budget_limit"`
	// Backfill is the first read of the history window.
	Backfill Backfill `json:"backfill"`
}

// Backfill is the progress of an organization's backfill.
type Backfill struct {
	// Active is true while it runs. Deployment series of the organization appear only once it
	// completes (see the HTML page for why).
	Active bool `json:"active"`
	// ListingsDone and ListingsTotal count the backfill's listings (one per pipeline, or one
	// for the organization, as the query planner chose) done so far and in all.
	ListingsDone  int `json:"listings_done"`
	ListingsTotal int `json:"listings_total"`
	// RemainingRequests estimates the API requests left; 0 when done, -1 when unknown.
	RemainingRequests int `json:"remaining_requests"`
	// ETASeconds estimates the seconds left; 0 when done or unknown.
	ETASeconds float64 `json:"eta_seconds"`
}

// Component is one catalog component.
type Component struct {
	// Label is the component label of the metrics: the entity name, or namespace/name outside
	// the default namespace.
	Label     string `json:"label"`
	Ref       string `json:"ref"`
	Owner     string `json:"owner"`
	System    string `json:"system"`
	Lifecycle string `json:"lifecycle"`
	// Source is the catalog file or Backstage URL the entity came from, when the catalog has it.
	Source string `json:"source,omitempty"`
	// Pending is true for a component the catalog lists but no poll has covered yet: it has no
	// deployment data until the next cycle.
	Pending bool `json:"pending"`
	// HasProblems is true when a pipeline has a problem or the catalog has one for the entity.
	// A failing deployment is not a problem of the exporter (it is environments[].failing).
	HasProblems bool `json:"has_problems"`
	// Pipelines are the annotated pipelines, in annotation order.
	Pipelines []Pipeline `json:"pipelines"`
	// Environments are sorted by name.
	Environments []Environment `json:"environments"`
}

// Pipeline is one annotated pipeline and whether the exporter can follow it.
type Pipeline struct {
	// Name is "<org>/<pipeline>".
	Name string `json:"name"`
	// State is "ok" (no problem known), "warning" (counted with a fallback) or "error" (not
	// counted): the worst severity of its problems.
	State string `json:"state"`
	// Problems say what is wrong and the fix; [] when ok.
	Problems []PipelineProblem `json:"problems"`
}

// PipelineProblem is one reason the exporter cannot follow a pipeline, or follows it with a
// fallback (buildkite_exporter_pipeline_errors).
type PipelineProblem struct {
	Pipeline string `json:"pipeline"`
	// Reason is the reason label: not_found, forbidden, no_deployments_in_window, …
	Reason string `json:"reason"`
	// Severity is "error" or "warning".
	Severity string `json:"severity"`
	// Message says what is wrong and how to fix it.
	Message string `json:"message"`
	// Since is when the problem was first seen.
	Since time.Time `json:"since,omitzero"`
}

// Environment is the deployment state of one (component, environment).
type Environment struct {
	Name string `json:"name"`
	// Failing is true while the latest finished, non-canceled deployment failed
	// (buildkite_deployment_failing).
	Failing bool `json:"failing"`
	// Running and AwaitingApproval count deployments running now and waiting on a block step.
	Running          int `json:"running"`
	AwaitingApproval int `json:"awaiting_approval"`
	// LastFinished is when the latest deployment in each state finished.
	LastFinished LastFinished `json:"last_finished"`
	// Deployed is the latest passed deployment: what runs there now; null before one.
	Deployed *Deployed `json:"deployed"`
}

// LastFinished holds, per deployment state, when the latest deployment in it finished; a state
// that never happened is absent.
type LastFinished struct {
	Passed   time.Time `json:"passed,omitzero"`
	Failed   time.Time `json:"failed,omitzero"`
	Canceled time.Time `json:"canceled,omitzero"`
}

// Any reports whether any deployment finished.
func (l LastFinished) Any() bool {
	return !l.Passed.IsZero() || !l.Failed.IsZero() || !l.Canceled.IsZero()
}

// Deployed is the latest passed deployment of an environment.
type Deployed struct {
	Version    string    `json:"version"`
	Commit     string    `json:"commit"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Pipeline is "<org>/<pipeline>"; BuildNumber the build's number in it.
	Pipeline    string `json:"pipeline"`
	BuildNumber int    `json:"build_number"`
	// WebURL is the build's page on Buildkite. It is "" unless it is an absolute http(s) URL:
	// the value comes from the API and is not trusted.
	WebURL string `json:"web_url"`
	// DeployedBy and ReleaseNotes are kept only with --deployments.keep-people-and-notes;
	// absent otherwise. Free text from the build: the release notes at most 4 KiB.
	DeployedBy   string `json:"deployed_by,omitempty"`
	ReleaseNotes string `json:"release_notes,omitempty"`
}
