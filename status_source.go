package main

import (
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/collector"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/status"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/webhook"
)

// statusSource is what /status reads: the collector's snapshot and organizations, the catalog
// watcher's snapshot and the client's rate-limit budget. All are published values; none waits
// on the API.
type statusSource struct {
	coll    *collector.Collector
	catalog *backstage.Watcher
	client  *buildkite.Client
	// webhooks are the receiver's counters; nil (or returning nil) without a listener.
	webhooks func() *webhook.Status
}

func (s statusSource) Snapshot() *snapshot.Snapshot { return s.coll.Snapshot() }
func (s statusSource) Catalog() *backstage.Snapshot { return s.catalog.Snapshot() }

func (s statusSource) Organizations() []status.Organization {
	remaining, limit := status.Unknown, status.Unknown
	for _, r := range s.client.RateLimits() {
		if r.Scope == "rest" { // the organization's budget, shared with every other client
			remaining, limit = r.Remaining, r.Limit
		}
	}
	var out []status.Organization
	for _, o := range s.coll.Organizations() {
		out = append(out, status.Organization{
			Name: o.Name, LastPoll: o.LastPoll, LastSuccess: o.LastSuccess, NextPoll: o.NextPoll, LastError: o.LastError,
			APIBudgetRemaining: remaining, APIBudgetLimit: limit,
			Backfilling: o.Backfilling, BackfillDone: o.BackfillListingsDone, BackfillTotal: o.BackfillListingsTotal,
			BackfillRemainingRequests: o.BackfillRemainingRequests, BackfillETA: o.BackfillETA,
		})
	}
	return out
}

// Webhooks implements status.WebhookSource.
func (s statusSource) Webhooks() *status.Webhooks {
	if s.webhooks == nil {
		return nil
	}
	st := s.webhooks()
	if st == nil {
		return nil
	}
	out := &status.Webhooks{LastEvent: st.LastEvent, Dropped: st.Dropped}
	for _, c := range st.Counts {
		out.Counts = append(out.Counts, status.WebhookCount{Event: c.Event, Result: c.Result, Count: c.Count})
	}
	return out
}
