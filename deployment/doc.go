// Package deployment turns Buildkite builds into deployment outcomes and the outcomes into the
// structured snapshot the exporter serves. It is pure: no I/O, no locks, no clock (the cycle's
// time comes in with the input), so that any two exporters that see the same builds derive the
// same records, and so that it is tested without a server.
//
// A poll cycle reads as three steps: the collector fetches builds (and, where Classifier.NeedsJobs
// says so, their jobs), Classifier.Classify turns them into store.Records and live gauges, and
// the collector commits the records to the deployment log and applies the new ones to an
// Aggregate, whose Snapshot every surface reads.
package deployment
